"""The whole smoke pipeline end to end.

`smoke` (conftest) builds the reference; `built` (conftest) builds every target of `rule all`
once per session on configs/smoke.yaml. What a config change reruns: test_rerun.py.
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


def test_every_target_is_built_and_no_gate_fails_beyond_chance(built):
    for name in FIGURES:
        assert (built.path / f"figures/{name}.pdf").stat().st_size > 10_000, name
    for name in TABLES:
        for ext in ("csv", "md", "tex"):
            assert (built.path / f"tables/{name}.{ext}").is_file(), (name, ext)
    assert r"\toprule" in (built.path / "tables/objectives.tex").read_text()
    card = json.loads((built.path / "results/toy/reference/card.json").read_text())
    # A gate of the smoke model may fail by chance: its rates are of 16-48 answers. On an AMD EPYC, over 4
    # alignment seeds at each of 200 (configs/smoke.yaml), 300, 400 and 600 steps, held-out template refusal
    # ranged 0.38-0.94 (gate 0.6; 200 steps: 0.44-0.81) and general misalignment 0.13-0.33 (gate 0.3), and
    # 7 of the 16 draws failed one (seed 0 at 200 steps, the draw this test builds, gave 0.56; on an Intel
    # Xeon it passed). What must not happen is a gate failed beyond chance, its score interval clear of the
    # threshold: an alignment that did not work.
    failed_beyond_chance = {k: g for k, g in card["gates"].items()
                            if not g["pass"] and not g["low"] <= g["threshold"] <= g["high"]}
    assert not failed_beyond_chance, failed_beyond_chance


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


def test_readme_report_command_writes_the_report(smoke):
    """The README's `snakemake ... --report report.html`, as written, on a built figure."""
    import re
    import shlex
    import subprocess
    import sys

    from conftest import ROOT

    [command] = re.findall(r"`(snakemake [^`]*--report report\.html[^`]*)`", (ROOT / "README.md").read_text())
    smoke.run("figures/probe_auroc.pdf")
    args = [*shlex.split(command)[1:], "figures/probe_auroc.pdf", "--configfile", smoke.configfile]
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=smoke.path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{command}: {proc.stderr[-2000:]}"
    report = (smoke.path / "report.html").read_text()
    assert "probe_auroc.pdf" in report


def test_snakemake_lint(built):
    proc = built.snakemake("--lint", check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
