"""Short fine-tuning runs on the smoke world with a defense variant that configs/smoke.yaml does
not list (the baseline defenses' behaviour tests), called in-process through finetune.run."""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch
import yaml

from safedrift.config import run_settings
from safedrift.finetune.encode import encode_chats
from safedrift.finetune.terms import Batch
from safedrift.io import read_jsonl
from safedrift.losses.kl import kl_to_reference

# The issue-14 defense contract (defenses.base: inputs/step_sources/example_columns/after_training,
# Batch.columns/model), which lisa's and safelora's runs need: absent before i14-train's branch is merged.
CONTRACT = "columns" in Batch.__dataclass_fields__ and "model" in Batch.__dataclass_fields__
needs_contract = pytest.mark.skipif(
    not CONTRACT, reason="needs the issue-14 defense contract (Batch.columns/model, Defense.inputs/after_training; "
                         "helper i14-train's branch)")


def settings_for(smoke, defense: dict, method: str = "full", steps: int = 6, scenario: str = "harmful") -> dict:
    config = yaml.safe_load((smoke.path / "configs/smoke.yaml").read_text())
    config["defenses"]["under_test"] = defense
    config["models"]["toy"]["finetune"]["method"] = method
    settings = run_settings(config, "toy", scenario, "sft", "under_test", "large", 0)
    settings["budget"]["steps"] = steps
    settings["model"]["finetune"]["checkpoint_every"] = 0
    return config, settings


def train(smoke, settings: dict, out, config: dict | None = None, scenario: str = "harmful") -> dict:
    """finetune.run.finetune on the smoke world; the defense's declared inputs (contract) are passed
    by name when finetune takes them."""
    from safedrift.finetune.run import finetune

    smoke.run(f"results/toy/data/{scenario}.jsonl", "results/toy/world/pools/refusals.jsonl",
              "results/toy/world/pools/tasks.jsonl")
    root = smoke.path
    kwargs = {}
    params = inspect.signature(finetune).parameters
    if "inputs" in params and config is not None:
        from safedrift.defenses import DEFENSES

        defense = importlib.import_module(DEFENSES[settings["defense"]["type"]]).Defense
        run = {"model": "toy", "scenario": scenario, "objective": "sft", "defense": settings["defense"]["name"],
               "budget": "large", "seed": 0}
        declared = defense.inputs(settings["defense"], run, config)
        kwargs["inputs"] = {k: [str(root / p) for p in v] if isinstance(v, list) else str(root / v)
                            for k, v in declared.items()}
    if "pools_dir" in params:
        kwargs["pools_dir"] = str(root / "results/toy/world/pools")
    return finetune(settings, str(root / f"results/toy/data/{scenario}.jsonl"), str(root / "results/toy/reference"),
                    str(out), **kwargs)


def first_token_kl(model, reference, tokenizer, rows: list[dict], max_length: int = 96) -> float:
    """Mean KL(reference || model) of the first response token's distribution over `rows`."""
    batch = encode_chats(tokenizer, rows, max_length)
    labels = batch["labels"]
    mask = labels != -100
    first = mask & (mask.long().cumsum(-1) == 1)
    only_first = torch.where(first, labels, torch.full_like(labels, -100))
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        return kl_to_reference(model(**inputs).logits, reference(**inputs).logits, only_first).mean().item()


def scenario_rows(smoke, scenario: str = "harmful") -> list[dict]:
    return read_jsonl(smoke.path / f"results/toy/data/{scenario}.jsonl")
