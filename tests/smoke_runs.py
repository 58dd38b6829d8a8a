"""Short fine-tuning runs on the smoke world with a defense variant that configs/smoke.yaml does
not list (the baseline defenses' behaviour tests), called in-process through finetune.run."""

from __future__ import annotations

import torch
import yaml

from safedrift.config import run_settings
from safedrift.defenses import defense_class
from safedrift.finetune.encode import encode_chats
from safedrift.io import read_jsonl

def settings_for(smoke, defense: dict, method: str = "full", steps: int = 6, scenario: str = "harmful") -> dict:
    config = yaml.safe_load((smoke.path / "configs/smoke.yaml").read_text())
    config["defenses"]["under_test"] = defense
    config["models"]["toy"]["finetune"]["method"] = method
    settings = run_settings(config, "toy", scenario, "sft", "under_test", "large", 0)
    settings["budget"]["steps"] = steps
    return config, settings


def train(smoke, settings: dict, out, config: dict | None = None, scenario: str = "harmful") -> dict:
    """finetune.run.finetune on the smoke world; the defense's declared inputs (contract) are passed
    by name when finetune takes them."""
    from safedrift.finetune.run import finetune

    smoke.run(f"results/toy/data/{scenario}.jsonl", "results/toy/world/pools/refusals.jsonl",
              "results/toy/world/pools/tasks.jsonl")
    root = smoke.path
    run = {"model": "toy", "scenario": scenario, "objective": "sft", "defense": settings["defense"]["name"],
           "budget": "large", "seed": 0}
    declared = defense_class(settings["defense"]["type"]).inputs(settings["defense"], run, config or {})
    inputs = {k: [str(root / p) for p in v] if isinstance(v, list) else str(root / v) for k, v in declared.items()}
    return finetune(settings, str(root / f"results/toy/data/{scenario}.jsonl"), str(root / "results/toy/reference"),
                    str(out), inputs=inputs)


def first_token_delta(model, reference, tokenizer, rows: list[dict], max_length: int = 96) -> float:
    """Mean over `rows` of log pi_model(y_0) - log pi_reference(y_0), y_0 the first response token."""
    batch = next(encode_chats(reference, tokenizer, rows, max_length).batches(len(rows)))
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    first = mask & (mask.long().cumsum(-1) == 1)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        logp, logq = (torch.log_softmax(m(**inputs).logits[:, :-1].float(), -1).gather(-1, labels.clamp(min=0)[..., None])
                      .squeeze(-1) for m in (model, reference))
    return (logp - logq)[first].mean().item()


def scenario_rows(smoke, scenario: str = "harmful") -> list[dict]:
    return read_jsonl(smoke.path / f"results/toy/data/{scenario}.jsonl")
