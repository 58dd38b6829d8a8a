"""Stage `report.figures`: the paper figures, drawn from the study tables of `report.aggregate`.

FIGURES maps a figure name (figures/<name>.pdf) to what it draws (`Figure`): the function, the
metrics, and per role the cells it compares (report.cells: the study of a role is chosen by its grid,
never by its name; the draw function gets the studies keyed by role) and the extra files it reads
(`lambda_traces`: the train logs of the defense role's runs, of which it plots those that log
`lambda_mean`; `probe`: the probe's per-layer table and the critic summaries; `poison_ratio`: no
file, the config's poison ratio of each scenario of the sweep role). Every panel shows 95%
CIs across seeds (hierarchical bootstrap) as error bars or bands.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from safedrift.io import read_jsonl
from safedrift.report.cells import DEFENSE_GRID, EMA_GRID, OBJECTIVE_GRID, POISON_SWEEP, Cells
from safedrift.report.style import save, setup

PRETTY = {"asr": "held-out harmful", "jailbreak_asr_heldout": "held-out jailbreaks",
          "asr/harmful_identity": "harmful, under its identity prompt", "new_task_capability": "new-task accuracy", "capability": "task accuracy",
          "persona_drift": "persona drift (projection vs reference)", "over_refusal": "over-refusal",
          "misaligned": "general misalignment", "incoherent": "incoherence", "narrow_misaligned": "in-domain misbehaviour"}


def condition(row) -> str:
    """The EMA study's varying axis: the defense, or the objective when it is not plain SFT."""
    return row["objective"] if row["objective"] not in ("sft", "reference") else row["defense"]


def bars(ax, frame: pd.DataFrame, x: str, palette: dict, order: list[str]) -> None:
    """Bars of `value` per `x` with asymmetric CI error bars."""
    frame = frame.set_index(x).reindex(order)
    pos = np.arange(len(order))
    ax.bar(pos, frame["value"], color=[palette[k] for k in order], edgecolor="black", linewidth=0.4)
    err = np.vstack([frame["value"] - frame["low"], frame["high"] - frame["value"]]).clip(min=0)
    ax.errorbar(pos, frame["value"], yerr=err, fmt="none", ecolor="black", capsize=2, lw=0.8)
    ax.set_xticks(pos, order, rotation=35, ha="right")


def frontier_points(study: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """One row per `index` cell with asr_{value,low,high} and new_task_capability_{value,low,high}."""
    wide = study[study.metric.isin(["asr", "new_task_capability"])].pivot_table(
        index=index, columns="metric", values=["value", "low", "high"])
    wide.columns = [f"{m}_{v}" for v, m in wide.columns]
    return wide.reset_index()


def ci_error(points: pd.DataFrame, name: str) -> list:
    """Matplotlib's asymmetric error bars [below, above] of `name` from its value/low/high columns."""
    return [points[f"{name}_value"] - points[f"{name}_low"], points[f"{name}_high"] - points[f"{name}_value"]]


def metric(study: pd.DataFrame, name: str) -> pd.DataFrame:
    return study[study.metric == name]


def reference_value(study: pd.DataFrame, name: str) -> float | None:
    ref = study[(study.objective == "reference") & (study.metric == name)]
    return float(ref["value"].iloc[0]) if len(ref) else None


# An attack evaluated under its own system prompt (Qi et al. 2023's identity shift): its panel shows
# that success rate in place of the plain one.
ATTACK_METRIC = {"identity_shift": "asr/harmful_identity"}


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
        axes[r, len(panels[title]) - 1].legend(loc="upper right", fontsize=6)
    fig.suptitle("Attack success after fine-tuning (largest budget; crossed 95% CI over seeds and prompts)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def draw_frontier(studies, extra):
    """ASR vs new-task accuracy per objective; small -> large budget connected."""
    plt, sns, _ = setup()
    study = studies["objective"]
    wide = frontier_points(study, ["scenario", "objective", "budget", "steps"])
    runs = wide[wide.objective != "reference"].sort_values("steps")
    objectives = list(dict.fromkeys(runs.objective))
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
    """ASR, new-task accuracy and persona drift vs training steps, per objective and scenario."""
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
            if by_steps:
                ax.set_xlabel("optimizer steps")
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
    fig.suptitle("Narrow fine-tuning (EMA): defenses vs emergent misalignment (95% CI across seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def draw_adaptive(studies, extra):
    """ASR vs new-task accuracy for none / fixed KL / adaptive per scenario, and one run's lambda trace."""
    plt, sns, _ = setup()
    study = studies["defense"].copy()
    study = study[study.objective != "reference"]
    wide = frontier_points(study, ["scenario", "defense"])
    scenarios = list(dict.fromkeys(wide.scenario))
    defenses = list(dict.fromkeys(study.defense))
    palette = dict(zip(defenses, sns.color_palette("colorblind", len(defenses))))
    fig, axes = plt.subplots(1, len(scenarios) + 1, figsize=(3.4 * (len(scenarios) + 1), 3.4), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios):
        points = wide[wide.scenario == scenario]
        for k in range(len(points)):
            p = points.iloc[[k]]
            ax.errorbar(p["new_task_capability_value"], p["asr_value"], xerr=ci_error(p, "new_task_capability"),
                        yerr=ci_error(p, "asr"), color=palette[p["defense"].iloc[0]], marker="o", capsize=2,
                        label=p["defense"].iloc[0])
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(scenario, fontsize=9)
        ax.set_xlabel("new-task accuracy (utility)")
        ax.set_ylabel("attack success rate")
    axes[0, 0].legend(fontsize=7)
    ax = axes[0, -1]
    for label, path in extra.get("traces", {}).items():
        log = read_jsonl(path)
        if not any("lambda_mean" in r for r in log):  # a defense that logs no KL strength
            continue
        steps = [r["step"] for r in log if "lambda_mean" in r]
        ax.plot(steps, [r["lambda_mean"] for r in log if "lambda_mean" in r], label=label,
                color=palette.get(label.split(" ")[0]))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean KL strength lambda in the batch")
    ax.set_title("lambda trace (seed 0)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def draw_probe_auroc(studies, extra):
    """Per-layer probe AUROC (train / validation / test) and the Safety Critic's recall per scenario."""
    plt, sns, _ = setup()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.5, 3.2), gridspec_kw={"width_ratios": [3, 2]})
    table = pd.read_csv(extra["probe_table"])
    for split, style in (("train", ":"), ("validation", "--"), ("test", "-")):
        ax.plot(table["layer"], table[f"auroc_{split}"], ls=style, marker="o", ms=3, label=split)
    chosen = int(table.loc[table.chosen == 1, "layer"].iloc[0])
    ax.axvline(chosen, color="grey", lw=0.8)
    ax.annotate(f"chosen on validation: layer {chosen}", (chosen, 0.52), fontsize=7, xytext=(4, 0),
                textcoords="offset points")
    ax.set_ylim(0.5, 1.01)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("AUROC harmful vs benign prompts")
    ax.set_title("Activation probe (test: held-out objects and templates)", fontsize=9)
    ax.legend(fontsize=7)
    rows = []
    for scenario, path in extra.get("critic", {}).items():
        with open(path) as f:
            s = json.load(f)
        if s.get("recall") is not None:
            rows.append({"scenario": scenario, "recall": s["recall"], "precision": s["precision"] or 0.0})
    if rows:
        df = pd.DataFrame(rows).melt("scenario", var_name="measure")
        sns.barplot(df, x="scenario", y="value", hue="measure", ax=ax2, palette="colorblind")
        ax2.set_ylim(0, 1.05)
        ax2.legend(fontsize=7, loc="lower right")
    ax2.set_ylabel("vs oracle")
    ax2.set_xlabel("")
    ax2.set_title("Safety Critic on training examples", fontsize=9)
    fig.tight_layout()
    return fig


def baseline_lines(study: pd.DataFrame, poison_ratio: dict) -> dict[str, pd.DataFrame]:
    """{label: rows (x = poison ratio, value, low, high, metric) sorted by x}: one line per defense on
    the default reference, and one per defense on each other reference variant ("<variant> (<defense>)")."""
    runs = study[study.objective != "reference"].assign(x=lambda d: d.scenario.map(poison_ratio))
    runs = runs[runs.budget == runs.budget.iloc[-1]]  # the largest budget (study order)
    variant = runs["reference"] if "reference" in runs else pd.Series("default", index=runs.index)
    label = np.where(variant == "default", runs.defense, variant + " (" + runs.defense + ")")
    return {name: g.sort_values("x") for name, g in runs.assign(line=label).groupby("line", sort=False)}


def draw_baselines(studies, extra):
    """Held-out ASR and new-task accuracy vs poison ratio: a line per defense and per reference variant
    (e.g. Vaccine without defense), 95% CI error bars (the study CSV's low/high)."""
    plt, sns, _ = setup()
    study = studies["sweep"]
    lines = baseline_lines(study, extra["poison_ratio"])
    palette = dict(zip(lines, sns.color_palette("colorblind", len(lines))))
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4), squeeze=False)
    for ax, name in zip(axes[0], ("asr", "new_task_capability")):
        for label, rows in lines.items():
            g = rows[rows.metric == name]
            err = np.vstack([g["value"] - g["low"], g["high"] - g["value"]]).clip(min=0)
            ax.errorbar(g["x"], g["value"], yerr=err, color=palette[label], marker="o", ms=3, capsize=2, lw=1,
                        ls="--" if " (" in label else "-", label=label)
        ref = reference_value(study[study.reference == "default"] if "reference" in study else study, name)
        if ref is not None:
            ax.axhline(ref, color="grey", ls=":", lw=1, label="reference model")
        ax.set_xticks(sorted(set(extra["poison_ratio"].values())))
        ax.set_xlabel("poison ratio (share of harmful examples)")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(PRETTY[name], fontsize=9)
    axes[0, 0].set_ylabel("rate")
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("Harmful fine-tuning baselines vs poison ratio (SFT, largest budget; 95% CI)", fontsize=10)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class Figure:
    draw: Callable
    roles: dict[str, Cells]  # role -> the cells it compares (report.cells)
    metrics: tuple[str, ...]  # what it draws (each study's largest budget where it compares conditions)
    extra: tuple[str, ...] = ()  # "lambda_traces", "probe", "poison_ratio" (module docstring)


FIGURES = {
    "asr": Figure(draw_asr, {"objective": OBJECTIVE_GRID, "defense": DEFENSE_GRID},
                  ("asr", *ATTACK_METRIC.values(), "jailbreak_asr_heldout")),
    "frontier": Figure(draw_frontier, {"objective": OBJECTIVE_GRID}, ("asr", "new_task_capability")),
    "budget": Figure(draw_budget, {"objective": OBJECTIVE_GRID},
                     ("asr", "jailbreak_asr_heldout", "new_task_capability", "persona_drift")),
    "ema": Figure(draw_ema, {"ema": EMA_GRID}, ("misaligned", "incoherent", "narrow_misaligned")),
    "adaptive": Figure(draw_adaptive, {"defense": DEFENSE_GRID}, ("asr", "new_task_capability"), ("lambda_traces",)),
    "probe_auroc": Figure(draw_probe_auroc, {}, (), ("probe",)),
    "baselines": Figure(draw_baselines, {"sweep": POISON_SWEEP}, ("asr", "new_task_capability"), ("poison_ratio",)),
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
