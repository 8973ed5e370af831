#!/usr/bin/env python3
"""Check the tiny checkpoints' goldens (tests/data/tiny_models/, from numpy_hf_forward.py)
against Hugging Face transformers itself: the folders load with AutoModelForCausalLM and
AutoTokenizer, give the goldens' hidden states and logits in float32, the tokenizer encodes the
goldens' prompt to their ids, and apply_chat_template renders their chat cases.

Usage: python tests/reference/check_tiny_with_transformers.py   (needs torch and transformers)
Exit status 1 on any difference beyond float32 rounding.
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

MODELS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "tiny_models"))


def main():
    goldens = json.load(open(os.path.join(MODELS, "goldens.json")))
    failures = 0
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    for name in ("qwen3", "llama3", "phi3"):
        golden = goldens[name]
        folder = os.path.join(MODELS, name)
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        ids = golden["token_ids"]
        if tokenizer(golden["prompt"], add_special_tokens=False)["input_ids"] != ids:
            print(f"{name}: tokenizer ids differ")
            failures += 1
        with torch.no_grad():
            out = model(torch.tensor([ids]), output_hidden_states=True)
        # transformers applies the final norm to its last hidden state; the goldens do not.
        worst = 0.0
        for layer, states in enumerate(out.hidden_states[:-1]):
            norms = states[0].double().norm(dim=-1)
            expected = torch.tensor(golden["hidden_norms"][layer], dtype=torch.float64)
            worst = max(worst, float(((norms - expected).abs() / expected).max()))
        logits = out.logits[0, -1].double()
        logit_error = float((logits - torch.tensor(golden["logits_last_position"], dtype=torch.float64)).abs().max())
        top1 = out.logits[0].argmax(-1).tolist()
        generated = model.generate(torch.tensor([ids]), max_new_tokens=len(golden["greedy_ids"]), do_sample=False,
                                   eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
        chat_mismatches = 0
        for case in golden["chat"]:
            rendered = tokenizer.apply_chat_template(case["messages"], tokenize=False,
                                                     add_generation_prompt=case["add_generation_prompt"],
                                                     enable_thinking=case["thinking"], date_string="26 Jul 2024")
            chat_mismatches += rendered != case["rendered"]
        ok = (worst < 1e-5 and logit_error < 1e-4 and top1 == golden["top1_per_position"] and
              generated == golden["greedy_ids"] and chat_mismatches == 0)
        failures += not ok
        print(f"{name}: hidden norms rel {worst:.2e}, logits abs {logit_error:.2e}, top-1 "
              f"{'same' if top1 == golden['top1_per_position'] else 'DIFFERENT'}, greedy "
              f"{'same' if generated == golden['greedy_ids'] else generated}, chat cases "
              f"{len(golden['chat']) - chat_mismatches}/{len(golden['chat'])} -> {'ok' if ok else 'FAILED'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
