"""Figures and tables find their studies by the cells they compare (report.cells), not by name."""

from __future__ import annotations

import yaml
from conftest import ROOT

from safedrift.report.cells import DEFENSE_GRID, EMA_GRID, OBJECTIVE_GRID, select_studies, select_study
from safedrift.report.figures import FIGURES
from safedrift.report.study_tables import TABLES

RENAMED = {"objectives": "by_objective", "ema_defenses": "misalignment", "adaptive": "regularisers"}
NOT_IN_SMOKE = ("baselines", "adaptive_strength")


def smoke_config(renamed: bool) -> dict:
    config = yaml.safe_load((ROOT / "configs/smoke.yaml").read_text())
    if renamed:  # renamed, and listed in another order
        config["studies"] = {RENAMED[n]: s for n, s in reversed(list(config["studies"].items()))}
    return config


def test_roles_select_the_studies_by_their_grids():
    config = smoke_config(renamed=False)
    assert select_study(config, OBJECTIVE_GRID) == "objectives"
    assert select_study(config, DEFENSE_GRID) == "adaptive"
    assert select_study(config, EMA_GRID) == "ema_defenses"
    # the smoke config has no poison-ratio sweep and no strength ladder: no baselines or strength table
    assert {t: select_study(config, spec["cells"]) for t, spec in TABLES.items()} == {
        t: (None if t in NOT_IN_SMOKE else t) for t in TABLES}
    config["studies"] = {"objectives": config["studies"]["objectives"]}
    assert select_studies(config, FIGURES["asr"].roles) is None  # no defense grid: not a target
    assert select_studies(config, FIGURES["frontier"].roles) == {"objective": "objectives"}


def test_renaming_the_studies_keeps_every_figure_and_table(workflow_copy):
    """A dry run of `all` on the smoke workflow with its studies renamed plans every figure and table,
    each reading the renamed study's CSV in the same role."""
    config = smoke_config(renamed=True)
    (workflow_copy.path / "configs/renamed.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    workflow_copy.configfile = "configs/renamed.yaml"
    proc = workflow_copy.snakemake("all", "-n", "-p")
    commands = [line for line in (proc.stdout + proc.stderr).splitlines() if "python -m safedrift report." in line]
    drawn = [f for f in FIGURES if f != "baselines"]  # the smoke config has no poison-ratio sweep
    figure = {f: next(c for c in commands if f"--figure {f} " in c) for f in drawn}
    # the bar figures draw the largest budget only: they read the renamed studies' largest-budget views
    assert "--study objective=results/studies/by_objective@largest.csv" in figure["asr"]
    assert "--study defense=results/studies/regularisers@largest.csv" in figure["asr"]
    assert "--study ema=results/studies/misalignment@largest.csv" in figure["ema"]
    assert "--study objective=results/studies/by_objective.csv" in figure["budget"]
    assert "runs/harmful/sft/adaptive_probe/large/seed0/train_log.jsonl" in figure["adaptive"]
    shown = [t for t in TABLES if t not in NOT_IN_SMOKE]
    tables = {t: next(c for c in commands if f"report.study_tables --study {t} " in c) for t in shown}
    assert {t: c.split("--table ")[1].split()[0] for t, c in tables.items()} == {
        t: f"results/studies/{RENAMED[t]}.csv" for t in shown}
    assert sum("report.figures" in c for c in commands) == len(drawn)
    assert sum("report.study_tables" in c for c in commands) == len(shown)
