"""Token budgets (`budgets.<name>: {type: tokens, tokens: N}`, Vennemeyer et al. 2026): a run trains
the fewest steps of its batch schedule whose examples hold N training tokens, counted before
training; token budgets ladder among themselves."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from safedrift.config import ladder_previous, run_settings, validate
from safedrift.finetune.schedule import schedule, steps_for_tokens
from safedrift.report.claims import _resolve_budget


def rows(*sizes):
    return [{"id": f"r{i}", "n": n} for i, n in enumerate(sizes)]


def test_steps_for_tokens_when_every_batch_is_one_epoch():
    # batch of 3 over 3 rows: every step holds each row once, 5 + 7 + 11 = 23 tokens, whatever the shuffle
    data = rows(5, 7, 11)
    count = lambda r: r["n"]
    assert steps_for_tokens(23, count, data, 3, seed=0) == (1, 23)
    assert steps_for_tokens(24, count, data, 3, seed=0) == (2, 46)
    assert steps_for_tokens(46, count, data, 3, seed=0) == (2, 46)
    assert steps_for_tokens(47, count, data, 3, seed=0) == (3, 69)


def test_steps_for_tokens_follows_the_training_order():
    data = rows(1, 10, 100, 1000)
    order = schedule(data, 6, 2, seed=4)  # the rows the run will train on, in order
    per_step = [order[i]["n"] + order[i + 1]["n"] for i in range(0, 12, 2)]
    for k in range(1, 7):
        budget = sum(per_step[:k])
        assert steps_for_tokens(budget, lambda r: r["n"], data, 2, seed=4) == (k, budget)
        assert steps_for_tokens(budget - 1 if per_step[k - 1] > 1 else budget, lambda r: r["n"], data, 2,
                                seed=4)[0] == k


def token_config():
    with open(ROOT / "configs/smoke.yaml") as f:
        config = yaml.safe_load(f)
    config["budgets"] = {"small": {"type": "steps", "steps": 2}, "large": {"type": "steps", "steps": 6},
                         "t_small": {"type": "tokens", "tokens": 500}, "t_large": {"type": "tokens", "tokens": 2000}}
    config["studies"]["objectives"]["budgets"] = ["small", "large", "t_small", "t_large"]
    return config


def test_token_budgets_validate_and_ladder_among_themselves():
    config = validate(token_config())
    run = {"model": "toy", "scenario": "harmful", "objective": "sft", "defense": "none", "budget": "t_large", "seed": 0}
    assert ladder_previous(config, run) == "t_small"
    assert ladder_previous(config, {**run, "budget": "t_small"}) is None  # steps budgets are not its rungs
    assert ladder_previous(config, {**run, "budget": "large"}) == "small"
    cell = {"scenario": "harmful", "objective": "sft", "defense": "none", "budget": "largest"}
    tokens_only = {("harmful", "sft", "none", b): None for b in ("t_small", "t_large")}
    assert _resolve_budget(config, tokens_only, [cell]) == "t_large"
    # steps and tokens have no common size: "largest" among both is a question, not a pick
    mixed = {("harmful", "sft", "none", b): None for b in ("small", "t_small", "t_large")}
    with pytest.raises(ValueError, match="ambiguous"):
        _resolve_budget(config, mixed, [cell])


def test_a_token_budget_without_tokens_is_a_config_error():
    from safedrift.errors import ConfigError

    config = token_config()
    del config["budgets"]["t_small"]["tokens"]
    with pytest.raises(ConfigError, match="budgets.t_small.tokens: required key is missing"):
        validate(config)


def hand_count(tokenizer, row, max_length):
    chat = [*row["messages"], {"role": "assistant", "content": row["target"]}]
    return min(len(tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"]), max_length)


def test_a_token_budget_run_trains_the_steps_its_tokens_need(smoke, tmp_path):
    from transformers import AutoTokenizer

    smoke.run("results/toy/data/harmful.jsonl")
    root = smoke.path
    settings = run_settings(token_config(), "toy", "harmful", "sft", "none", "t_small", 0)
    ft = settings["model"]["finetune"]
    data = [json.loads(line) for line in (root / "results/toy/data/harmful.jsonl").read_text().splitlines()]
    data = [{**r, "source": r.get("source", "harmful")} for r in data]
    tokenizer = AutoTokenizer.from_pretrained(root / "results/toy/reference")
    step = ft["batch_size"] * ft.get("gradient_accumulation_steps", 1)
    order = schedule(data, 50, step, seed=0)
    steps = seen = 0
    while seen < 500:  # hand count: whole steps until the budget is reached
        seen += sum(hand_count(tokenizer, r, ft["max_length"]) for r in order[steps * step:(steps + 1) * step])
        steps += 1
    assert 1 < steps < 50
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "safedrift", "finetune.run", "--settings", json.dumps(settings),
                    "--data", str(root / "results/toy/data/harmful.jsonl"), "--reference",
                    str(root / "results/toy/reference"), "--out", str(out), "--threads", "1"],
                   check=True, capture_output=True)
    card = json.loads((out / "run_card.json").read_text())
    assert card["budget_tokens"] == {"budget": 500, "steps": steps, "tokens": seen}
    assert card["steps"] == steps
    assert card["tokens_seen"] == seen  # the trainer's own count of the tokens it trained on agrees
