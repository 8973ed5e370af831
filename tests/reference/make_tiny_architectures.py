#!/usr/bin/env python3
"""Write tiny random-weight checkpoints of the architectures the engine runs beyond its two real
test models, with goldens from the independent NumPy forward pass (numpy_hf_forward.py):

  tests/data/tiny_models/<name>/   config.json, model.safetensors (bf16), tokenizer.json,
                                   tokenizer_config.json: a Hugging Face folder
  tests/data/tiny_models/<name>.gguf  the same weights as llama.cpp's converter lays them out
                                   (where the engine reads that architecture from GGUF)
  tests/data/tiny_models/goldens.json

Usage: python tests/reference/make_tiny_architectures.py   (needs numpy, gguf and jinja2 from PyPI)

Each model has the traits of its family that the engine must get right: Qwen3's per-head
query/key RMSNorm with a head size that is not hidden/heads, tied embeddings; Llama 3.2's tied
embeddings and Llama 3's RoPE scaling (a head size of 16 puts frequencies in all three of its
bands); Phi-3's fused QKV and gate/up projections, longrope scaling and a sliding window shorter than the prompt. Weights are drawn from a
seeded generator and rounded to bfloat16, so the checkpoint holds exactly what the reference used.
"""
import json
import math
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy_hf_forward as ref  # noqa: E402

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "tiny_models"))
N_GREEDY = 12
MERGES = [("h", "e"), ("l", "l"), ("\u0120", "t")]  # a few, so the byte-level BPE merges something

# Qwen3's chat template (Qwen3-0.6B .. 32B share it), tools branch left out: the engine renders
# system, user and assistant turns.
QWEN3_TEMPLATE = """{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in message.content %}
                {%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}
                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}"""
# Phi-3.5-mini-instruct's template (later Phi-3 revisions share it).
PHI3_TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
                 "{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}"
                 "{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}"
                 "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}")
# Conversations for the templates: a plain exchange, reasoning kept only after the last question,
# an answer after the question (how extraction renders prompt + response).
CONVERSATIONS = {
    "question": [{"role": "user", "content": "hello, tell me the truth"}],
    "system_user": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi there"}],
    "history_with_reasoning": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
        {"role": "user", "content": "and 3+3?"},
        {"role": "assistant", "content": "<think>\n\nthree and three\n\n</think>\n6\n"}],
    "answer_last": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "\nhi"}],
    "no_user": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "<think>x</think>y"}],
    "empty_system": [{"role": "system", "content": ""}, {"role": "user", "content": "Hi"}],
}
# Llama 3.2-Instruct's template (3.1 differs only in its tools branch), tools left out. It opens
# with a system turn holding a knowledge cutoff and a date: transformers passes strftime_now and
# so today's date; without it the template writes 26 Jul 2024, as here and in the engine.
LLAMA3_TEMPLATE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

MODELS = {
    "qwen3": {
        "config": {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "hidden_size": 32,
                   "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                   "max_position_embeddings": 4096, "tie_word_embeddings": True, "hidden_act": "silu",
                   "attention_bias": False, "use_sliding_window": False},
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"],
        "tokenizer_config": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None,
                             "chat_template": QWEN3_TEMPLATE},
        "gguf": {"arch": "qwen3", "pre": "qwen2", "permute_qk": False},
    },
    "llama3": {
        "config": {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 32,
                   "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 2,
                   "num_key_value_heads": 1, "head_dim": 16, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                   "max_position_embeddings": 131072, "tie_word_embeddings": True, "hidden_act": "silu",
                   "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
        "specials": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                     "<|eot_id|>"],
        "tokenizer_config": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                             "chat_template": LLAMA3_TEMPLATE},
        "gguf": {"arch": "llama", "pre": "llama-bpe", "permute_qk": True},
    },
    "phi3": {
        "config": {"model_type": "phi3", "architectures": ["Phi3ForCausalLM"], "hidden_size": 32,
                   "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
                   "num_key_value_heads": 4, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                   "max_position_embeddings": 1024, "original_max_position_embeddings": 64,
                   "tie_word_embeddings": False, "hidden_act": "silu",
                   "sliding_window": 16,  # shorter than the prompt, as Phi-3-mini-4k's 2047 is than its context
                   "pad_token_id": None,  # Phi3Config's default, 32000, lies outside this vocabulary
                   "rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.3, 2.1, 3.7],
                                    "long_factor": [1.2, 4.0, 9.5, 30.0]}},
        "specials": ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
        "tokenizer_config": {"eos_token": "<|endoftext|>", "bos_token": None, "chat_template": PHI3_TEMPLATE},
        "gguf": {"arch": "phi3", "pre": "gpt2", "permute_qk": False},
    },
}


def bytes_to_unicode():
    """GPT-2's printable spelling of each byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def vocabulary(specials):
    spelling = bytes_to_unicode()
    tokens = [spelling[b] for b in range(256)] + [a + b for a, b in MERGES] + specials
    return tokens, {t: i for i, t in enumerate(tokens)}


def encode(text, specials, vocab):
    """The tiny tokenizer: special tokens split off, bytes spelled GPT-2's way, merges applied in order."""
    spelling = bytes_to_unicode()
    ids, rest = [], text
    while rest:
        found = min(((rest.find(s), s) for s in specials if s in rest), default=(-1, None))
        chunk = rest if found[1] is None else rest[:found[0]]
        symbols = [spelling[b] for b in chunk.encode("utf-8")]
        for a, b in MERGES:
            i = 0
            while i < len(symbols) - 1:
                if symbols[i] == a and symbols[i + 1] == b:
                    symbols[i:i + 2] = [a + b]
                i += 1
        ids += [vocab[s] for s in symbols]
        if found[1] is None:
            break
        ids.append(vocab[found[1]])
        rest = rest[found[0] + len(found[1]):]
    return ids


def round_bf16(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)).view(np.float32)


def tensor_shapes(c, vocab_rows):
    hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    h, ff = c["hidden_size"], c["intermediate_size"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (vocab_rows, h), "model.norm.weight": (h,)}
    if not c["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (vocab_rows, h)
    for layer in range(c["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes[p + "input_layernorm.weight"] = (h,)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
        shapes[p + "self_attn.o_proj.weight"] = (h, q)
        shapes[p + "mlp.down_proj.weight"] = (h, ff)
        if c["model_type"] == "phi3":
            shapes[p + "self_attn.qkv_proj.weight"] = (q + 2 * kv, h)
            shapes[p + "mlp.gate_up_proj.weight"] = (2 * ff, h)
        else:
            shapes.update({p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
                           p + "self_attn.v_proj.weight": (kv, h), p + "mlp.gate_proj.weight": (ff, h),
                           p + "mlp.up_proj.weight": (ff, h)})
        if c["model_type"] == "qwen3":
            shapes[p + "self_attn.q_norm.weight"] = (hd,)
            shapes[p + "self_attn.k_norm.weight"] = (hd,)
    return shapes


def random_weights(shapes, seed):
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in shapes.items():
        if len(shape) == 1:  # norm weights: around 1, as trained models have them
            a = 1.0 + 0.2 * rng.standard_normal(shape)
        else:
            a = rng.standard_normal(shape) / math.sqrt(shape[1]) * (2.0 if "embed" in name else 1.0)
        weights[name] = round_bf16(a.astype(np.float32))
    return weights


def write_safetensors(path, weights):
    header, blobs, offset = {}, [], 0
    for name in sorted(weights):
        raw = (weights[name].view(np.uint32) >> np.uint32(16)).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(weights[name].shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def tokenizer_json(tokens, specials):
    first_special = len(tokens) - len(specials)
    return {
        "version": "1.0",
        "added_tokens": [{"id": first_special + i, "content": s, "special": True, "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False} for i, s in enumerate(specials)],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(tokens[:first_special])},
                  "merges": [a + " " + b for a, b in MERGES]},
    }


def unpermute_inverse(w, n_head):
    """llama.cpp's converter permute(): Hugging Face rows -> GGUF rows of a llama Q/K matrix."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, name, spec, weights, tokens, vocab_rows):
    import gguf
    c, g = spec["config"], spec["gguf"]
    arch = g["arch"]
    hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny-{name}")
    w.add_block_count(c["num_hidden_layers"])
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(c["hidden_size"])
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(c["num_attention_heads"])
    w.add_head_count_kv(c["num_key_value_heads"])
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(c["rope_theta"])
    w.add_layer_norm_rms_eps(c["rms_norm_eps"])
    w.add_vocab_size(vocab_rows)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(g["pre"])
    padded = tokens + [f"[PAD{i}]" for i in range(vocab_rows - len(tokens))]
    n_specials = len(spec["specials"])
    types = [1] * (len(tokens) - n_specials) + [3] * n_specials + [5] * (vocab_rows - len(tokens))
    w.add_token_list(padded)
    w.add_token_types(types)
    w.add_token_merges([a + " " + b for a, b in MERGES])
    ids = {t: i for i, t in enumerate(tokens)}
    w.add_eos_token_id(ids[spec["tokenizer_config"]["eos_token"]])
    if spec["tokenizer_config"].get("bos_token"):
        w.add_bos_token_id(ids[spec["tokenizer_config"]["bos_token"]])
    if "chat_template" in spec["tokenizer_config"]:
        w.add_chat_template(spec["tokenizer_config"]["chat_template"])

    def add(gguf_name, array):  # bf16 like the checkpoint; 1-D tensors in f32, as the converter keeps norms
        array = np.ascontiguousarray(array, dtype=np.float32)
        if array.ndim == 1:
            w.add_tensor(gguf_name, array)
        else:
            w.add_tensor(gguf_name, (array.view(np.uint32) >> np.uint32(16)).astype(np.uint16),
                         raw_shape=array.shape, raw_dtype=gguf.GGMLQuantizationType.BF16)

    add("token_embd.weight", weights["model.embed_tokens.weight"])
    add("output_norm.weight", weights["model.norm.weight"])
    if "lm_head.weight" in weights:
        add("output.weight", weights["lm_head.weight"])
    scaling = c.get("rope_scaling") or {}
    if scaling.get("rope_type") == "llama3":  # the converter stores the divisors as rope_freqs
        inv = c["rope_theta"] ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        add("rope_freqs.weight", (inv / ref.llama3_inv_freq(inv, scaling)).astype(np.float32))
    if c.get("sliding_window"):
        w.add_sliding_window(c["sliding_window"])
    if scaling.get("type") == "longrope":  # as llama.cpp's Phi-3 converter writes it
        original = c["original_max_position_embeddings"]
        add("rope_factors_long.weight", np.asarray(scaling["long_factor"], dtype=np.float32))
        add("rope_factors_short.weight", np.asarray(scaling["short_factor"], dtype=np.float32))
        w.add_uint32(f"{arch}.rope.scaling.original_context_length", original)
        w.add_float32(f"{arch}.rope.scaling.attn_factor",
                      math.sqrt(1 + math.log(c["max_position_embeddings"] / original) / math.log(original)))
    names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down", "self_attn.qkv_proj": "attn_qkv",
             "mlp.gate_up_proj": "ffn_up"}
    for layer in range(c["num_hidden_layers"]):
        for hf_part, gguf_part in names.items():
            key = f"model.layers.{layer}.{hf_part}.weight"
            if key not in weights:
                continue
            array = weights[key]
            if g["permute_qk"] and gguf_part in ("attn_q", "attn_k"):
                heads = c["num_attention_heads"] if gguf_part == "attn_q" else c["num_key_value_heads"]
                array = unpermute_inverse(array, heads)
            add(f"blk.{layer}.{gguf_part}.weight", array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def chat_cases(tokenizer_config):
    """The model's template rendered by jinja2 as transformers configures it, with enable_thinking
    false and true (only Qwen3's template reads it)."""
    import jinja2.sandbox
    template = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) \
        .from_string(tokenizer_config["chat_template"])
    cases = []
    for name, messages in CONVERSATIONS.items():
        for add_generation_prompt in (True, False):
            for thinking in (False, True):
                rendered = template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                           enable_thinking=thinking, eos_token=tokenizer_config["eos_token"],
                                           bos_token=tokenizer_config.get("bos_token") or "")
                cases.append({"name": name, "messages": messages, "add_generation_prompt": add_generation_prompt,
                              "thinking": thinking, "rendered": rendered})
    return cases


def make(name, spec, goldens):
    c = spec["config"]
    tokens, vocab = vocabulary(spec["specials"])
    vocab_rows = len(tokens) + (-len(tokens) % 16)  # padded, as Qwen and Phi pad their embeddings
    c = dict(c, vocab_size=vocab_rows)
    weights = random_weights(tensor_shapes(c, vocab_rows), seed=sum(map(ord, name)))
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    write_safetensors(os.path.join(folder, "model.safetensors"), weights)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(c, f, indent=1)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(tokens, spec["specials"]), f, ensure_ascii=False)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({k: v for k, v in spec["tokenizer_config"].items() if v is not None}, f, indent=1)
    if spec["gguf"]:
        write_gguf(os.path.join(OUT, name + ".gguf"), name, spec, weights, tokens, vocab_rows)

    chat = chat_cases(spec["tokenizer_config"])
    # The prompt: one question as the template renders it, thinking off.
    prompt = next(c["rendered"] for c in chat if c["name"] == "question" and c["add_generation_prompt"] and not c["thinking"])
    ids = encode(prompt, spec["specials"], vocab)
    as64 = {k: v.astype(np.float64) for k, v in weights.items()}
    hs, logits = ref.forward(as64, c, ids)
    greedy = ref.greedy(as64, c, ids, N_GREEDY)
    sorted_last = np.sort(logits, axis=-1)
    goldens[name] = {
        "prompt": prompt,
        "token_ids": ids,
        "hidden_norms": [[float(v) for v in np.linalg.norm(h, axis=-1)] for h in hs],
        "hidden_last_position": [[float(v) for v in h[-1]] for h in hs],
        "logits_last_position": [float(v) for v in logits[-1]],
        "top1_per_position": [int(i) for i in logits.argmax(-1)],
        "smallest_top1_margin": float((sorted_last[:, -1] - sorted_last[:, -2]).min()),
        "greedy_ids": greedy,
        "chat": chat,
    }
    print(f"{name}: {len(ids)} prompt tokens, greedy {greedy}, "
          f"smallest top-1 margin {goldens[name]['smallest_top1_margin']:.3g}")


def main():
    goldens = {"generator": "tests/reference/make_tiny_architectures.py (numpy_hf_forward.py, float64)",
               "convention": "hidden_norms[l][t]: L2 norm of hidden_states[l] at position t; hidden_states[0] is "
                             "the embedding output, [l] the residual after block l-1 (no final norm); logits "
                             "after the final norm; greedy_ids: argmax continuation of token_ids"}
    for name, spec in MODELS.items():
        make(name, spec, goldens)
    with open(os.path.join(OUT, "goldens.json"), "w") as f:
        json.dump(goldens, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
