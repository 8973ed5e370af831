#!/usr/bin/env bash
# The sanitizer build: core, persona-cli and the suites without widgets compiled with
# AddressSanitizer and UndefinedBehaviorSanitizer (GCC's, no package beyond the README's), then
# those suites run; any finding fails the suite that hit it. CI runs it after the test command.
#   tests/sanitizers.sh [BUILD_DIR]     default: build-sanitize/ in the repository
# Left out: the suites labelled slow (the NumPy reference forwards, the CLI pipeline, the 1.5B
# judge) and the fuzz smoke, which has its own sanitizers. SentencePiece tokenizer.model cases
# skip: ASan aborts on the RTLD_DEEPBIND load the module needs (docs/platform-notes.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-sanitize}

# -O1 with line tables only (ASan's own advice) compiles in half the time of -O2 -g, and the stacks
# still name file and line: the build was two thirds of this stage's time in CI.
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DPERSONA_SANITIZE=ON -DPERSONA_WITH_GUI=OFF
cmake --build "$build" -j "$(nproc)"

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:check_initialization_order=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --test-dir "$build" --output-on-failure --label-exclude 'slow|fuzz'
