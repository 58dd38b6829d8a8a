"""Config validation (one ConfigError line naming the key) and canonical run settings."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import ROOT, Workflow, copy_workflow
from safedrift.config import ConfigError, all_runs, load, run_settings, validate
from safedrift.pipeline import params

RUN_KEYS = ("model", "scenario", "objective", "defense", "budget", "seed")


@pytest.fixture(scope="module")
def smoke_config() -> dict:
    return load(ROOT / "configs/smoke.yaml")


@pytest.mark.parametrize("path", ["config.yaml", "configs/smoke.yaml"])
def test_shipped_configs_validate(path):
    config = load(ROOT / path)
    assert validate(config) is config


# Each case: (what is wrong, edit of the smoke config, text the one-line message must contain).
BAD_CONFIGS = [
    ("unknown top-level key", lambda c: c.update(sedes=[0]), "config key sedes: unknown key"),
    ("unknown nested key", lambda c: c["models"]["toy"]["finetune"].update(lr=0.1),
     "config key models.toy.finetune.lr: unknown key"),
    ("unknown key in a variant", lambda c: c["defenses"]["kl"].update(gamma=1.0),
     "config key defenses.kl.gamma: unknown key"),
    ("wrong type", lambda c: c["world"].update(n_objects="many"), "config key world.n_objects: expected integer"),
    ("missing required key", lambda c: c["world"].pop("seed"), "config key world.seed: required key is missing"),
    ("missing top-level section", lambda c: c.pop("studies"), "config key studies: required key is missing"),
    ("missing variant key", lambda c: c["defenses"]["kl"].pop("beta"),
     "config key defenses.kl.beta: required key is missing"),
    ("1e-4 read as text", lambda c: c["models"]["toy"]["finetune"].update(learning_rate="1e-4"),
     "config key models.toy.finetune.learning_rate: expected number, got '1e-4' "
     "(YAML reads 1e-4 as text: write 1.0e-4)"),
    ("negative steps", lambda c: c["budgets"]["small"].update(steps=-3),
     "config key budgets.small.steps: -3 is out of range"),
    ("zero pretraining steps", lambda c: c["pretrain"].update(steps=0), "config key pretrain.steps: 0 is out of range"),
    ("poison ratio above 1", lambda c: c["scenarios"]["harmful"].update(poison_ratio=1.5),
     "config key scenarios.harmful.poison_ratio: 1.5 is out of range"),
    ("unknown KL direction", lambda c: c["defenses"]["kl"].update(direction="both"),
     "config key defenses.kl.direction: 'both' is not one of"),
    ("unknown objective type", lambda c: c["objectives"].update(ppo={"type": "ppo"}),
     "config key objectives.ppo.type: unknown objective type 'ppo'"),
    ("unknown defense type", lambda c: c["defenses"].update(dropout={"type": "dropout"}),
     "config key defenses.dropout.type: unknown defense type 'dropout'"),
    ("variant without a type", lambda c: c["defenses"].update(mine={"beta": 1.0}),
     "config key defenses.mine.type: required key is missing"),
    ("study names an undefined defense", lambda c: c["studies"]["ema_defenses"]["defenses"].append("kl_strong"),
     "config key studies.ema_defenses.defenses.5: 'kl_strong' is not defined under defenses"),
    ("extra run names an undefined defense",
     lambda c: c["studies"]["ema_defenses"]["extra"].append(["ema_coding", "sft", "nope", "large"]),
     "config key studies.ema_defenses.extra.1: 'nope' is not defined under defenses"),
    ("defense not composable with dpo", lambda c: c["studies"]["objectives"]["defenses"].append("ldifs"),
     "config key studies.objectives: defense 'ldifs' (ldifs) does not compose with objective 'dpo'"),
    ("adaptive lambda_min above lambda_max", lambda c: c["defenses"]["adaptive_probe"].update(lambda_min=3.0),
     "config key defenses.adaptive_probe.lambda_min: 3.0 exceeds lambda_max"),
    ("eval judge undefined", lambda c: c["judge"].update(eval="gpt4"),
     "config key judge.eval: 'gpt4' is not defined under judges"),
    ("hf model without a path",
     lambda c: c["models"].update(big={"source": "hf", "finetune": copy.deepcopy(c["models"]["toy"]["finetune"])}),
     "config key models.big.path: an hf model needs a path"),
    ("toy model without a world", lambda c: c.pop("world"), "config key world: required when a model has source: toy"),
    ("variant name not an identifier", lambda c: c["defenses"].update({"KL-2": {"type": "none"}}),
     "config key defenses: 'KL-2' does not match"),
    ("empty seeds", lambda c: c.update(seeds=[]), "config key seeds: must not be empty"),
    ("dpo without preference_pairs", lambda c: c.pop("preference_pairs"),
     "config key preference_pairs: required when an objective is dpo or orpo (objectives.dpo)"),
    ("persona without its own answer length", lambda c: c["risk"]["persona"].pop("max_new_tokens"),
     "config key risk.persona.max_new_tokens: required key is missing"),
    ("cft tag without {source}", lambda c: c["objectives"]["cft"].update(tag="no slot"),
     "config key objectives.cft.tag"),
]


@pytest.mark.parametrize("edit, expected", [(e, x) for _, e, x in BAD_CONFIGS], ids=[w for w, _, _ in BAD_CONFIGS])
def test_bad_config_raises_one_line_naming_the_key(smoke_config, edit, expected):
    config = copy.deepcopy(smoke_config)
    edit(config)
    with pytest.raises(ConfigError) as error:
        validate(config)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_yaml_reads_1e_minus_4_as_text_and_validation_says_so(tmp_path, smoke_config):
    text = (ROOT / "configs/smoke.yaml").read_text().replace("learning_rate: 2.0e-3, batch_size: 8",
                                                              "learning_rate: 1e-4, batch_size: 8")
    assert text != (ROOT / "configs/smoke.yaml").read_text()
    (tmp_path / "c.yaml").write_text(text)
    config = load(tmp_path / "c.yaml")
    assert config["models"]["toy"]["finetune"]["learning_rate"] == "1e-4"
    with pytest.raises(ConfigError, match=r"write 1\.0e-4"):
        validate(config)


def test_load_names_the_file_and_line_of_invalid_yaml(tmp_path):
    (tmp_path / "bad.yaml").write_text("seeds: [0]\nworld:\n  seed: [1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: not valid YAML"):
        load(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load(tmp_path / "list.yaml")


# --- the workflow fails fast on a bad config ----------------------------------------------------

def dry_run(tmp_path, config_text: str):
    wf = Workflow(copy_workflow(tmp_path / "wf"), configfile="configs/bad.yaml")
    (wf.path / "configs/bad.yaml").write_text(config_text)
    return wf.snakemake("-n", check=False, timeout=120)


def assert_fails_with_one_line(proc, expected: str):
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in proc.stderr.splitlines() if line.startswith("safedrift:")]
    assert len(lines) == 1 and expected in lines[0], output


def test_snakemake_dry_run_on_a_bad_config_prints_one_safedrift_line(tmp_path):
    text = (ROOT / "configs/smoke.yaml").read_text().replace("learning_rate: 2.0e-3, batch_size: 8",
                                                              "learning_rate: 1e-4, batch_size: 8")
    proc = dry_run(tmp_path, text)
    assert_fails_with_one_line(proc, "config key models.toy.finetune.learning_rate: expected number, got '1e-4' "
                                     "(YAML reads 1e-4 as text: write 1.0e-4)")


def test_snakemake_dry_run_does_not_fill_a_missing_key_from_config_yaml(tmp_path, smoke_config):
    # A config given with --configfile is the whole config: a key it lacks must not be taken
    # silently from config.yaml (nor may config.yaml's studies and models join the user's).
    config = copy.deepcopy(smoke_config)
    config["world"].pop("seed")
    proc = dry_run(tmp_path, yaml.safe_dump(config, sort_keys=False))
    assert_fails_with_one_line(proc, "config key world.seed: required key is missing")


# --- run settings are canonical ------------------------------------------------------------------

def reordered(x):
    """The same config with every mapping's keys in reverse order."""
    if isinstance(x, dict):
        return {k: reordered(x[k]) for k in reversed(list(x))}
    if isinstance(x, list):
        return [reordered(v) for v in x]
    return x


def settings_by_run(config: dict) -> dict[tuple, str]:
    return {tuple(r[k] for k in RUN_KEYS): params(run_settings(config, *(r[k] for k in RUN_KEYS)))
            for r in all_runs(config)}


def test_reordering_config_keys_changes_no_run_settings(smoke_config):
    shuffled = reordered(smoke_config)
    assert list(shuffled) != list(smoke_config) and validate(shuffled)
    assert settings_by_run(shuffled) == settings_by_run(smoke_config)


def changed_runs(config: dict, edit) -> tuple[set, dict]:
    before = settings_by_run(config)
    edited = copy.deepcopy(config)
    edit(edited)
    validate(edited)
    after = settings_by_run(edited)
    assert after.keys() == before.keys()
    return {run for run in before if before[run] != after[run]}, before


def runs_with(runs, axis: str, value: str) -> set:
    i = RUN_KEYS.index(axis)
    return {run for run in runs if run[i] == value}


def test_changing_one_defense_beta_changes_only_its_runs(smoke_config):
    changed, runs = changed_runs(smoke_config, lambda c: c["defenses"]["kl"].update(beta=0.9))
    assert changed and changed == runs_with(runs, "defense", "kl")
    assert len(runs) > len(changed)


def test_changing_the_persona_layer_changes_only_steering_runs(smoke_config):
    changed, runs = changed_runs(smoke_config, lambda c: c["risk"]["persona"].update(layer=2))
    assert changed and changed == runs_with(runs, "defense", "steering")


def test_changing_the_probe_changes_only_probe_adaptive_runs(smoke_config):
    changed, runs = changed_runs(smoke_config, lambda c: c["risk"]["probe"].update(C=2.0))
    assert changed and changed == runs_with(runs, "defense", "adaptive_probe")


def test_changing_evaluation_settings_changes_no_run_settings(smoke_config):
    changed, _ = changed_runs(smoke_config, lambda c: c["evaluation"].update(max_new_tokens=8))
    assert changed == set()


def test_run_settings_name_every_variant_and_the_seed(smoke_config):
    settings = run_settings(smoke_config, "toy", "harmful", "sft", "kl", "large", 0)
    assert settings["defense"] == {"name": "kl", **smoke_config["defenses"]["kl"]}
    assert settings["budget"]["steps"] == smoke_config["budgets"]["large"]["steps"]
    assert settings["seed"] == 0 and settings["model"]["name"] == "toy"
