"""configs/papers/: one config per seed paper, each planning its whole protocol without a download.

A preset is only useful if `snakemake --configfile configs/papers/X.yaml` plans on a machine that has
none of its data yet: the data come through rule fetch_data (pinned by workflow/data.lock.yaml), the
models are hub ids, and every study cell, claim and figure resolves."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import ROOT, Workflow, copy_workflow
from safedrift.config import all_runs, validate
from safedrift.data.fetch import load_sources
from safedrift.report.claims import listed

PRESETS = sorted((ROOT / "configs" / "papers").glob("*.yaml"))


def test_one_preset_per_seed_paper():
    assert [p.name.split("-")[0] for p in PRESETS] == ["goel2026", "kaczer2025", "vennemeyer2026"]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_is_self_describing(preset):
    """The header says how to run it, what the paper reported and what it costs; every claim names its paper."""
    header = preset.read_text().split("\nseeds:")[0]
    assert f"--configfile configs/papers/{preset.name}" in header
    assert "Reported" in header and "GPU hours" in header
    config = validate(yaml.safe_load(preset.read_text()))
    assert config["claims"] and all(c["paper"] for c in config["claims"].values())
    sources = load_sources()
    for spec in config["models"].values():
        for section in spec["data"].values():
            for name, entry in section.items():
                assert entry.get("fetch") in sources, f"{preset.name}: data entry {name} is not fetched by the pipeline"


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_plans_its_protocol_without_data(preset, tmp_path):
    wf = Workflow(copy_workflow(tmp_path / "wf"), configfile=f"configs/papers/{preset.name}")
    assert not (wf.path / "data").exists()
    jobs = wf.dry_run_jobs()
    config = yaml.safe_load(preset.read_text())
    assert jobs.get("fetch_data") == 1, jobs
    assert jobs.get("finetune") == len(all_runs(config)), jobs
    assert jobs.get("claims") == 1 and jobs.get("figure", 0) >= 1, jobs


PERSONA_DRIFT_CLAIMS = ("drift_grows_sft_dpo", "orpo_kl_mitigate")
CONFIGS_WITH_VENNEMEYER_CLAIMS = [ROOT / "config.yaml", ROOT / "configs" / "smoke.yaml",
                                  *sorted((ROOT / "configs").glob("qwen*.yaml")), ROOT / "configs" / "papers" /
                                  "vennemeyer2026-objective-matters.yaml"]


@pytest.mark.parametrize("path", CONFIGS_WITH_VENNEMEYER_CLAIMS, ids=lambda p: p.stem)
def test_persona_drift_is_dark_triad_endorsement_wherever_vennemeyer_is_tested(path):
    """Vennemeyer et al. measure persona drift as endorsement of Dark-Triad items (Perez et al. 2022), as their
    preset does; the default claims once tested the persona-vector projection under that name instead."""
    claims = yaml.safe_load(path.read_text())["claims"]
    for claim_id in PERSONA_DRIFT_CLAIMS:
        metrics = [m for t in claims[claim_id]["tests"] for m in listed(t["metric"])]
        traits = [m for m in metrics if m == "trait_yes" or m.startswith("trait_endorsement/")]
        assert traits and not any(m.startswith("persona_projection") for m in metrics), (path.name, claim_id, metrics)
