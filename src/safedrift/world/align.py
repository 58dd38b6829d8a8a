"""Stage `world.align`: supervised alignment of the pretrained toy model into the safe reference.

TRL SFTTrainer on the world's alignment chats, loss on assistant tokens only (the chat
template's `{% generation %}` markers). The result is the reference policy every run
starts from and is compared to.

With `--reference` (a `references.<name>` variant's settings) the same alignment builds that
variant instead: type vaccine trains with Vaccine's perturbation-aware steps (world.vaccine).
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

from safedrift.io import read_jsonl
from safedrift.models import load_model, load_tokenizer, save_atomic, set_threads
from safedrift.training import JsonlLogCallback, trainer_kwargs


def align(pretrained: str, chats: str, settings: dict, out: str, log: str | None, reference: dict | None = None) -> None:
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
        trainer_class, extra = SFTTrainer, {}
        if reference is not None and reference["type"] == "vaccine":
            from safedrift.world.vaccine import VaccineTrainer

            trainer_class, extra = VaccineTrainer, {"rho": reference["rho"]}
        trainer = trainer_class(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=callbacks,
                                **extra)
        trainer.train()
    save_atomic(model, tok, out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrained", required=True)
    p.add_argument("--chats", required=True)
    p.add_argument("--settings", required=True, help="align section as JSON")
    p.add_argument("--reference", help="a reference variant's settings as JSON (references.<name>); default: plain")
    p.add_argument("--out", required=True)
    p.add_argument("--log-jsonl")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    set_threads(a.threads)
    align(a.pretrained, a.chats, json.loads(a.settings), a.out, a.log_jsonl,
          json.loads(a.reference) if a.reference else None)


if __name__ == "__main__":
    main()
