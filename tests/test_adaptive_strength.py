"""configs/sensitivity/adaptive_strength.yaml: the dose-response study of the KL defenses, merged over
config.yaml, gets its own table role (report.cells.STRENGTH_SWEEP) and never takes another role's."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import ROOT

from safedrift.config import validate
from safedrift.report.cells import DEFENSE_GRID, EMA_GRID, OBJECTIVE_GRID, POISON_SWEEP, STRENGTH_SWEEP, select_study

OVERLAY = ROOT / "configs/sensitivity/adaptive_strength.yaml"


def merged(base: dict, overlay: dict) -> dict:
    """Snakemake's merge of two --configfile files: mappings are updated key by key, the rest replaced."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def config() -> dict:
    return merged(yaml.safe_load((ROOT / "config.yaml").read_text()), yaml.safe_load(OVERLAY.read_text()))


def test_the_overlay_validates_and_says_how_to_run_it(config):
    validate(config)
    header = OVERLAY.read_text().split("\ndefenses:")[0]
    assert "--configfile config.yaml configs/sensitivity/adaptive_strength.yaml" in header
    # the scorecard's cells are in the ladder unchanged, so the study reuses their runs
    for name in ("kl", "adaptive_probe", "adaptive_critic"):
        assert name in config["studies"]["adaptive_strength"]["defenses"]
        assert config["defenses"][name] == yaml.safe_load((ROOT / "config.yaml").read_text())["defenses"][name]


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
