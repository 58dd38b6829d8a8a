"""Figures of the defenses' own workings: the adaptive defense's trade-off and lambda trace, the risk
probe and critic, and the harmful fine-tuning baselines across poison ratios (report.figures
registers them)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd

from safedrift.io import read_jsonl
from safedrift.report.plotting import ATTACK_METRIC, PRETTY, UTILITY_METRIC, ci_span, reference_value
from safedrift.report.style import setup


def draw_adaptive(studies, extra):
    """Attack success vs utility per defense and scenario (an identity-shift attack measured under its
    identity prompt, against ordinary-task accuracy: ten identity examples teach no new task), and
    one run's lambda trace."""
    plt, sns, _ = setup()
    study = studies["defense"].copy()
    study = study[study.objective != "reference"]
    scenarios = list(dict.fromkeys(study.scenario))
    defenses = list(dict.fromkeys(study.defense))
    palette = dict(zip(defenses, sns.color_palette("colorblind", len(defenses))))
    markers = dict(zip(defenses, itertools.cycle("osD^vP*X")))
    fig, axes = plt.subplots(1, len(scenarios) + 1, figsize=(3.4 * (len(scenarios) + 1), 3.4), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios):
        attack, utility = ATTACK_METRIC.get(scenario, "asr"), UTILITY_METRIC.get(scenario, "new_task_capability")
        cells = study[study.scenario == scenario]
        for k, defense in enumerate(defenses):
            at = cells[(cells.defense == defense) & (cells.metric == attack)]
            ut = cells[(cells.defense == defense) & (cells.metric == utility)]
            if at.empty or ut.empty:
                continue
            # earlier defenses drawn larger: a defense with the same point as another stays visible
            ax.errorbar(ut["value"], at["value"], xerr=ci_span(ut), yerr=ci_span(at), color=palette[defense],
                        marker=markers[defense], ms=max(9 - 1.2 * k, 3), capsize=2, ls="", label=defense)
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(scenario, fontsize=9)
        ax.set_xlabel(f"{PRETTY.get(utility, utility)} (utility)")
        ax.set_ylabel(f"attack success: {PRETTY.get(attack, attack)}", fontsize=8)
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
    ax.set_title("lambda trace (one run per defense)", fontsize=9)
    if ax.lines:
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
    ax.set_xticks(table["layer"])  # whole layers, no fractional ticks
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("AUROC harmful vs benign prompts")
    ax.set_title("Activation probe (test: held-out objects and templates)", fontsize=9)
    ax.legend(fontsize=7)
    rows = []
    for scenario, path in extra.get("critic", {}).items():
        with open(path) as f:
            s = json.load(f)
        if s.get("recall") is not None:
            # no example flagged: precision is undefined, not 0
            rows.append({"scenario": scenario, "recall": s["recall"],
                         "precision": float("nan") if s["precision"] is None else s["precision"]})
    if rows:
        df = pd.DataFrame(rows).melt("scenario", var_name="measure")
        sns.barplot(df, x="scenario", y="value", hue="measure", ax=ax2, palette="colorblind")
        ax2.set_ylim(0, 1.05)
        ax2.tick_params(axis="x", labelrotation=35, labelsize=7)
        ax2.legend(fontsize=7, loc="lower right")
    ax2.set_ylabel("vs oracle")
    ax2.set_xlabel("")
    undefined = [r["scenario"] for r in rows if pd.isna(r["precision"])]
    ax2.set_title("Safety Critic on training examples" + (f"\n(precision n/a: nothing flagged on "
                                                          f"{', '.join(undefined)})" if undefined else ""), fontsize=9)
    fig.tight_layout()
    return fig


def baseline_lines(study: pd.DataFrame, poison_ratio: dict) -> dict[str, pd.DataFrame]:
    """{label: rows (x = poison ratio, value, low, high, metric) sorted by x}: one line per defense on
    the default reference, and one per defense on each other reference variant ("<variant> (<defense>)").
    `study` is the study's largest-budget view (the figure's `budgets="largest"`): one budget."""
    runs = study[study.objective != "reference"].assign(x=lambda d: d.scenario.map(poison_ratio))
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
    markers = dict(zip(lines, itertools.cycle("osD^vP*Xh")))
    # lines at the same values (several defenses at ASR 1.0) are dodged sideways and drawn with
    # shrinking markers, so that each stays visible
    ratios = sorted(set(extra["poison_ratio"].values()))
    step = min(np.diff(ratios)) if len(ratios) > 1 else 0.1
    dodge = dict(zip(lines, np.linspace(-0.12, 0.12, len(lines)) * step))
    variants = list(dict.fromkeys(study["reference"])) if "reference" in study else ["default"]
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4), squeeze=False)
    for ax, name in zip(axes[0], ("asr", "new_task_capability")):
        for k, (label, rows) in enumerate(lines.items()):
            g = rows[rows.metric == name]
            ax.errorbar(g["x"] + dodge[label], g["value"], yerr=ci_span(g), color=palette[label], marker=markers[label],
                        ms=max(6 - 0.5 * k, 3), capsize=2, lw=1, ls="--" if " (" in label else "-", label=label)
        for variant, style in zip(variants, itertools.cycle((":", "-.", (0, (1, 3)), (0, (5, 2, 1, 2))))):
            ref = reference_value(study[study.reference == variant] if "reference" in study else study, name)
            if ref is not None:
                ax.axhline(ref, color="grey", ls=style, lw=1,
                           label="reference model" if variant == "default" else f"{variant} reference model")
        ax.set_xticks(ratios)
        ax.set_xlabel("poison ratio (share of harmful examples)")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(PRETTY[name], fontsize=9)
    axes[0, 0].set_ylabel("rate")
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("Harmful fine-tuning baselines vs poison ratio (SFT, largest budget; 95% CI)", fontsize=10)
    fig.tight_layout()
    return fig
