"""Our LoRA adapters against the Python ecosystem that made the format.

Trains a small adapter with `persona-cli finetune` on a tiny Hugging Face checkpoint (float32),
then:
  1. reads adapter_model.safetensors with the `safetensors` package and checks that every tensor
     has the name and shape PEFT gives it for that architecture (skipped, exit 77, without
     safetensors);
  2. where torch, transformers and peft are installed, loads the base model with
     PeftModel.from_pretrained on our folder and checks that the log-probabilities of the tokens
     `persona-cli generate --adapter` chose equal PEFT's forward, and that they differ from the
     base model's (the adapter changes something).

    python3 tests/reference/check_peft_adapter.py build/app/persona-cli tests/data/tiny_models/llama3 \
        tests/data/finetune_sample.jsonl
"""
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77


def main(cli, model_dir, data):
    try:
        from safetensors import safe_open
    except ImportError:
        print("skipped: the safetensors package is not installed")
        return SKIP
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "adapter")
        subprocess.run([cli, "--dtype", "f32", "finetune", "-m", model_dir, "--data", data, "--out", out,
                        "--max-steps", "3", "--grad-accum", "1", "--lr", "1e-2", "--warmup", "0", "--rank", "4",
                        "--alpha", "8", "-q"], check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(out, "adapter_config.json")) as f:
            adapter_config = json.load(f)
        with open(os.path.join(model_dir, "config.json")) as f:
            config = json.load(f)
        hidden, ffn = config["hidden_size"], config["intermediate_size"]
        head_dim = config.get("head_dim") or hidden // config["num_attention_heads"]
        q_rows, kv_rows = config["num_attention_heads"] * head_dim, config["num_key_value_heads"] * head_dim
        shapes = {"q_proj": (q_rows, hidden), "k_proj": (kv_rows, hidden), "v_proj": (kv_rows, hidden),
                  "o_proj": (hidden, q_rows), "gate_proj": (ffn, hidden), "up_proj": (ffn, hidden),
                  "down_proj": (hidden, ffn), "qkv_proj": (q_rows + 2 * kv_rows, hidden), "gate_up_proj": (2 * ffn, hidden)}
        rank = adapter_config["r"]
        expected = {}
        for layer in range(config["num_hidden_layers"]):
            for module in adapter_config["target_modules"]:
                part = "self_attn" if module in ("q_proj", "k_proj", "v_proj", "qkv_proj", "o_proj") else "mlp"
                stem = f"base_model.model.model.layers.{layer}.{part}.{module}"
                rows, cols = shapes[module]
                expected[stem + ".lora_A.weight"] = (rank, cols)
                expected[stem + ".lora_B.weight"] = (rows, rank)
        with safe_open(os.path.join(out, "adapter_model.safetensors"), framework="numpy") as reader:
            found = {name: reader.get_tensor(name).shape for name in reader.keys()}
        assert found == expected, f"names or shapes differ from PEFT's:\nours {found}\nPEFT {expected}"
        print(f"{len(found)} tensors with PEFT's names and shapes")

        try:
            import torch
            from peft import PeftModel
            from transformers import AutoModelForCausalLM
        except ImportError:
            print("torch, transformers or peft is not installed: PEFT's forward not compared")
            return 0
        generated = subprocess.run([cli, "--dtype", "f32", "generate", "-m", model_dir, "--adapter", out, "-p",
                                    "How do I boil an egg?", "-n", "12", "--json", "--logprobs", "0"],
                                   check=True, capture_output=True, text=True)
        ours = json.loads(generated.stdout)
        ids = ours["prompt_token_ids"] + ours["tokens"]
        chosen = [step["logprob"] for step in ours["logprobs"]]
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        tokens = torch.tensor([ids])
        prompt = len(ours["prompt_token_ids"])

        def logprobs_of(model):
            with torch.no_grad():
                logits = model(tokens).logits[0].double()
            steps = torch.log_softmax(logits, -1)
            return [steps[prompt - 1 + i, ids[prompt + i]].item() for i in range(len(chosen))]

        base_logprobs = logprobs_of(base)
        peft_logprobs = logprobs_of(PeftModel.from_pretrained(base, out))
        worst = max(abs(a - b) for a, b in zip(chosen, peft_logprobs))
        moved = max(abs(a - b) for a, b in zip(chosen, base_logprobs))
        print(f"{len(chosen)} generated tokens: largest log-probability difference from PEFT {worst:.2e}, "
              f"from the base model {moved:.2e}")
        assert worst < 1e-3, "our merged adapter does not compute what PEFT computes"
        assert moved > 1e-2, "the adapter changes nothing"
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
