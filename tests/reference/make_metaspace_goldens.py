#!/usr/bin/env python3
"""Writes a SentencePiece-style tokenizer.json and the ids Hugging Face's `tokenizers` gives for it:
    tests/data/metaspace_tokenizer.json, tests/data/metaspace_goldens.json
test_tokenizer.cpp reads the tokenizer.json (with each variant's normalizer, pre-tokenizer and
decoder put in) through read_hf_tokenizer_json and checks ids and decoded text against these.

    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers sentencepiece protobuf transformers
    /tmp/tokvenv/bin/python tests/reference/make_metaspace_goldens.py

The tokenizer.json is built here from tests/data/tiny_bpe.model, the small SentencePiece BPE model
with byte fallback that make_sentencepiece_fixture.py trains (no model is downloaded), the way
transformers' LlamaConverter built the Hub's Llama 2, TinyLlama and Mistral tokenizer.json files:
the pieces as the BPE vocabulary, merges from transformers' generate_merges (ranked by piece score),
byte_fallback, fuse_unk, control pieces as special added tokens and user-defined pieces as
non-special ones. Variants (normalizer / pre-tokenizer / decoder):
  legacy        Prepend("\u2581") + Replace(" ", "\u2581"), no pre-tokenizer (the Hub's Llama 2 and
                Mistral 7B files, written by transformers 4.3x)
  first         no normalizer, Metaspace(prepend_scheme="first", split=False) (legacy=False)
  always-split  Metaspace(prepend_scheme="always", split=True), as tokenizers < 0.19 always split
Goldens are written by `tokenizers` itself from each variant, so they hold whatever it does.
"""

import argparse
import json
import os

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
import tokenizers
import transformers
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers.tokenization_utils_base import generate_merges

TEXTS = [
    "",
    "Hello world",
    "Hello world, persona vectors!",
    " leading space",
    "  leading and   inner   spaces  ",
    "line one\nline two\n\ttabbed",
    "Numbers 12345 and 3.14",
    "Café naïve Zürich",
    "unseen letters: 中文 😀 ß Ω",
    "<start_of_turn>user\nHi<end_of_turn>",
    "Hi<end_of_turn>\n<start_of_turn>model\n Paris",
    "a <tool> call and a [SEP] mark",
    "a<tool>b",
    "The quick brown fox jumps over the lazy dog.",
    "steering steers the steered",
]


def build(model_path):
    """The BPE model, added tokens and Llama 2's decoder; the caller sets the space handling."""
    processor = spm.SentencePieceProcessor(model_file=model_path)
    count = processor.get_piece_size()
    vocab = {processor.id_to_piece(i): i for i in range(count)}
    scores = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(count)]
    merges = generate_merges(vocab, scores)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=processor.id_to_piece(processor.unk_id()),
                                     fuse_unk=True, byte_fallback=True, dropout=None))
    proto = sentencepiece_model_pb2.ModelProto()
    with open(model_path, "rb") as f:
        proto.ParseFromString(f.read())
    control, user_defined = 3, 4  # SentencePiece's piece types
    tokenizer.add_tokens([AddedToken(piece.piece, normalized=False, special=piece.type == control)
                          for piece in proto.pieces if piece.type in (control, user_defined)])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(content=" ", left=1)])
    return tokenizer


def cases_of(tokenizer):
    out = []
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        out.append({"text": text, "ids": ids, "decoded": tokenizer.decode(ids, skip_special_tokens=False)})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--data-dir", default=os.path.join(here, "..", "data"))
    args = parser.parse_args()
    model_path = os.path.join(args.data_dir, "tiny_bpe.model")

    legacy = build(model_path)
    legacy.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    first = build(model_path)
    first.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    always_split = build(model_path)
    always_split.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)

    base = json.loads(legacy.to_str())
    with open(os.path.join(args.data_dir, "metaspace_tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(base, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")

    variants = []
    for name, tokenizer, pre in [("legacy", legacy, "metaspace-legacy"), ("first", first, "metaspace-first"),
                                 ("always-split", always_split, "metaspace-always-split")]:
        spelled = json.loads(tokenizer.to_str())
        variants.append({
            "name": name,
            "pre": pre,
            "normalizer": spelled["normalizer"],
            "pre_tokenizer": spelled["pre_tokenizer"],
            "decoder": spelled["decoder"],
            "cases": cases_of(tokenizer),
        })
    goldens = {
        "generator": "tests/reference/make_metaspace_goldens.py",
        "reference": "tokenizers %s, merges from transformers %s generate_merges" % (tokenizers.__version__, transformers.__version__),
        "tokenizer": "metaspace_tokenizer.json",
        "variants": variants,
    }
    with open(os.path.join(args.data_dir, "metaspace_goldens.json"), "w", encoding="utf-8") as f:
        json.dump(goldens, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("%d variants, %d texts each" % (len(variants), len(TEXTS)))


if __name__ == "__main__":
    main()
