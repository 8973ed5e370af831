#!/bin/bash
# Rebuilds the example projects from scratch with persona-cli: extract each trait's vector on the
# default model, then assemble the project folders. A few minutes per trait on 2 CPU cores.
#   projects/make-examples.sh [BUILD_DIR]          (default: build)
# Set REUSE=DIR to assemble from extract outputs already in DIR (TRAIT.json + TRAIT.safetensors).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cli="${1:-$here/../build}/app/persona-cli"
work="${REUSE:-$(mktemp -d)}"

# --judge none: SmolLM2-135M cannot judge its own answers (README: "Judge"), so every pair with
# non-empty answers is kept and the vector contrasts the system prompts.
extract() {  # TRAIT QUESTIONS PAIRS MAX_TOKENS
    [ -n "${REUSE:-}" ] && return 0
    "$cli" extract --trait "$1" --judge none --questions "$2" --pairs "$3" --max-tokens "$4" --batch 16 --seed 1 \
        --out "$work/$1.safetensors" > "$work/$1.json"
}

judge_note="Vectors were extracted on SmolLM2-135M-Instruct (Q4_1) with --judge none: a 135M model cannot judge its own answers, so no answer was filtered and each vector contrasts answers under the trait-showing and trait-denying system prompts (docs/method.md step 4 skipped). Re-extract with a judge on a larger model for paper-grade vectors."

make_project() {  # FOLDER DESCRIPTION STEERED_TRAIT TRAIT...
    local folder="$here/$1" description="$2" steered="$3"
    shift 3
    rm -rf "$folder"
    "$cli" project new "$folder" --description "$description $judge_note" > /dev/null
    for trait in "$@"; do
        local steer=()
        [ "$trait" = "$steered" ] && steer=(--steer --coefficient 4)
        "$cli" project add-run "$folder" --summary "$work/$trait.json" "${steer[@]}" > /dev/null
    done
}

extract optimistic 8 5 48
extract humorous 5 3 40
extract evil 5 3 40
extract impolite 5 3 40
extract apathetic 5 3 40

make_project optimistic-vs-pessimistic.persona \
    "Optimism against pessimism, with humour beside it: steer a reply toward the bright side (+) or toward gloom (-) and watch the heat map." \
    optimistic optimistic humorous
p="$here/optimistic-vs-pessimistic.persona"
"$cli" project add-prompt "$p" --name "job loss" -s "You are a helpful assistant." -u "I just lost my job. What happens now?" > /dev/null
"$cli" project add-prompt "$p" --name "rainy weekend" -s "You are a helpful assistant." -u "It is going to rain all weekend. Any plans?" > /dev/null
"$cli" project add-prompt "$p" --name "exam tomorrow" -u "I have an exam tomorrow and I feel unprepared." > /dev/null

make_project evil.persona \
    "Dark traits side by side: evil, impolite and apathetic. Steering evil (+) on an innocent question is the classic demo; negative coefficients suppress it." \
    evil evil impolite apathetic
p="$here/evil.persona"
"$cli" project add-prompt "$p" --name "stray dog" -s "You are a helpful assistant." -u "How should I treat a stray dog?" > /dev/null
"$cli" project add-prompt "$p" --name "neighbour" -s "You are a helpful assistant." -u "My neighbour's music is too loud. What should I do?" > /dev/null
"$cli" project add-prompt "$p" --name "found wallet" -u "I found a wallet on the street. What should I do with it?" > /dev/null

"$cli" project show "$here/optimistic-vs-pessimistic.persona" > /dev/null
"$cli" project show "$here/evil.persona" > /dev/null
echo "example projects written to $here"
