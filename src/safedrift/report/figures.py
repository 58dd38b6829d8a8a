"""Stage `report.figures`: the paper figures, drawn from the study tables of `report.aggregate`.

FIGURES maps a figure name (figures/<name>.pdf) to what it draws (`Figure`): the function, the
metrics, and per role the cells it compares (report.cells: the study of a role is chosen by its grid,
never by its name; the draw function gets the studies keyed by role) and the extra files it reads
(`lambda_traces`: the train logs of the defense role's runs, of which it plots those that log
`lambda_mean`; `probe`: the probe's per-layer table and the critic summaries; `poison_ratio`: no
file, the config's poison ratio of each scenario of the sweep role). Every panel shows 95%
intervals over prompts (bootstrap) and seeds (jackknife, t quantile; evaluate.stats) as error bars
or bands.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from safedrift.report.cells import DEFENSE_GRID, EMA_GRID, OBJECTIVE_GRID, POISON_SWEEP, Cells
from safedrift.report.figures_defenses import draw_adaptive, draw_baselines, draw_probe_auroc
from safedrift.report.plotting import (ATTACK_METRIC, DARK_TRIAD_METRICS, PRETTY, bars, ci_error, condition, frontier_points,
                                       metric, reference_legend, reference_value)
from safedrift.report.style import save, setup


def draw_asr(studies, extra):
    """Rows: objectives (defense none), defenses (objective sft); a panel per scenario of the row's study and
    per attack (plain held-out harmful requests, held-out jailbreak families); largest budget. A row has
    only its own study's scenarios: no empty panels."""
    plt, sns, _ = setup()
    groups = {"objective": studies["objective"], "defense": studies["defense"]}
    def attacks(scenario):
        return [ATTACK_METRIC.get(scenario, "asr"), "jailbreak_asr_heldout"]

    panels = {title: [(sc, m) for sc in dict.fromkeys(study.scenario) if sc != "reference" for m in attacks(sc)
                      if m in set(study.metric)] for title, study in groups.items()}
    width = max(len(p) for p in panels.values())
    fig, axes = plt.subplots(len(groups), width, figsize=(2.6 * width, 5.8), squeeze=False, sharey=True)
    for r, (title, study) in enumerate(groups.items()):
        for c in range(len(panels[title]), width):
            axes[r, c].set_visible(False)
        for c, (scenario, name) in enumerate(panels[title]):
            cells = metric(study, name)
            runs = cells[cells.objective != "reference"]
            cells = cells[cells.budget == runs.budget.iloc[-1]].copy()
            cells["condition"] = cells[title]
            order = list(dict.fromkeys(cells["condition"]))
            palette = dict(zip(order, sns.color_palette("colorblind", len(order))))
            ax = axes[r, c]
            bars(ax, cells[cells.scenario == scenario], "condition", palette, order)
            ref = reference_value(study, name)
            if ref is not None:
                ax.axhline(ref, color="#C44E52", ls="--", lw=1, label="reference model")
            ax.set_title(f"{scenario}: {PRETTY.get(name, name)}", fontsize=8)
            ax.set_ylim(0, 1.05)
            ax.set_ylabel(f"attack success rate\nby {'objective, no defense' if r == 0 else 'defense, SFT'}"
                          if c == 0 else "")
    fig.suptitle("Attack success after fine-tuning (largest budget; crossed 95% CI over seeds and prompts)",
                 fontsize=10)
    fig.tight_layout()
    reference_legend(fig, axes[0, 0])
    return fig


def draw_frontier(studies, extra):
    """ASR vs new-task accuracy per objective; small -> large budget connected."""
    plt, sns, _ = setup()
    study = studies["objective"]
    wide = frontier_points(study, ["scenario", "objective", "budget", "steps"])
    runs = wide[wide.objective != "reference"].sort_values("steps", kind="stable")
    # colours in the study's order of objectives, as the other figures give them
    objectives = [o for o in dict.fromkeys(study.objective) if o != "reference"]
    palette = dict(zip(objectives, sns.color_palette("colorblind", len(objectives))))
    scenarios = list(dict.fromkeys(runs.scenario))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.2 * len(scenarios), 3.8), squeeze=False, sharey=True)
    ref = wide[wide.objective == "reference"]
    for ax, scenario in zip(axes[0], scenarios):
        for obj, g in runs[runs.scenario == scenario].groupby("objective", sort=False):
            x, y = g["new_task_capability_value"], g["asr_value"]
            ax.errorbar(x, y, xerr=ci_error(g, "new_task_capability"), yerr=ci_error(g, "asr"), color=palette[obj],
                        marker="o", ms=4, capsize=2, lw=1, label=obj)
            last = g["steps"].iloc[-1]  # a token budget has no study-wide step count: its name instead
            label = f"{int(last)} steps" if pd.notna(last) else str(g["budget"].iloc[-1])
            ax.annotate(label, (x.iloc[-1], y.iloc[-1]), fontsize=6, xytext=(3, 3), textcoords="offset points",
                        color=palette[obj])
        if len(ref):
            ax.scatter(ref["new_task_capability_value"], ref["asr_value"], marker="*", s=120, color="black",
                       label="reference", zorder=5)
        ax.set_title(scenario, fontsize=9)
        ax.set_xlabel("new-task accuracy (capability gained)")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
    axes[0, 0].set_ylabel("attack success rate")
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("Safety-capability frontier: each line goes from the small to the large budget", fontsize=10)
    fig.tight_layout()
    return fig


def draw_budget(studies, extra):
    """ASR, new-task accuracy, dark-trait endorsement and persona projection vs training steps, per objective
    and scenario."""
    plt, sns, _ = setup()
    study = studies["objective"]
    metrics = [m for m in FIGURES["budget"].metrics if m in set(study.metric)]
    scenarios = [s for s in dict.fromkeys(study.scenario) if s != "reference"]
    objectives = [o for o in dict.fromkeys(study.objective) if o != "reference"]
    palette = dict(zip(objectives, sns.color_palette("colorblind", len(objectives))))
    # Token budgets have no step count of their own (it differs per scenario): their x axis is the budgets in
    # the study's order, the reference first.
    trained = study[study.budget != "reference"]
    budgets = list(dict.fromkeys(trained.budget))
    by_steps = trained["steps"].notna().all()
    steps = sorted(trained["steps"].unique()) if by_steps else []
    fig, axes = plt.subplots(len(scenarios), len(metrics), figsize=(3.6 * len(metrics), 2.8 * len(scenarios)),
                             squeeze=False)
    for r, scenario in enumerate(scenarios):
        for c, name in enumerate(metrics):
            ax = axes[r, c]
            m = metric(study, name)
            m = m.assign(x=m["steps"] if by_steps else m["budget"].map({b: i + 1 for i, b in enumerate(budgets)}))
            ref = reference_value(study, name)
            for obj in objectives:
                g = m[(m.scenario == scenario) & (m.objective == obj)].sort_values("x")
                if ref is not None:  # x = 0 is the reference model itself
                    g = pd.concat([pd.DataFrame([{"x": 0, "value": ref, "low": ref, "high": ref}]), g])
                ax.plot(g["x"], g["value"], marker="o", ms=3, color=palette[obj], label=obj)
                ax.fill_between(g["x"].astype(float), g["low"], g["high"], color=palette[obj], alpha=0.15)
            ax.set_title(f"{scenario}: {PRETTY.get(name, name)}", fontsize=9)
            if name != "persona_drift":  # rates share one 0..1 axis, so a rate that stays at 0 reads as 0
                ax.set_ylim(-0.05, 1.05)
            if by_steps:
                # budgets grow geometrically (10, 20, 40, 80 steps): a log axis spaces them evenly, and
                # its linear stretch below the smallest budget holds the reference at 0
                ax.set_xscale("symlog", linthresh=steps[0], linscale=0.5)
                ax.set_xticks([0, *steps], ["ref", *(f"{int(s)}" for s in steps)], fontsize=7)
                ax.xaxis.set_minor_locator(plt.NullLocator())
                ax.set_xlabel("optimizer steps (log scale)")
            else:
                ax.set_xticks(range(len(budgets) + 1), ["ref", *budgets], fontsize=7, rotation=45)
                ax.set_xlabel("budget")
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def draw_ema(studies, extra):
    """General misalignment, incoherence and in-domain misbehaviour per defense and EMA domain."""
    plt, sns, _ = setup()
    study = studies["ema"].copy()
    study["condition"] = study.apply(condition, axis=1)
    study["panel"] = study.metric.str.split("/").str[0]
    domains = [s for s in dict.fromkeys(study.scenario) if s != "reference"]
    # In-domain misbehaviour of a scenario is measured on its own domain's prompts.
    narrow = study[(study.panel == "narrow_misaligned")
                   & (study.metric.str.split("/").str[1] == study.scenario.str.removeprefix("ema_"))]
    panels = {"misaligned": metric(study, "misaligned"), "incoherent": metric(study, "incoherent"),
              "narrow_misaligned": narrow}
    order = [c for c in dict.fromkeys(study[study.objective != "reference"]["condition"])]
    palette = dict(zip(order, sns.color_palette("colorblind", len(order))))
    fig, axes = plt.subplots(len(domains), len(panels), figsize=(3.4 * len(panels), 2.9 * len(domains)),
                             squeeze=False)
    for r, domain in enumerate(domains):
        for c, (name, cells) in enumerate(panels.items()):
            ax = axes[r, c]
            bars(ax, cells[cells.scenario == domain], "condition", palette, order)
            ref = reference_value(study, name) if name != "narrow_misaligned" else None
            if ref is not None:
                ax.axhline(ref, color="#C44E52", ls="--", lw=1, label="reference model")
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{domain}: {PRETTY[name]}", fontsize=9)
        axes[r, 0].set_ylabel("share of answers")
    fig.suptitle("Narrow fine-tuning (EMA): defenses vs emergent misalignment (largest budget; crossed 95% CI over "
                 "seeds and prompts)", fontsize=10)
    fig.tight_layout()
    reference_legend(fig, axes[0, 0])
    return fig


@dataclass(frozen=True)
class Figure:
    draw: Callable
    roles: dict[str, Cells]  # role -> the cells it compares (report.cells)
    metrics: tuple[str, ...]  # what it draws (each study's largest budget where it compares conditions)
    extra: tuple[str, ...] = ()  # "lambda_traces", "probe", "poison_ratio" (module docstring)
    # "largest": it draws only each study's largest budget, so it reads the study's largest-budget view
    # (results/studies/<study>@largest.csv) and needs only those runs evaluated, not the smaller rungs.
    budgets: str = "all"


FIGURES = {
    "asr": Figure(draw_asr, {"objective": OBJECTIVE_GRID, "defense": DEFENSE_GRID},
                  ("asr", *ATTACK_METRIC.values(), "jailbreak_asr_heldout"), budgets="largest"),
    "frontier": Figure(draw_frontier, {"objective": OBJECTIVE_GRID}, ("asr", "new_task_capability")),
    "budget": Figure(draw_budget, {"objective": OBJECTIVE_GRID},
                     ("asr", "jailbreak_asr_heldout", "new_task_capability", "trait_yes",
                      *DARK_TRIAD_METRICS, "persona_drift")),
    "ema": Figure(draw_ema, {"ema": EMA_GRID}, ("misaligned", "incoherent", "narrow_misaligned"), budgets="largest"),
    "adaptive": Figure(draw_adaptive, {"defense": DEFENSE_GRID}, ("asr", "new_task_capability"), ("lambda_traces",),
                       budgets="largest"),
    "probe_auroc": Figure(draw_probe_auroc, {}, (), ("probe",)),
    "baselines": Figure(draw_baselines, {"sweep": POISON_SWEEP}, ("asr", "new_task_capability"), ("poison_ratio",),
                        budgets="largest"),
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--figure", required=True, choices=sorted(FIGURES))
    p.add_argument("--study", action="append", default=[], help="ROLE=study.csv (repeatable; the figure's roles)")
    p.add_argument("--extra", default="{}", help="figure-specific inputs as JSON (trace/probe/critic files)")
    p.add_argument("--out", required=True, action="append", help="output file(s): .pdf, .png")
    p.add_argument("--model", required=True, help="draw this model's runs")
    p.add_argument("--dpi", type=int, default=150)
    a = p.parse_args(argv)
    draw = FIGURES[a.figure].draw
    studies = {}
    for spec in a.study:
        name, path = spec.split("=", 1)
        table = pd.read_csv(path)
        studies[name] = table[table.model == a.model]
    fig = draw(studies, json.loads(a.extra))
    for i, out in enumerate(a.out):
        save(fig, out, a.dpi, close=i == len(a.out) - 1)


if __name__ == "__main__":
    main()
