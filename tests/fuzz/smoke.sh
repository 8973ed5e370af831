#!/usr/bin/env bash
# Builds the fuzz targets with clang (AddressSanitizer + UBSan) and runs each over its corpus
# plus RUNS new inputs from a fixed seed (at most 45 s each): a regression check for CI, not a fuzzing campaign
# (docs/contributing.md, "Fuzzing", has the long runs). Exit 77, which CTest reports as
# skipped, where clang's libFuzzer is not installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: smoke.sh BUILD_DIR [RUNS]}
runs=${2:-200000}
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' > "$probe/probe.cpp"
if ! command -v clang++ >/dev/null || ! clang++ -fsanitize=fuzzer "$probe/probe.cpp" -o "$probe/probe" 2>/dev/null; then
    echo "clang++ with libFuzzer (Debian: clang, libclang-rt-14-dev) is not installed: fuzz smoke skipped"
    exit 77
fi
cmake -S "$here" -B "$build" -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build "$build" -j2
for corpus in "$here"/corpus/*/; do
    target=$(basename "$corpus")
    work="$probe/$target"
    mkdir -p "$work"
    cp "$corpus"/* "$work"/
    # Inputs may grow to the largest seed (an example project.json is ~50 kB), at least 4 kB.
    largest=$(stat -c %s "$corpus"/* | sort -n | tail -n 1)
    max_len=$(( largest > 4096 ? largest : 4096 ))
    echo "fuzz_$target: $runs runs"
    # -max_total_time bounds the slow targets (tokenizer_json builds a tokenizer per input).
    if ! "$build/fuzz_$target" -runs="$runs" -max_total_time=45 -seed=1 -max_len=$max_len -rss_limit_mb=2048 -print_final_stats=1 "$work" \
        > "$work.log" 2>&1; then
        tail -n 80 "$work.log"
        exit 1
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work.log"
done
