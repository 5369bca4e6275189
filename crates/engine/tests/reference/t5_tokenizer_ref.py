"""Reference ids for the T5 tokenizer (crates/engine/src/t5/tokenizer.rs).

Trains a small sentencepiece unigram model at test time (T5's layout: <pad> 0, </s> 1,
<unk> 2, no <s>, the nmt_nfkc normalizer), loads it with transformers' T5Tokenizer, and
writes, under --out:
  * spm/spiece.model        the trained model alone, as a diffusers tokenizer/ folder has it
  * json/tokenizer.json     the same tokenizer saved by transformers
  * expected.json           for lengths 300 and 16: each prompt's ids and attention mask
"""

import argparse
import json
import os
import random

import sentencepiece as spm
from transformers import T5Tokenizer

WORDS = (
    "a photo of the cat dog sitting on mat under golden light castle forest river "
    "portrait painting oil canvas detailed sharp focus cinematic dramatic sky city night "
    "neon rain street woman man child old young red blue green yellow misty mountain "
    "café naïve straße Zürich über déjà vu 日本 東京 ｆｕｌｌｗｉｄｔｈ ① ½ Ⅻ fi"
).split()

PROMPTS = [
    "",
    "a photo of a cat",
    "A Photo Of A Cat, Cinematic Lighting",
    "  leading and trailing spaces  ",
    "repeated   spaces\tand\ttabs\nand a newline",
    "café naïve Straße über Zürich déjà vu",
    "ｆｕｌｌｗｉｄｔｈ ① ½ Ⅻ ﬁ 東京 日本",
    "unknown glyphs ☃ ✓ and emoji 🐈",
    "a literal </s> and <extra_id_0> in the text",
    " ".join(["golden light over the misty mountain river"] * 12),
]


def train(folder):
    """Trains the unigram model into folder/spiece.model (T5's special ids, nmt_nfkc)."""
    rng = random.Random(5)
    syllables = "ka lo mi ra ten sha vor ple in ex der qu ist ung ber ach".split()
    words = WORDS + [w.capitalize() for w in WORDS[:20]] + [
        "".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(400)
    ]
    corpus = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 14))) for _ in range(4000)]
    os.makedirs(folder, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_prefix=os.path.join(folder, "spiece"),
        vocab_size=400,
        hard_vocab_limit=False,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        normalization_rule_name="nmt_nfkc",
        character_coverage=1.0,
        minloglevel=2,
    )
    os.remove(os.path.join(folder, "spiece.vocab"))
    return os.path.join(folder, "spiece.model")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = parser.parse_args().out
    train(os.path.join(out, "spm"))
    tokenizer = T5Tokenizer.from_pretrained(os.path.join(out, "spm"))
    tokenizer.save_pretrained(os.path.join(out, "json"))
    expected = {}
    for length in (300, 16):
        rows = []
        for text in PROMPTS:
            enc = tokenizer(text, padding="max_length", max_length=length, truncation=True)
            rows.append({"text": text, "ids": enc.input_ids, "mask": enc.attention_mask})
        expected[str(length)] = rows
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
