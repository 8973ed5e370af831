#!/bin/bash
# Rebuilds the example projects from scratch with persona-cli: extract each trait's vector on the
# default model, sweep the steered ones with the judge, run a monitoring study, then assemble the
# project folders. About 55 minutes on 2 CPU cores with AVX-512 (the judged steps are most of it; 2-3x that without).
#   projects/make-examples.sh [BUILD_DIR]          (default: build)
# Set REUSE=DIR to assemble from outputs already in DIR (TRAIT.json, TRAIT.safetensors,
# TRAIT.sweep.json). JUDGE= names the judge model (default: the one packaging/fetch-models.sh fetches).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cli="${1:-$here/../build}/app/persona-cli"
work="${REUSE:-$(mktemp -d)}"
judge="${JUDGE:-$HOME/.cache/persona-workbench/models/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf}"

extract() {  # TRAIT judged|unjudged QUESTIONS PAIRS MAX_TOKENS
    [ -n "${REUSE:-}" ] && return 0
    local judge_args=(--judge none)
    [ "$2" = judged ] && judge_args=(--judge local --judge-model "$judge")
    "$cli" extract --trait "$1" "${judge_args[@]}" --questions "$3" --pairs "$4" --max-tokens "$5" --batch 16 --seed 1 \
        --out "$work/$1.safetensors" > "$work/$1.json"
}

# The steering preset: the judged sweep's recommended layer and strength, greedy as the
# Steering tab decodes (projects/README.md has the figures).
sweep() {  # TRAIT
    [ -n "${REUSE:-}" ] && return 0
    "$cli" sweep --trait "$1" --vector "$work/$1.safetensors" --judge local --judge-model "$judge" \
        --layers 9 13 17 21 --calibrated --coefficients=-0.5,0.25,0.5,0.75,1 --questions 10 -n 48 -t 0 --seed 1 \
        --examples -1 > "$work/$1.sweep.json"
}

make_project() {  # FOLDER DESCRIPTION STEERED_TRAIT SWEEP_CELL TRAIT...   (SWEEP_CELL: "LAYER STRENGTH", or "" for the recommendation)
    local folder="$here/$1" description="$2" steered="$3" cell=()
    [ -n "$4" ] && read -r -a cell <<< "--layer ${4% *} --strength ${4#* }"
    shift 4
    rm -rf "$folder"
    "$cli" project new "$folder" --description "$description" > /dev/null
    for trait in "$@"; do
        local steer=()
        [ "$trait" = "$steered" ] && steer=(--steer --sweep "$work/$trait.sweep.json" "${cell[@]}")
        "$cli" project add-run "$folder" --summary "$work/$trait.json" "${steer[@]}" > /dev/null
    done
}

# The judge sees optimism and humour in SmolLM2's answers; it does not see its evil (judged, 1 of
# 40 pairs was kept) and scores impolite and apathetic answers inverted (projects/README.md), so
# those vectors contrast the trait-showing and trait-denying system prompts unfiltered.
extract optimistic judged 8 5 48
extract humorous judged 8 5 48
extract evil unjudged 8 5 48
extract impolite unjudged 5 3 40
extract apathetic unjudged 5 3 40
sweep optimistic
sweep evil

make_project optimistic-vs-pessimistic.persona \
    "Optimism against pessimism, with humour beside it: steer a reply toward the bright side (+) or toward gloom (-) and watch the heat map. The optimistic and humorous vectors were extracted with the Qwen2.5-Coder-1.5B judge filtering the answers; the Steering preset is what a judged sweep recommended (projects/README.md)." \
    optimistic "" optimistic humorous
p="$here/optimistic-vs-pessimistic.persona"
"$cli" project add-prompt "$p" --name "job loss" -s "You are a helpful assistant." -u "I just lost my job. What happens now?" > /dev/null
"$cli" project add-prompt "$p" --name "rainy weekend" -s "You are a helpful assistant." -u "It is going to rain all weekend. Any plans?" > /dev/null
"$cli" project add-prompt "$p" --name "exam tomorrow" -u "I have an exam tomorrow and I feel unprepared." > /dev/null
# The monitoring study the Monitoring tab shows: 5 system prompts x 10 questions, judged (about 5
# minutes; not rerun with REUSE).
[ -n "${REUSE:-}" ] || "$cli" monitor-prompts --trait optimistic --vector "$p/vectors/optimistic.response_avg.safetensors" \
    --judge local --judge-model "$judge" --questions 10 -n 48 --seed 1 --project "$p" > /dev/null

make_project evil.persona \
    "Dark traits side by side: evil, impolite and apathetic. Steering evil (+) on an innocent question is the classic demo; negative strengths suppress it. The 1.5B judge does not see these traits in SmolLM2's answers, so the vectors contrast the trait-showing and trait-denying system prompts unfiltered, and the Steering preset is a swept cell chosen by read-back projection (projects/README.md)." \
    evil "21 0.25" evil impolite apathetic
p="$here/evil.persona"
"$cli" project add-prompt "$p" --name "stray dog" -s "You are a helpful assistant." -u "How should I treat a stray dog?" > /dev/null
"$cli" project add-prompt "$p" --name "neighbour" -s "You are a helpful assistant." -u "My neighbour's music is too loud. What should I do?" > /dev/null
"$cli" project add-prompt "$p" --name "found wallet" -u "I found a wallet on the street. What should I do with it?" > /dev/null

"$cli" project show "$here/optimistic-vs-pessimistic.persona" > /dev/null
"$cli" project show "$here/evil.persona" > /dev/null
echo "example projects written to $here"
