"""The baseline defenses' config: the default config's variants validate and join only the `baselines` study, a
bad setting names its key, and each module's `schema` agrees with the schema file's $defs entry
while validation still reads types from there (issue 14 moves it into the modules)."""

from __future__ import annotations

import copy

import pytest

from conftest import ROOT
from safedrift.config import ConfigError, load, validate

TYPES = ("token_constrained", "lisa", "safelora")


@pytest.fixture(scope="module")
def config():
    return load(ROOT / "config.yaml")


def test_default_variants_validate_and_join_only_the_baselines_study(config):
    validate(config)
    variants = {name for name, d in config["defenses"].items() if d["type"] in TYPES}
    assert variants == set(TYPES)
    assert variants <= set(config["studies"]["baselines"]["defenses"])
    for name, study in config["studies"].items():
        assert name == "baselines" or not variants & set(study["defenses"])
        assert not any(cell[2] in variants for cell in study.get("extra", []))


@pytest.mark.parametrize("name,key,value,message", [
    ("lisa", "align_steps", 0, "config key defenses.lisa.align_steps: 0 is out of range"),
    ("token_constrained", "beta", 0, "config key defenses.token_constrained.beta: 0 is out of range"),
    ("safelora", "select", "top", "config key defenses.safelora.select: 'top' is not one of"),
    ("safelora", "projected", 3, "config key defenses.safelora.projected: unknown key"),
])
def test_a_bad_setting_names_its_key(config, name, key, value, message):
    bad = copy.deepcopy(config)
    bad["defenses"][name][key] = value
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        validate(bad)
