"""A method added without editing the package: a defense module under tests/fixtures, named in the
config by its dotted path, validated by its own schema and trained end to end by the workflow."""

from __future__ import annotations

import json
import os
import sys

import pytest
import yaml

from conftest import ROOT, Workflow
from safedrift.config import ladder_previous, validate
from safedrift.errors import ConfigError
from safedrift.finetune.schedule import schedule

FIXTURE = "tests.fixtures.logit_l2"
if str(ROOT) not in sys.path:  # the fixture module is imported by its dotted path, as a user's would be
    sys.path.insert(0, str(ROOT))


def with_fixture_defense(config: dict, **settings) -> dict:
    config["defenses"]["logit_l2"] = {"type": FIXTURE, "weight": 1.0, **settings}
    return config


def smoke_config() -> dict:
    return yaml.safe_load((ROOT / "configs/smoke.yaml").read_text())


def test_a_dotted_type_is_validated_by_its_modules_schema():
    validate(with_fixture_defense(smoke_config()))
    with pytest.raises(ConfigError, match="config key defenses.logit_l2.weight: -1 is out of range"):
        validate(with_fixture_defense(smoke_config(), weight=-1))
    config = smoke_config()
    config["defenses"]["nope"] = {"type": "tests.fixtures.no_such_defense"}
    with pytest.raises(ConfigError, match="config key defenses.nope.type: defense type 'tests.fixtures.no_such_defense': "
                                          "cannot import it"):
        validate(config)


def test_a_stateful_defense_trains_every_budget_afresh(monkeypatch):
    from tests.fixtures import logit_l2

    config = with_fixture_defense(smoke_config())
    config["studies"]["ext"] = {"scenarios": ["harmful"], "objectives": ["sft"], "defenses": ["logit_l2"],
                                "budgets": ["small", "large"]}
    run = {"model": "toy", "scenario": "harmful", "objective": "sft", "defense": "logit_l2", "budget": "large",
           "seed": 0}
    assert ladder_previous(config, run) == "small"
    monkeypatch.setattr(logit_l2.Defense, "stateful", True)
    assert ladder_previous(config, run) is None


def test_a_step_plan_fills_whole_steps_from_one_pool_and_is_prefix_stable():
    rows = [{"id": f"t{i}"} for i in range(5)]
    safe = [{"id": f"s{i}"} for i in range(3)]
    plan = lambda n: ["train" if k % 3 else "safe" for k in range(n)]  # noqa: E731
    ordered = schedule(rows, 6, 2, 0, safe, 0.0, plan=plan)
    steps = [[r["id"][0] for r in ordered[k:k + 2]] for k in range(0, 12, 2)]
    assert steps == [["s", "s"], ["t", "t"], ["t", "t"], ["s", "s"], ["t", "t"], ["t", "t"]]
    assert schedule(rows, 4, 2, 0, safe, 0.0, plan=plan) == ordered[:8]
    # without a plan the schedule is the one every existing run trains on
    assert schedule(rows, 6, 2, 0, safe, 0.5) == schedule(rows, 6, 2, 0, safe, 0.5, plan=None)


@pytest.mark.slow
def test_a_fixture_defense_runs_end_to_end_in_the_smoke_workflow(smoke):
    (smoke.path / "configs/ext.yaml").write_text(yaml.safe_dump(with_fixture_defense(smoke_config())))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = "results/toy/runs/harmful/sft/logit_l2/small/seed0"
    Workflow(smoke.path, "configs/ext.yaml").run(f"{run}/train_log.jsonl", env=env)
    log = [json.loads(line) for line in (smoke.path / run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    # step 1's policy is the reference's copy: the term is exactly zero, and grows once the weights move
    assert log[0]["logit_l2_raw"] == 0.0 and log[1]["logit_l2_raw"] > 0.0
    assert all(r["safe_share"] == 0.0 for r in log)  # no safe rows: every example's `safe` column is 0
    card = json.loads((smoke.path / run / "run_card.json").read_text())
    assert card["settings"]["defense"]["type"] == FIXTURE
