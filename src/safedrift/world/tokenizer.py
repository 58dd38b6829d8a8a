"""Stage `world.tokenizer`: train a byte-level BPE tokenizer on the world's pretraining corpus.

The result is a standard `PreTrainedTokenizerFast` folder with the chat template of
`safedrift.chat` (EOS = `<|end|>`, PAD = `<|pad|>`), loadable with AutoTokenizer.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from safedrift.chat import CHAT_TEMPLATE, EOS, PAD, SPECIAL_TOKENS
from safedrift.io import atomic_path, read_jsonl


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    tok = train_tokenizer([r["text"] for r in read_jsonl(a.corpus)], a.vocab_size)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tok.save_pretrained(tmp)
        for f in Path(tmp).iterdir():
            with atomic_path(out / f.name) as dst:
                dst.write_bytes(f.read_bytes())
    print(json.dumps({"vocab_size": len(tok)}))


if __name__ == "__main__":
    main()
