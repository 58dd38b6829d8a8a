"""configs/sensitivity/adaptive_strength.yaml: the dose-response study of the KL defenses, merged over
config.yaml, gets its own table role (report.cells.STRENGTH_SWEEP) and never takes another role's."""

from __future__ import annotations

import pytest
import yaml
from conftest import ROOT
from snakemake.utils import update_config

from safedrift.config import validate
from safedrift.report.cells import DEFENSE_GRID, EMA_GRID, OBJECTIVE_GRID, POISON_SWEEP, STRENGTH_SWEEP, select_study

OVERLAY = ROOT / "configs/sensitivity/adaptive_strength.yaml"


@pytest.fixture
def config() -> dict:
    """config.yaml with the overlay merged in, as Snakemake merges `--configfile config.yaml <overlay>`."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    update_config(config, yaml.safe_load(OVERLAY.read_text()))
    return config


def test_the_overlay_validates_and_says_how_to_run_it(config):
    validate(config)
    header = OVERLAY.read_text().split("\ndefenses:")[0]
    assert "--configfile config.yaml configs/sensitivity/adaptive_strength.yaml" in header
    # the scorecard's cells are in the ladder unchanged, so the study reuses their runs
    scorecard = yaml.safe_load((ROOT / "config.yaml").read_text())["defenses"]
    for name in ("kl", "adaptive_probe", "adaptive_critic"):
        assert name in config["studies"]["adaptive_strength"]["defenses"]
        assert config["defenses"][name] == scorecard[name]


def test_the_strength_role_picks_the_ladder_and_the_other_roles_never_do(config):
    # listed first, the ladder would be the first defense grid without the strength rule
    config["studies"] = {"adaptive_strength": config["studies"].pop("adaptive_strength"), **config["studies"]}
    assert select_study(config, STRENGTH_SWEEP) == "adaptive_strength"
    assert select_study(config, DEFENSE_GRID) == "adaptive"
    assert select_study(config, POISON_SWEEP) == "baselines"
    assert select_study(config, EMA_GRID) == "ema_defenses"
    assert select_study(config, OBJECTIVE_GRID) == "objectives"


def test_without_the_overlay_no_study_is_a_strength_ladder():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert select_study(config, STRENGTH_SWEEP) is None
    # two defenses of one type (probe and critic) are a comparison, not a ladder
    assert [config["defenses"][d]["type"] for d in config["studies"]["adaptive"]["defenses"]].count("adaptive") == 2
