#!/usr/bin/env python3
"""Seed corpora for the targets that read text, from the repository's own files: the tiny models'
tokenizer.json files with a text each, every chat template the tokenizer and architecture
goldens hold with a conversation, the built-in traits, the example projects' and the schema 1
test project's project.json, and chat JSONL lines; and for the control-vector import the GGUF
corpus's control vector behind its two parameter bytes (hidden size 3; block count from the file
or 3). Standard library only.

Usage: python3 tests/fuzz/make_text_corpora.py
"""
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parent / "data"
ROOT = HERE.parent.parent
CONVERSATION = [("system", "Be brief."), ("user", "Hi <think>x</think>"), ("assistant", "<think>\nhm\n</think>\n\nHello"),
                ("user", " What is 2+2? ")]


def main():
    tokenizers = HERE / "corpus" / "tokenizer_json"
    templates = HERE / "corpus" / "chat_template"
    traits = HERE / "corpus" / "trait_json"
    projects = HERE / "corpus" / "project_json"
    chat_lines = HERE / "corpus" / "chat_jsonl"
    control_vectors = HERE / "corpus" / "control_vector"
    for folder in (tokenizers, templates, traits, projects, chat_lines, control_vectors):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
    tiny = json.loads((DATA / "tiny_models" / "goldens.json").read_text())
    chat = []
    for name in ("qwen3", "llama3", "phi3"):
        text = tiny[name]["prompt"].encode()
        (tokenizers / name).write_bytes((DATA / "tiny_models" / name / "tokenizer.json").read_bytes() + b"\0" + text)
        config = json.loads((DATA / "tiny_models" / name / "tokenizer_config.json").read_text())
        chat.append(("tiny_" + name, config["chat_template"], name, config.get("bos_token") or "", config["eos_token"]))
    for name, entry in json.loads((DATA / "tokenizer_goldens.json").read_text())["chat_templates"].items():
        chat.append((name, entry["template"], entry["architecture"], entry["bos_token"], entry["eos_token"]))
    for name, template, architecture, bos, eos in chat:
        fields = [template, architecture, bos, eos] + [part for message in CONVERSATION for part in message]
        (templates / name).write_bytes(b"\0".join(field.encode() for field in fields))
    for trait in sorted((ROOT / "resources" / "traits").glob("*.json")):
        (traits / trait.stem).write_bytes(trait.read_bytes())
    for project in sorted(ROOT.glob("projects/*.persona")) + [DATA / "project_v1.persona"]:
        (projects / project.stem).write_bytes((project / "project.json").read_bytes())
    messages = [{"role": role, "content": content} for role, content in CONVERSATION]
    (chat_lines / "conversation").write_text(json.dumps({"messages": messages + [
        {"role": "assistant", "content": "4"}]}))
    (chat_lines / "one_turn").write_text(json.dumps({"messages": messages[1:2] + [
        {"role": "assistant", "content": "Hello \u00e9"}], "id": 3}))
    control_vector = (HERE / "corpus" / "gguf" / "control_vector.gguf").read_bytes()
    for name, blocks in (("blocks_from_file", 0), ("three_blocks", 3)):
        (control_vectors / name).write_bytes(bytes([3, blocks]) + control_vector)


if __name__ == "__main__":
    main()
