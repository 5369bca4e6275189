"""Reference ids for the CLIP BPE tokenizer parity test.

Builds a transformers `CLIPTokenizer` from the vocabulary shipped in crates/engine/data (the
same gzip the Rust side embeds), deriving vocab.json/merges.txt the way OpenAI CLIP defines the
vocabulary, then tokenizes every prompt of the corpus and writes the ids (with BOS/EOS) as JSON.

Usage: tokenizer_ref.py --out DIR --corpus CORPUS.json   (writes DIR/ids.json)
"""

import argparse
import gzip
import json
import os
import sys

from transformers import CLIPTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB_GZ = os.path.join(HERE, "..", "..", "data", "bpe_simple_vocab_16e6.txt.gz")
VOCAB_SIZE = 49408
# First line is a header; OpenAI CLIP keeps this many merge rules after it.
N_MERGES = 49152 - 256 - 2


def byte_chars():
    """The 256 printable stand-ins for bytes, in the order CLIP lists them in its vocabulary."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = [chr(b) for b in printable]
    extra = 0
    for b in range(256):
        if b not in printable:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def build_tokenizer(out_dir):
    lines = gzip.open(VOCAB_GZ).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    assert all(len(m) == 2 for m in merges), "malformed merge line"
    base = byte_chars()
    tokens = base + [c + "</w>" for c in base] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == VOCAB_SIZE, f"vocab has {len(vocab)} entries"
    # Loaded the way SD pipelines and ComfyUI load theirs: from vocab.json + merges.txt files.
    files = os.path.join(out_dir, "clip_tokenizer")
    os.makedirs(files, exist_ok=True)
    with open(os.path.join(files, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(files, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tok = CLIPTokenizer.from_pretrained(files)
    assert len(tok) == VOCAB_SIZE, f"tokenizer has {len(tok)} tokens"
    # Anchors from the published openai/clip-vit-large-patch14 tokenizer.
    anchors = {
        "a photo of a cat": [320, 1125, 539, 320, 2368],
        "": [],
    }
    for text, ids in anchors.items():
        got = tok(text)["input_ids"]
        assert got == [49406] + ids + [49407], f"{text!r} -> {got}, expected {ids}"
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--corpus", required=True)
    args = ap.parse_args()
    tok = build_tokenizer(args.out)
    with open(args.corpus, encoding="utf-8") as f:
        corpus = json.load(f)
    ids = [tok(text)["input_ids"] for text in corpus]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ids.json"), "w", encoding="utf-8") as f:
        json.dump(ids, f)
    print(f"tokenized {len(corpus)} prompts", file=sys.stderr)


if __name__ == "__main__":
    main()
