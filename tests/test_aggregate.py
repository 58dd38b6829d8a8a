"""report.aggregate: crossed intervals per cell, paired differences vs the reference and vs `none`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from safedrift.report.aggregate import main

BOOT = {"resamples": 1000, "confidence": 0.95, "seed": 0}


def write_subject(root, subject: str, metric: str, values: dict) -> str:
    """values: {prompt id: value}; writes <root>/<subject>/eval/metrics_rows.parquet."""
    folder = root / subject
    (folder / "eval").mkdir(parents=True)
    rows = [{"metric": metric, "id": pid, "sample": 0, "value": float(v)} for pid, v in values.items()]
    pd.DataFrame(rows).to_parquet(folder / "eval/metrics_rows.parquet", index=False)
    return str(folder)


def run_aggregate(tmp_path, subjects) -> pd.DataFrame:
    out = tmp_path / "study.csv"
    main(["--runs", *subjects, "--settings", json.dumps({"bootstrap": BOOT, "steps": {"large": 40}}),
          "--out", str(out)])
    return pd.read_csv(out)


def cell(table, defense, metric):
    return table[(table.defense == defense) & (table.metric == metric)].iloc[0]


def test_persona_drift_is_a_paired_difference_over_prompts(tmp_path):
    # Prompts differ a lot in their projection; every run shifts each prompt by exactly +0.5. The
    # paired drift is 0.5 with a (near) zero-width interval; the run's interval shifted by the
    # reference's mean (ignoring that the reference saw the same prompts) would be ~1.0 wide.
    rng = np.random.default_rng(0)
    base = {f"general/{i}": v for i, v in enumerate(rng.normal(0, 2.0, 60))}
    results = tmp_path / "results/toy"
    subjects = [write_subject(results, "reference", "persona_projection", base)]
    for seed in range(3):
        subjects.append(write_subject(results, f"runs/benign/sft/none/large/seed{seed}", "persona_projection",
                                      {k: v + 0.5 for k, v in base.items()}))
    table = run_aggregate(tmp_path, subjects)
    drift = cell(table, "none", "persona_drift")
    assert drift["value"] == pytest.approx(0.5)
    assert drift["high"] - drift["low"] < 1e-9
    projection = cell(table, "none", "persona_projection")
    assert projection["high"] - projection["low"] > 0.5  # the cell itself is uncertain
    assert cell(table, "reference", "persona_drift")["value"] == 0.0


def test_differences_vs_none_and_reference_are_paired(tmp_path):
    # ASR per prompt: the defense removes exactly the attack on prompts 0..19 of 60; paired, the
    # difference vs `none` is -1/3 with an interval excluding 0 and narrower than an unpaired one.
    rng = np.random.default_rng(1)
    attacked = {f"h/{i}": float(rng.random() < 0.8) for i in range(60)}
    defended = {k: (0.0 if int(k.split("/")[1]) < 20 else v) for k, v in attacked.items()}
    results = tmp_path / "results/toy"
    subjects = [write_subject(results, "reference", "asr", {k: 0.0 for k in attacked})]
    for seed in range(3):
        subjects.append(write_subject(results, f"runs/harmful/sft/none/large/seed{seed}", "asr", attacked))
        subjects.append(write_subject(results, f"runs/harmful/sft/kl/large/seed{seed}", "asr", defended))
    table = run_aggregate(tmp_path, subjects)
    kl, none = cell(table, "kl", "asr"), cell(table, "none", "asr")
    expected = kl["value"] - none["value"]
    assert kl["vs_none"] == pytest.approx(expected)
    assert kl["vs_none_high"] < 0 and kl["vs_none_low"] <= expected <= kl["vs_none_high"]
    unpaired_width = (kl["high"] - kl["low"]) + (none["high"] - none["low"])
    assert kl["vs_none_high"] - kl["vs_none_low"] < 0.7 * unpaired_width
    assert none["vs_reference"] == pytest.approx(none["value"]) and none["vs_reference_low"] > 0
    assert np.isnan(none["vs_none"]) and np.isnan(cell(table, "reference", "asr")["vs_reference"])


def test_unscored_responses_are_counted_per_cell(tmp_path):
    results = tmp_path / "results/toy"
    values = {f"h/{i}": (np.nan if i < 3 else 1.0) for i in range(20)}
    subjects = [write_subject(results, "reference", "asr", {k: 0.0 for k in values}),
                write_subject(results, "runs/harmful/sft/none/large/seed0", "asr", values)]
    table = run_aggregate(tmp_path, subjects)
    none = cell(table, "none", "asr")
    assert none["n"] == 17 and none["unscored"] == 3 and none["value"] == 1.0


def test_run_folders_are_read_with_the_configs_own_layout():
    """report.aggregate labels a run by config.parse_subject_dir, the inverse of run_dir: no second layout."""
    from safedrift.config import all_runs, load, parse_subject_dir, run_dir

    runs = all_runs(load(Path(__file__).resolve().parents[1] / "config.yaml"))
    assert runs and all(parse_subject_dir(run_dir(r)) == r for r in runs)
    assert parse_subject_dir(f"/abs/{run_dir(runs[0])}/") == runs[0]
    assert parse_subject_dir("results/toy/reference") == {"model": "toy", "reference": "default"}
    assert parse_subject_dir("results/toy/runs/a/b/c/d/seedx") is None
