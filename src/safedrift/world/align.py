"""Stage `world.align`: supervised alignment of the pretrained toy model into the safe reference.

TRL SFTTrainer on the world's alignment chats, loss on assistant tokens only (the chat
template's `{% generation %}` markers). The result is the reference policy every run
starts from and is compared to.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

from safedrift.io import read_jsonl
from safedrift.models import load_model, load_tokenizer, save_atomic, set_threads
from safedrift.training import JsonlLogCallback, trainer_kwargs


def align(pretrained: str, chats: str, settings: dict, out: str, log: str | None) -> None:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(settings["seed"])
    tok = load_tokenizer(pretrained)
    model = load_model(pretrained, train=True)
    data = Dataset.from_dict({"messages": [r["messages"] for r in read_jsonl(chats)]})
    with tempfile.TemporaryDirectory() as scratch:
        args = SFTConfig(**trainer_kwargs(scratch, settings["steps"], settings["batch_size"], settings["learning_rate"],
                                          settings["seed"], warmup_ratio=settings["warmup_ratio"]),
                         max_length=settings["max_length"], assistant_only_loss=True, loss_type="nll",
                         packing=False)
        callbacks = [JsonlLogCallback(log)] if log else []
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=callbacks)
        trainer.train()
    save_atomic(model, tok, out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrained", required=True)
    p.add_argument("--chats", required=True)
    p.add_argument("--settings", required=True, help="align section as JSON")
    p.add_argument("--out", required=True)
    p.add_argument("--log-jsonl")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    set_threads(a.threads)
    align(a.pretrained, a.chats, json.loads(a.settings), a.out, a.log_jsonl)


if __name__ == "__main__":
    main()
