"""The `baselines` study: Lisa, token-constrained fine-tuning and SafeLoRA beside none / KL / adaptive KL on
harmful data at poison ratios 0.05, 0.1, 0.2, and no defense on the Vaccine reference (5-element extra
cells); its figure and table pick it by its cells (report.cells.POISON_SWEEP)."""

from __future__ import annotations

import json
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

from safedrift.config import ConfigError, run_dir, study_runs, validate
from safedrift.report.cells import DEFENSE_GRID, EMA_GRID, OBJECTIVE_GRID, POISON_SWEEP, select_study
from safedrift.report.figures import FIGURES, draw_baselines
from safedrift.report.study_tables import build

matplotlib.use("Agg")

RATIOS = {"harmful_p05": 0.05, "harmful_p10": 0.1, "harmful_p20": 0.2}
DEFENSES = ["none", "kl", "adaptive_probe", "lisa", "token_constrained", "safelora"]


def default_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_the_study_runs_the_grid_on_the_default_reference_and_none_on_vaccine():
    config = default_config()
    runs = study_runs(config, "baselines")
    seeds = config["seeds"]
    grid = [r for r in runs if r["reference"] == "default"]
    vaccine = [r for r in runs if r["reference"] == "vaccine"]
    assert len(runs) == (3 * 6 + 3) * len(seeds)
    assert {(r["scenario"], r["defense"]) for r in grid} == {(s, d) for s in RATIOS for d in DEFENSES}
    assert {(r["scenario"], r["defense"], r["seed"]) for r in vaccine} == {(s, "none", k) for s in RATIOS for k in seeds}
    assert {run_dir(r).split("/")[2] for r in vaccine} == {"runs@vaccine"}
    assert {config["scenarios"][s]["poison_ratio"] for s in RATIOS} == set(RATIOS.values())


def test_dry_run_plans_the_baselines_finetunes_figure_and_table(workflow_copy):
    config = default_config()
    (workflow_copy.path / "configs/baselines.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    workflow_copy.configfile = "configs/baselines.yaml"
    out = workflow_copy.snakemake("figures/baselines.pdf", "tables/baselines.md", "-n", "-p")
    text = out.stdout + out.stderr
    finetunes = re.findall(r"output: (results/toy/runs[^/]*/harmful_p\d+/sft/\w+/b80/seed\d)/model", text)
    seeds = len(config["seeds"])
    assert len(finetunes) == (3 * 6 + 3) * seeds
    assert sum(f.startswith("results/toy/runs@vaccine/") for f in finetunes) == 3 * seeds
    assert all(f.split("/")[5] == "none" for f in finetunes if "runs@vaccine" in f)
    figure = next(line for line in text.splitlines() if "--figure baselines " in line)
    assert "--study sweep=results/studies/baselines@largest.csv" in figure  # the largest budget only
    extra = json.loads(re.search(r"--extra '([^']*)'", figure)[1])
    assert extra == {"poison_ratio": RATIOS}
    assert "report.study_tables --study baselines --table results/studies/baselines.csv" in text


def test_an_extra_cell_on_an_unknown_reference_names_its_key():
    config = default_config()
    config["studies"]["baselines"]["extra"][1][4] = "booster"
    with pytest.raises(ConfigError, match=r"config key studies\.baselines\.extra\.1\.4: 'booster' is not defined "
                                          r"under references"):
        validate(config)


def test_the_sweep_role_picks_baselines_and_the_other_roles_never_do():
    config = default_config()
    # listed first, the baselines study would be the first defense grid without the scenario-kind rule
    config["studies"] = {"baselines": config["studies"].pop("baselines"), **config["studies"]}
    assert select_study(config, POISON_SWEEP) == "baselines"
    assert select_study(config, DEFENSE_GRID) == "adaptive"
    assert select_study(config, EMA_GRID) == "ema_defenses"
    assert select_study(config, OBJECTIVE_GRID) == "objectives"


def study_csv() -> pd.DataFrame:
    """A constructed baselines study CSV (report.aggregate's columns): ASR and new-task accuracy per cell."""
    rows = []
    def add(reference, scenario, defense, metric, value, budget="b80", objective="sft"):
        rows.append({"model": "toy", "reference": reference, "scenario": scenario, "objective": objective,
                     "defense": defense, "budget": budget, "steps": 80, "metric": metric, "value": value,
                     "low": value - 0.05, "high": value + 0.1, "n": 60, "unscored": 0, "seeds": 3,
                     "vs_none": 0.0 if defense != "none" else float("nan"), "vs_none_low": -0.1, "vs_none_high": 0.1})
    for reference in ("default", "vaccine"):
        add(reference, "reference", "reference", "asr", 0.02 if reference == "default" else 0.01,
            budget="reference", objective="reference")
        add(reference, "reference", "reference", "new_task_capability", 0.1, budget="reference", objective="reference")
    for i, scenario in enumerate(RATIOS):
        for j, defense in enumerate(["none", "kl", "lisa"]):
            add("default", scenario, defense, "asr", 0.3 + 0.2 * i - 0.1 * j)
            add("default", scenario, defense, "new_task_capability", 0.8 - 0.1 * j)
        add("vaccine", scenario, "none", "asr", 0.1 + 0.1 * i)
        add("vaccine", scenario, "none", "new_task_capability", 0.7)
    return pd.DataFrame(rows)


def test_the_figure_plots_each_line_at_the_poison_ratios_with_the_csv_values_and_intervals():
    import matplotlib.pyplot as plt

    study = study_csv()
    fig = draw_baselines({"sweep": study}, {"poison_ratio": RATIOS})
    asr, utility = fig.axes[:2]
    for ax, metric in ((asr, "asr"), (utility, "new_task_capability")):
        bars = {c.get_label(): c for c in ax.containers}
        assert set(bars) == {"none", "kl", "lisa", "vaccine (none)"}
        shifts = {label: round(c.lines[0].get_xdata()[0] - 0.05, 9) for label, c in bars.items()}
        assert len(set(shifts.values())) == len(bars), shifts  # every line at its own offset
        for label, (reference, defense) in {"none": ("default", "none"), "lisa": ("default", "lisa"),
                                            "vaccine (none)": ("vaccine", "none")}.items():
            line, _, (segments,) = bars[label]
            cells = study[(study.reference == reference) & (study.defense == defense) & (study.metric == metric)]
            # at the poison ratios, dodged sideways by one offset per line (lines at equal values stay visible)
            shift = np.asarray(line.get_xdata()) - [0.05, 0.1, 0.2]
            assert np.allclose(shift, shift[0]) and abs(shift[0]) <= 0.12 * 0.05
            assert list(line.get_ydata()) == pytest.approx(list(cells["value"]))
            ends = [v for (x0, y0), (_, y1) in segments.get_segments() for v in (x0, y0, y1)]
            assert ends == pytest.approx([v for row in zip(np.add(list(RATIOS.values()), shift[0]), cells["low"],
                                                            cells["high"]) for v in row])
    # the dotted line is the default reference model's ASR, not Vaccine's; Vaccine's own is dash-dotted
    assert [list(line.get_ydata()) for line in asr.lines if line.get_linestyle() == ":"] == [[0.02, 0.02]]
    vaccine_ref = study[(study.reference == "vaccine") & (study.objective == "reference") & (study.metric == "asr")]
    assert [list(line.get_ydata()) for line in asr.lines if line.get_linestyle() == "-."] == [
        [vaccine_ref["value"].iloc[0]] * 2]
    plt.close(fig)


def test_the_table_leads_rows_with_the_reference_variant():
    data, display = build(study_csv(), "baselines")
    assert list(display.columns[:3]) == ["reference", "scenario", "defense"]
    vaccine = display[display.reference == "vaccine"]
    assert list(vaccine.scenario) == ["reference", *RATIOS]
    assert FIGURES["baselines"].roles == {"sweep": POISON_SWEEP}


def test_a_metric_unscored_in_every_cell_keeps_its_column_and_one_never_measured_does_not():
    """A judge that failed on every response left a metric all NaN, and the table dropped the column without a
    word, as it drops a metric no cell measures."""
    study = study_csv()
    failed = study[study.metric == "asr"].assign(metric="jailbreak_asr_heldout", value=float("nan"), low=float("nan"),
                                                  high=float("nan"), n=0, unscored=60)
    _, display = build(pd.concat([study, failed], ignore_index=True), "baselines")
    column = "jailbreak ASR (held-out)"
    assert all("(n=0/60)" in cell for cell in display[column]), list(display[column])
    _, display = build(study, "baselines")  # never measured (no such rows): no column
    assert column not in display.columns
    # a contrast with no counterpart anywhere is "–" in every row however many responses were unscored
    no_contrast = study.assign(vs_none=float("nan"), unscored=2)
    _, display = build(no_contrast, "baselines")
    assert "Δ ASR vs none" not in display.columns


def test_a_bar_without_a_value_is_marked_not_drawn_as_zero():
    import matplotlib.pyplot as plt

    from safedrift.report.plotting import bars

    fig, ax = plt.subplots()
    frame = pd.DataFrame({"defense": ["none", "kl", "lisa"], "value": [0.0, float("nan"), 0.4],
                          "low": [0.0, float("nan"), 0.3], "high": [0.1, float("nan"), 0.5]})
    bars(ax, frame, "defense", {"none": "C0", "kl": "C1", "lisa": "C2"}, ["none", "kl", "lisa"])
    assert [(t.get_text(), t.get_position()[0]) for t in ax.texts] == [("n/a", 1)]
    plt.close(fig)
