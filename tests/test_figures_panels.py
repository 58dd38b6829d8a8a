"""What the adaptive and frontier figures plot: the identity attack under its own prompt, and each
objective in the colour the other figures give it."""

import matplotlib.colors as mcolors
import pandas as pd
import seaborn as sns

from safedrift.report.figures import draw_frontier
from safedrift.report.figures_defenses import draw_adaptive


def row(scenario, objective, defense, metric, value, budget="b80", steps=80):
    return {"scenario": scenario, "objective": objective, "defense": defense, "budget": budget, "steps": steps,
            "metric": metric, "value": value, "low": value, "high": value}


def test_the_identity_attack_is_plotted_under_its_identity_prompt():
    """Plain ASR of an identity-shift run is 0 by construction (no identity prompt); its attack is
    `asr/harmful_identity`, its utility ordinary-task accuracy (ten examples teach no new task)."""
    rows = []
    for defense, attack in (("none", 0.9), ("kl", 0.2)):
        rows += [row("identity_shift", "sft", defense, "asr", 0.0),
                 row("identity_shift", "sft", defense, "asr/harmful_identity", attack),
                 row("identity_shift", "sft", defense, "new_task_capability", 0.0),
                 row("identity_shift", "sft", defense, "capability", 0.7)]
    fig = draw_adaptive({"defense": pd.DataFrame(rows)}, {})
    ax = fig.axes[0]
    points = sorted((float(line.get_xdata()[0]), float(line.get_ydata()[0])) for line in ax.lines
                    if line.get_marker() not in ("_", "|", "None", None))  # not the error bars' caps
    assert points == [(0.7, 0.2), (0.7, 0.9)]
    assert "identity prompt" in ax.get_ylabel() and ax.get_xlabel().startswith("task accuracy")


def test_frontier_colours_follow_the_study_order_of_objectives():
    objectives = ["sft", "dpo", "orpo", "cft", "inoculation", "kl_sft"]
    rows = [row("benign", "reference", "reference", m, 0.0, "reference", 0) for m in ("asr", "new_task_capability")]
    for obj in objectives:
        for budget, steps in (("b10", 10), ("b80", 80)):
            rows += [row("benign", obj, "none", "asr", 0.1, budget, steps),
                     row("benign", obj, "none", "new_task_capability", 0.5, budget, steps)]
    fig = draw_frontier({"objective": pd.DataFrame(rows)}, {})
    handles, labels = fig.axes[0].get_legend_handles_labels()
    colours = {label: mcolors.to_hex(h.lines[0].get_color()) for h, label in zip(handles, labels) if label in objectives}
    expected = dict(zip(objectives, (mcolors.to_hex(c) for c in sns.color_palette("colorblind", 6))))
    assert colours == expected


def test_every_figure_has_a_report_caption():
    """`snakemake --report` renders figures.rst with the figure's name: a figure without a caption there
    fails the report."""
    import re

    from conftest import ROOT
    from safedrift.report.figures import FIGURES

    captions = re.findall(r'^  "(\w+)": ', (ROOT / "workflow/report/figures.rst").read_text(), re.M)
    assert sorted(captions) == sorted(FIGURES)
