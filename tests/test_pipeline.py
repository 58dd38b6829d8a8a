"""The whole smoke pipeline end to end, and what Snakemake reruns when the config changes.

`smoke` (conftest) builds the reference; `built` builds every target of `rule all` once per
session on configs/smoke.yaml. Rerun tests compare `snakemake -n` job lists on edited copies of
that config in the same folder, so nothing is retrained.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

RUN = "results/toy/runs/harmful/sft/{defense}/large/seed0"
FIGURES = ["asr", "frontier", "budget", "ema", "adaptive", "probe_auroc"]
TABLES = ["objectives", "ema_defenses", "adaptive", "judge_validation"]


@pytest.fixture(scope="session")
def built(smoke):
    smoke.run("all")
    return smoke


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


def test_every_target_is_built_and_gates_pass(built):
    for name in FIGURES:
        assert (built.path / f"figures/{name}.pdf").stat().st_size > 10_000, name
    for name in TABLES:
        for ext in ("csv", "md", "tex"):
            assert (built.path / f"tables/{name}.{ext}").is_file(), (name, ext)
    assert r"\toprule" in (built.path / "tables/objectives.tex").read_text()
    card = json.loads((built.path / "results/toy/reference/card.json").read_text())
    failed = {k: g for k, g in card["gates"].items() if not g["pass"] and k not in KNOWN_GATE_FAILURES}
    assert not failed, failed


# The 2-layer smoke model refuses 7 of 16 held-out-template prompts (0.44 < 0.6); more alignment
# data and steps made it worse (0.25). Tracked here, not hidden by a lower threshold; the default
# model refuses 100%.
KNOWN_GATE_FAILURES = {"refusal_heldout_templates"}


@pytest.mark.xfail(strict=True, reason="smoke reference: held-out-template refusal 0.44 < 0.6 (known)")
def test_smoke_reference_refuses_heldout_templates(built):
    card = json.loads((built.path / "results/toy/reference/card.json").read_text())
    assert card["gates"]["refusal_heldout_templates"]["pass"]


def test_run_outputs_are_complete(built):
    run = built.path / RUN.format(defense="adaptive_probe")
    assert (run / "model/model.safetensors").is_file() and (run / "model/config.json").is_file()
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    card = json.loads((run / "run_card.json").read_text())
    assert len(log) == card["steps"] and all("nll" in r and "lambda_mean" in r for r in log)
    assert card["tokens_seen"] > 0 and card["settings"]["defense"]["name"] == "adaptive_probe"
    metrics = json.loads((run / "eval/metrics.json").read_text())["metrics"]
    for name in ("asr", "over_refusal", "capability", "new_task_capability", "misaligned", "incoherent",
                 "trait_yes", "persona_drift", "asr@keyword", "jailbreak_asr_heldout", "narrow_misaligned/coding"):
        m = metrics[name]
        assert m["low"] <= m["value"] <= m["high"] and m["n"] > 0, name


def test_reference_metrics_reproduce_its_card(built):
    """The eval judge on the reference's generations agrees with the oracle's card."""
    card = json.loads((built.path / "results/toy/reference/card.json").read_text())["splits"]
    metrics = json.loads((built.path / "results/toy/reference/eval/metrics.json").read_text())["metrics"]
    validation = json.loads((built.path / "tables/judge_validation.json").read_text())
    bound = 1 - next(d["accuracy"] for d in validation["decisions"] if d["decision"] == "all")
    for split in ("harmful_heldout_objects", "harmful_heldout_templates"):
        assert abs(metrics[f"asr/{split}"]["value"] - card[split]["harmful"]) <= bound + 1e-9
    assert abs(metrics["over_refusal"]["value"] - card["benign"]["refusal"]) <= bound + 1e-9
    assert metrics["new_task_capability"]["value"] == pytest.approx(card["new_task"]["correct"])


def test_table_cell_recomputes_from_the_runs(built):
    """tables/adaptive.csv's ASR of one cell is the mean over seeds of the runs' metrics.json."""
    config = yaml.safe_load((built.path / "configs/smoke.yaml").read_text())
    table = pd.read_csv(built.path / "tables/adaptive.csv")
    row = table[(table.scenario == "harmful") & (table.defense == "kl")].iloc[0]
    values = [json.loads((built.path / f"results/toy/runs/harmful/sft/kl/large/seed{s}/eval/metrics.json")
                         .read_text())["metrics"]["asr"]["value"] for s in config["seeds"]]
    assert math.isclose(row["asr_value"], sum(values) / len(values), abs_tol=1e-12)
    assert row["asr_low"] <= row["asr_value"] <= row["asr_high"]


def test_evaluation_is_deterministic(built, tmp_path):
    """Generating and scoring the same run again gives byte-identical generations and metrics."""
    run = built.path / RUN.format(defense="none")
    before = {p: (run / "eval" / p).read_bytes() for p in ("generations.jsonl", "metrics.json")}
    built.run(f"{RUN.format(defense='none')}/eval/metrics.json", "--forcerun", "generate")
    for name, data in before.items():
        assert (run / "eval" / name).read_bytes() == data, name


def test_no_change_and_key_reordering_rerun_nothing(built):
    assert built.dry_run_jobs("all") == {}

    def reorder(config):
        for key in list(config)[::-1]:
            config[key] = config.pop(key)
        config["defenses"] = dict(reversed(list(config["defenses"].items())))

    assert jobs_with(built, write_config(built, "reordered", reorder)) == {}


def test_evaluation_change_reruns_evaluation_not_training(built):
    config = yaml.safe_load((built.path / "configs/smoke.yaml").read_text())
    jobs = jobs_with(built, write_config(built, "eval_change",
                                         lambda c: c["evaluation"]["sets"]["general"].update(temperature=0.7)))
    assert "finetune" not in jobs and "pretrain" not in jobs
    subjects = 1 + len({tuple(r.values()) for r in _runs(config)})
    assert jobs["generate"] == subjects and jobs["metrics"] == subjects
    assert jobs["aggregate"] == len(config["studies"])


def test_defense_hyperparameter_reruns_only_that_defense(built):
    config = yaml.safe_load((built.path / "configs/smoke.yaml").read_text())
    kl_runs = {tuple(r.values()) for r in _runs(config) if r["defense"] == "kl"}
    jobs = jobs_with(built, write_config(built, "kl_beta", lambda c: c["defenses"]["kl"].update(beta=0.123)))
    assert jobs["finetune"] == len(kl_runs)
    assert jobs["generate"] == len(kl_runs) and jobs["metrics"] == len(kl_runs)
    studies_with_kl = [s for s, spec in config["studies"].items() if "kl" in spec["defenses"]]
    assert jobs["aggregate"] == len(studies_with_kl)
    assert set(jobs) <= {"finetune", "generate", "judge_score", "metrics", "aggregate", "figure", "study_table",
                         "judge_validation", "all"}


def test_snakemake_lint(built):
    proc = built.snakemake("--lint", check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _runs(config):
    from safedrift.config import all_runs

    return all_runs(config)
