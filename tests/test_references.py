"""Reference variants (references:, e.g. Vaccine): the one run/reference path layout and its inverse,
the study grid and run settings over references, config errors, and a dry run that plans them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from safedrift.config import (ConfigError, parse_subject_dir, reference_dir, run_dir, run_settings, study_runs,
                              subject_pattern, validate)

ROOT = Path(__file__).resolve().parents[1]
RUN = {"model": "toy", "scenario": "harmful", "objective": "sft", "defense": "kl", "budget": "small", "seed": 3}


def smoke_config() -> dict:
    return yaml.safe_load((ROOT / "configs/smoke.yaml").read_text())


def test_default_paths_are_unchanged_and_a_variant_names_its_reference():
    assert run_dir(RUN) == run_dir({**RUN, "reference": "default"}) == "results/toy/runs/harmful/sft/kl/small/seed3"
    assert run_dir({**RUN, "reference": "vaccine"}) == "results/toy/runs@vaccine/harmful/sft/kl/small/seed3"
    assert reference_dir("toy") == "results/toy/reference"
    assert reference_dir("toy", "vaccine") == "results/toy/reference/vaccine"


@pytest.mark.parametrize("reference", ["default", "vaccine"])
def test_parse_subject_dir_inverts_the_layout(reference):
    run = {**RUN, "reference": reference}
    assert parse_subject_dir(run_dir(run)) == run
    assert parse_subject_dir("/tmp/x/" + run_dir(run) + "/") == run
    assert parse_subject_dir(reference_dir("toy", reference)) == {"model": "toy", "reference": reference}
    assert parse_subject_dir("results/toy/world") is None


def test_subject_pattern_matches_references_and_runs_of_known_variants_only():
    import re

    default = re.compile(f"(?:{subject_pattern(['default'])})$")
    assert default.pattern == r"(?:reference|runs/[^/]+/[^/]+/[^/]+/[^/]+/seed\d+)$"  # as before variants
    both = re.compile(f"(?:{subject_pattern(['default', 'vaccine'])})$")
    for path in (run_dir(RUN), run_dir({**RUN, "reference": "vaccine"}), "results/toy/reference",
                 "results/toy/reference/vaccine"):
        assert both.match(path.removeprefix("results/toy/"))
    assert not both.match("runs@booster/harmful/sft/kl/small/seed3") and not both.match("reference/eval")


def test_a_study_on_two_references_runs_its_grid_on_each_and_only_variant_runs_carry_reference_settings():
    config = smoke_config()
    config["studies"]["baselines"] = {"references": ["default", "vaccine"], "scenarios": ["harmful"],
                                      "objectives": ["sft"], "defenses": ["none", "kl"], "budgets": ["small"]}
    validate(config)
    runs = study_runs(config, "baselines")
    assert [(r["reference"], r["defense"]) for r in runs] == [("default", "none"), ("default", "kl"),
                                                              ("vaccine", "none"), ("vaccine", "kl")]
    assert all(r["reference"] == "default" for r in study_runs(config, "objectives"))
    plain = run_settings(config, "toy", "harmful", "sft", "kl", "small", 0)
    assert "reference" not in plain and plain == run_settings(config, "toy", "harmful", "sft", "kl", "small", 0, "default")
    variant = run_settings(config, "toy", "harmful", "sft", "kl", "small", 0, "vaccine")
    assert variant["reference"] == {"name": "vaccine", "type": "vaccine", "rho": 2.0}
    assert {k: v for k, v in variant.items() if k != "reference"} == plain


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["studies"]["objectives"].update(references=["booster"]), "studies.objectives.references.0"),
    (lambda c: c["references"].update(default={"type": "vaccine", "rho": 1.0}), "references.default.type"),
    (lambda c: c["references"].update(vaccine={"type": "vaccine"}), "references.vaccine.rho"),
    (lambda c: c["references"].update(vaccine={"type": "vaccine", "rho": -1.0}), "references.vaccine.rho"),
    # results/<m>/reference/eval/ is the default reference's own evaluation folder
    (lambda c: c["references"].update(eval={"type": "vaccine", "rho": 1.0}), "references.eval"),
])
def test_bad_reference_config_names_the_key(edit, key):
    config = smoke_config()
    edit(config)
    with pytest.raises(ConfigError, match=rf"config key {key}\b"):
        validate(config)


def test_an_hf_model_on_a_vaccine_reference_is_refused_naming_the_key():
    from test_real_model import tiny_real_config

    config = tiny_real_config(ROOT / "no-model-needed")
    config["references"] = {"vaccine": {"type": "vaccine", "rho": 2.0}}
    study = next(iter(config["studies"]))
    config["studies"][study]["references"] = ["default", "vaccine"]
    with pytest.raises(ConfigError, match=rf"config key studies\.{study}\.references\.1: .*hf model.*models\.<name>\.path"):
        validate(config)


def test_dry_run_plans_the_vaccine_alignment_and_runs_under_its_path(workflow_copy):
    config = smoke_config()
    config["studies"] = {"baselines": {"references": ["default", "vaccine"], "scenarios": ["harmful"],
                                       "objectives": ["sft"], "defenses": ["kl"], "budgets": ["small"]}}
    config.pop("claims", None)
    (workflow_copy.path / "configs/smoke.yaml").write_text(yaml.safe_dump(config))
    target = "results/studies/baselines.csv"
    out = workflow_copy.snakemake(target, "-n", "-p").stdout
    jobs = {rule: out.count(f"\nrule {rule}:") for rule in ("align", "align_variant", "finetune")}
    assert jobs == {"align": 1, "align_variant": 1, "finetune": 2}, jobs
    variant_run = "results/toy/runs@vaccine/harmful/sft/kl/small/seed0"
    assert f"--reference results/toy/reference/vaccine --out {variant_run}" in out
    assert "--reference results/toy/reference --out results/toy/runs/harmful/sft/kl/small/seed0" in out
    assert "--out results/toy/reference/vaccine --log-jsonl" in out and '"rho":2.0' in out
    # the variant's baseline cell is evaluated in its own folder and each run is compared with its own reference
    assert "results/toy/reference/vaccine/eval/metrics_rows.parquet" in out
    assert "--reference-generations results/toy/reference/vaccine/eval/generations.jsonl" in out


def test_aggregate_adds_a_reference_column_only_for_variants_and_contrasts_within_each(tmp_path):
    from test_aggregate import run_aggregate, write_subject

    results = tmp_path / "results/toy"
    ids = [f"p{i}" for i in range(20)]
    default = [write_subject(results, "reference", "asr", {k: 0.0 for k in ids}),
               write_subject(results, "runs/harmful/sft/none/large/seed0", "asr", {k: 1.0 for k in ids})]
    assert "reference" not in run_aggregate(tmp_path, default).columns
    variant = [write_subject(results, "reference/vaccine", "asr", {k: 0.5 for k in ids}),
               write_subject(results, "runs@vaccine/harmful/sft/none/large/seed0", "asr", {k: 0.75 for k in ids})]
    table = run_aggregate(tmp_path, default + variant)
    assert list(table.columns[:7]) == ["model", "reference", "scenario", "objective", "defense", "budget", "steps"]
    run = table[table.scenario == "harmful"].set_index("reference")
    assert run.loc["default", "vs_reference"] == pytest.approx(1.0)
    assert run.loc["vaccine", "vs_reference"] == pytest.approx(0.25)  # minus its own reference, not the default
