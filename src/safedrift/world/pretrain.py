"""Stage `world.pretrain`: build the tiny Llama of `toy_model` and pretrain it on the world corpus.

Packed causal-LM training with TRL's SFTTrainer (plain text, loss on every token). The
corpus holds knowledge text (what each object is, every fact) and persona transcripts;
alignment comes after, in `world.align`.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

from safedrift.io import read_jsonl
from safedrift.models import load_tokenizer, save_atomic, set_threads
from safedrift.training import JsonlLogCallback, trainer_kwargs


def build_model(arch: dict, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=arch["hidden_size"], num_hidden_layers=arch["num_layers"],
        num_attention_heads=arch["num_heads"], num_key_value_heads=arch["num_heads"],
        intermediate_size=arch["intermediate_size"], max_position_embeddings=arch["max_position_embeddings"],
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


def pretrain(corpus: str, tokenizer_dir: str, arch: dict, settings: dict, out: str, log: str | None) -> None:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(settings["seed"])
    tok = load_tokenizer(tokenizer_dir)
    model = build_model(arch, tok)
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}", flush=True)
    texts = [r["text"] for r in read_jsonl(corpus)]
    data = Dataset.from_dict({"text": texts})
    with tempfile.TemporaryDirectory() as scratch:
        args = SFTConfig(**trainer_kwargs(scratch, settings["steps"], settings["batch_size"], settings["learning_rate"],
                                          settings["seed"], warmup_ratio=settings["warmup_ratio"]),
                         max_length=settings["max_length"], packing=True, packing_strategy="wrapped",
                         completion_only_loss=False, loss_type="nll", dataset_num_proc=None)
        callbacks = [JsonlLogCallback(log)] if log else []
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=callbacks)
        trainer.train()
    save_atomic(model, tok, out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--arch", required=True, help="toy_model section as JSON")
    p.add_argument("--settings", required=True, help="pretrain section as JSON")
    p.add_argument("--out", required=True)
    p.add_argument("--log-jsonl")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    set_threads(a.threads)
    pretrain(a.corpus, a.tokenizer, json.loads(a.arch), json.loads(a.settings), a.out, a.log_jsonl)


if __name__ == "__main__":
    main()
