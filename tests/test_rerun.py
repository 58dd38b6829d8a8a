"""What Snakemake reruns when the config changes: `snakemake -n` job lists on edited copies of
configs/smoke.yaml in the `built` folder (conftest), so nothing is retrained. Every evaluation
key is changed in turn; none may plan a training-stage rule."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from conftest import ROOT, Workflow
from safedrift.config import all_runs
from safedrift.objectives import objective_class


def write_config(wf, name: str, edit) -> str:
    config = yaml.safe_load((wf.path / "configs/smoke.yaml").read_text())
    edit(config)
    (wf.path / f"configs/{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return f"configs/{name}.yaml"


def jobs_with(wf, configfile: str) -> dict[str, int]:
    before, wf.configfile = wf.configfile, configfile
    try:
        return wf.dry_run_jobs("all")
    finally:
        wf.configfile = before


def test_no_change_and_key_reordering_rerun_nothing(built):
    assert built.dry_run_jobs("all") == {}

    def reorder(config):
        for key in list(config)[::-1]:
            config[key] = config.pop(key)
        config["defenses"] = dict(reversed(list(config["defenses"].items())))

    assert jobs_with(built, write_config(built, "reordered", reorder)) == {}


# Rules an evaluation setting may rerun (the reference's card and its figure report on the
# reference's generations); anything else (finetune, pretrain, align, tokenizer,
# reference_responses, persona_vector, probe, critic, scenario_data, ...) is training.
EVALUATION_RULES = {"generate", "judge_score", "metrics", "aggregate", "aggregate_largest", "study_table", "figure",
                    "judge_validation", "reference_card", "reference_figure", "claims", "robustness",
                    "robustness_table", "all"}


def leaf_keys(tree: dict, prefix=()) -> list[tuple]:
    keys = []
    for key, value in tree.items():
        keys += leaf_keys(value, (*prefix, key)) if isinstance(value, dict) else [(*prefix, key)]
    return keys


def changed_value(key: tuple, value):
    """A different valid value for an evaluation setting."""
    if key[-1] == "decoding":
        return "sample" if value == "greedy" else "greedy"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return round(value * 0.9, 6)
    raise AssertionError(f"evaluation.{'.'.join(key)}: no rule for changing a {type(value).__name__}")


def set_key(tree: dict, key: tuple, value) -> None:
    for part in key[:-1]:
        tree = tree[part]
    tree[key[-1]] = value


def get_key(tree: dict, key: tuple):
    for part in key:
        tree = tree[part]
    return tree


SMOKE_EVALUATION = yaml.safe_load((ROOT / "configs/smoke.yaml").read_text())["evaluation"]
EVALUATION_KEYS = leaf_keys(SMOKE_EVALUATION)


def test_every_evaluation_key_of_the_default_config_is_tested():
    """The rerun test below changes every evaluation key of configs/smoke.yaml; config.yaml has no other."""
    default = yaml.safe_load((ROOT / "config.yaml").read_text())["evaluation"]
    assert set(leaf_keys(default)) <= set(EVALUATION_KEYS)


# What each evaluation setting must rerun, beyond nothing from training: "generation" settings
# regenerate every subject, "metrics" settings recompute every subject's metrics from its
# scores, judge_validation settings redo only the judge validation table.
RERUN_KIND = {"max_new_tokens": "generation", "batch_size": "generation", "seed": "generation", "sets": "generation",
              "thresholds": "metrics", "bootstrap": "metrics", "max_unscored": "metrics",
              "judge_validation": "judge_validation"}


@pytest.fixture(scope="module")
def evaluation_key_plans(built) -> dict[tuple, tuple]:
    """key -> (its new value, the jobs `snakemake -n` plans after the change), for every evaluation key.
    Dry runs take no lock and read the metadata only: two at a time, one per core (CI has two)."""
    config = yaml.safe_load((built.path / "configs/smoke.yaml").read_text())

    def plan(key):
        new = changed_value(key, get_key(config["evaluation"], key))
        configfile = write_config(built, "eval_" + "_".join(key), lambda c: set_key(c["evaluation"], key, new))
        return new, Workflow(built.path, configfile).dry_run_jobs("all")

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(EVALUATION_KEYS, pool.map(plan, EVALUATION_KEYS)))


@pytest.mark.parametrize("key", EVALUATION_KEYS, ids=".".join)
def test_evaluation_key_reruns_evaluation_not_training(built, evaluation_key_plans, key):
    config = yaml.safe_load((built.path / "configs/smoke.yaml").read_text())
    new, jobs = evaluation_key_plans[key]
    print(f"evaluation.{'.'.join(key)} -> {new!r}: {json.dumps(jobs, sort_keys=True)}")
    training = set(jobs) - EVALUATION_RULES
    assert not training, f"evaluation.{'.'.join(key)} reruns training-stage rules {sorted(training)}: {jobs}"
    subjects = 1 + len(all_runs(config))
    kind = RERUN_KIND[key[0]]
    if kind == "generation":
        assert jobs.get("generate") == subjects and jobs.get("metrics") == subjects, jobs
        assert jobs.get("aggregate") == len(config["studies"]) and "judge_validation" in jobs, jobs
    elif kind == "metrics":
        assert "generate" not in jobs and "judge_score" not in jobs and jobs.get("metrics") == subjects, jobs
        assert jobs.get("aggregate") == len(config["studies"]), jobs
        # The validation reads the decision thresholds and the unscored share it may tolerate.
        assert ("judge_validation" in jobs) == (key[0] in ("thresholds", "max_unscored")), jobs
    else:  # the validation, and the study tables that footnote its summary
        assert "judge_validation" in jobs and set(jobs) <= {"judge_validation", "study_table", "all"}, jobs


def test_evaluation_sets_added_setting_and_dropped_set_rerun_evaluation_not_training(built):
    """Keys the smoke config leaves out (top_p) and the set list itself."""
    config = yaml.safe_load((built.path / "configs/smoke.yaml").read_text())
    subjects = 1 + len(all_runs(config))
    edits = {"top_p": lambda c: c["evaluation"]["sets"]["general"].update(top_p=0.9),
             "dropped_set": lambda c: c["evaluation"]["sets"].pop("traits_villain")}
    for name, edit in edits.items():
        jobs = jobs_with(built, write_config(built, f"eval_{name}", edit))
        print(f"evaluation {name}: {json.dumps(jobs, sort_keys=True)}")
        assert set(jobs) <= EVALUATION_RULES, (name, jobs)
        assert jobs.get("generate") == subjects and jobs.get("metrics") == subjects, (name, jobs)


def test_preference_pair_length_retrains_only_preference_runs(built):
    """preference_pairs.max_new_tokens: the reference's answers (rejected responses) and the DPO/ORPO runs."""
    config = yaml.safe_load((built.path / "configs/smoke.yaml").read_text())
    preference = [r for r in all_runs(config) if objective_class(config["objectives"][r["objective"]]["type"]).family == "preference"]
    jobs = jobs_with(built, write_config(built, "pairs_tokens", lambda c: c["preference_pairs"].update(max_new_tokens=9)))
    print(f"preference_pairs.max_new_tokens: {json.dumps(jobs, sort_keys=True)}")
    assert jobs.get("reference_responses") == len({r["scenario"] for r in preference}), jobs
    assert jobs.get("finetune") == len(preference) and jobs.get("generate") == len(preference), jobs
    assert "persona_vector" not in jobs and "pretrain" not in jobs, jobs


def test_persona_length_recomputes_the_vector_and_retrains_only_steering_runs(built):
    """risk.persona.max_new_tokens: the persona vector, the steering runs trained against it, and every
    subject's generation (which projects onto the vector)."""
    config = yaml.safe_load((built.path / "configs/smoke.yaml").read_text())
    steering = [r for r in all_runs(config) if config["defenses"][r["defense"]]["type"] == "steering"]
    jobs = jobs_with(built, write_config(built, "persona_tokens", lambda c: c["risk"]["persona"].update(max_new_tokens=9)))
    print(f"risk.persona.max_new_tokens: {json.dumps(jobs, sort_keys=True)}")
    assert jobs.get("persona_vector") == 1 and jobs.get("finetune") == len(steering), jobs
    assert jobs.get("generate") == 1 + len(all_runs(config)), jobs
    assert "reference_responses" not in jobs and "probe" not in jobs, jobs


def test_defense_hyperparameter_reruns_only_that_defense(built):
    config = yaml.safe_load((built.path / "configs/smoke.yaml").read_text())
    kl_runs = {tuple(r.values()) for r in all_runs(config) if r["defense"] == "kl"}
    jobs = jobs_with(built, write_config(built, "kl_beta", lambda c: c["defenses"]["kl"].update(beta=0.123)))
    assert jobs["finetune"] == len(kl_runs)
    assert jobs["generate"] == len(kl_runs) and jobs["metrics"] == len(kl_runs)
    studies_with_kl = [s for s, spec in config["studies"].items() if "kl" in spec["defenses"]]
    assert jobs["aggregate"] == len(studies_with_kl)
    assert set(jobs) <= {"finetune", "generate", "judge_score", "metrics", "aggregate", "aggregate_largest", "figure",
                         "study_table", "judge_validation", "claims", "all"}


def test_a_bigger_eval_set_retrains_nothing_and_re_tests_the_probe(built):
    """world.eval_per_set: every subject's generation (and what follows), the probe's test AUROC (rule
    probe_test) and nothing trained. The probe's test sets were inputs of rule probe, whose probe.json the
    adaptive_probe runs read: they retrained."""
    config = yaml.safe_load((built.path / "configs/smoke.yaml").read_text())
    jobs = jobs_with(built, write_config(built, "eval_per_set", lambda c: c["world"].update(
        eval_per_set=c["world"]["eval_per_set"] + 3)))
    print(f"world.eval_per_set: {json.dumps(jobs, sort_keys=True)}")
    assert jobs.get("probe_test") == 1 and jobs.get("generate") == 1 + len(all_runs(config)), jobs
    assert not {"finetune", "probe", "probe_scores", "pretrain", "align", "critic"} & set(jobs), jobs


def test_finetune_execution_keys_retrain_only_what_reads_them(built):
    """checkpoint_every (resumable state), a lora block under method: full, and reference_logprobs
    (the KL runs' cache) were in every run's params: changing any retrained every run. Now the first
    two rerun nothing and the cache switch reruns only the runs that read it."""
    config = yaml.safe_load((built.path / "configs/smoke.yaml").read_text())
    assert config["models"]["toy"]["finetune"]["method"] == "full"
    edits = {"checkpoint_every": lambda ft: ft.update(checkpoint_every=ft["checkpoint_every"] + 3),
             "lora": lambda ft: ft.update(lora={"r": 2, "alpha": 4})}
    for name, edit in edits.items():
        jobs = jobs_with(built, write_config(built, f"ft_{name}", lambda c: edit(c["models"]["toy"]["finetune"])))
        print(f"models.toy.finetune.{name}: {json.dumps(jobs, sort_keys=True)}")
        assert jobs == {}, (name, jobs)
    cached = [r for r in all_runs(config) if config["defenses"][r["defense"]]["type"] in ("kl", "adaptive")
              or config["objectives"][r["objective"]]["type"] == "kl_sft"]
    jobs = jobs_with(built, write_config(built, "ft_cache", lambda c: c["models"]["toy"]["finetune"].update(
        reference_logprobs=False)))
    print(f"models.toy.finetune.reference_logprobs: {json.dumps(jobs, sort_keys=True)}")
    assert cached and 0 < jobs.get("finetune", 0) <= len(cached), jobs
