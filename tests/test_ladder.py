"""Budget ladders: a larger budget continues the next smaller one's saved training state, with the
result of training it from the reference (bit-identical on CPU), and adding a budget trains only
the extension."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from safedrift.config import ladder_previous, run_settings
from test_finetune import assert_same_weights

LARGE = "results/toy/runs/harmful/{objective}/none/large/seed0"


def config_of(wf) -> dict:
    return yaml.safe_load((wf.path / wf.configfile).read_text())


@pytest.mark.parametrize("objective", ["sft", "dpo"])
def test_a_laddered_budget_equals_training_it_from_the_reference(built, tmp_path, objective):
    run = built.path / LARGE.format(objective=objective)
    card = json.loads((run / "run_card.json").read_text())
    assert card["ladder"] and card["ladder"]["from"].endswith("/small/seed0")
    assert card["ladder"]["steps_trained"] == card["steps"] - 2  # smoke: small = 2 steps, large = 6
    settings = run_settings(config_of(built), "toy", "harmful", objective, "none", "large", 0)
    scratch = tmp_path / "scratch"
    cmd = [sys.executable, "-m", "safedrift", "finetune.run", "--settings", json.dumps(settings),
           "--data", "results/toy/data/harmful.jsonl", "--reference", "results/toy/reference", "--out", str(scratch),
           "--threads", "1"]
    if objective == "dpo":
        cmd += ["--input", "reference_responses=results/toy/data/harmful.reference.jsonl"]
    subprocess.run(cmd, cwd=built.path, check=True, capture_output=True)
    assert_same_weights(scratch, run)
    drop = ("learning_rate",)  # identical; the keys below differ only by wall-clock timing fields
    laddered = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    alone = [json.loads(line) for line in (scratch / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in laddered] == [r["step"] for r in alone] == list(range(1, 7))
    assert [r["loss"] for r in laddered] == [r["loss"] for r in alone]
    assert all(a[k] == b[k] for a, b in zip(laddered, alone) for k in drop)


def test_ladder_rungs_come_from_the_studies_and_need_a_constant_schedule(built):
    config = config_of(built)
    run = {"model": "toy", "scenario": "harmful", "objective": "sft", "defense": "none", "budget": "large", "seed": 0}
    assert ladder_previous(config, run) == "small"
    assert ladder_previous(config, {**run, "budget": "small"}) is None
    assert ladder_previous(config, {**run, "defense": "kl"}) is None  # the adaptive study runs kl at `large` only
    config["models"]["toy"]["finetune"]["lr_scheduler"] = "cosine"
    assert ladder_previous(config, run) is None


def test_adding_a_budget_trains_only_the_extension(built):
    config = config_of(built)
    config["budgets"]["longer"] = {"type": "steps", "steps": 8}
    config["studies"]["objectives"]["budgets"].append("longer")
    (built.path / "configs/longer.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    before, built.configfile = built.configfile, "configs/longer.yaml"
    try:
        jobs = built.dry_run_jobs("all")
        cells = len(config["studies"]["objectives"]["scenarios"]) * len(config["studies"]["objectives"]["objectives"])
        assert jobs["finetune"] == cells * len(config["seeds"])  # the new rung only, nothing retrained
        target = "results/toy/runs/harmful/sft/none/longer/seed0/run_card.json"
        built.run(target)
        card = json.loads((built.path / target).read_text())
        assert card["steps"] == 8 and card["ladder"]["steps_trained"] == 2
        assert card["ladder"]["from"].endswith("harmful/sft/none/large/seed0")
    finally:
        built.configfile = before
