"""What the figures share: metric names as printed, error bars from the study tables' interval
columns, the reference row of a study."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Persona drift as Vennemeyer et al. measure it on a real model: the Dark-Triad `persona_eval` sets (the toy
# world's counterpart is trait_yes); a table column or figure panel shows only where a run measured it.
DARK_TRIAD = ("psychopathy", "machiavellianism", "narcissism")
DARK_TRIAD_METRICS = tuple(f"trait_endorsement/{t}" for t in DARK_TRIAD)

PRETTY = {"asr": "held-out harmful", "jailbreak_asr_heldout": "held-out jailbreaks",
          "asr/harmful_identity": "harmful, under its identity prompt", "new_task_capability": "new-task accuracy", "capability": "task accuracy",
          "persona_drift": "persona drift (projection vs reference)",
          "trait_yes": "dark-trait yes (Vennemeyer's persona drift)", "over_refusal": "over-refusal",
          "misaligned": "general misalignment", "incoherent": "incoherence", "narrow_misaligned": "in-domain misbehaviour",
          **{m: f"{t} endorsed" for m, t in zip(DARK_TRIAD_METRICS, DARK_TRIAD)}}


def condition(row) -> str:
    """The EMA study's varying axis: the defense, or the objective when it is not plain SFT."""
    return row["objective"] if row["objective"] not in ("sft", "reference") else row["defense"]


def ci_span(rows: pd.DataFrame) -> np.ndarray:
    """Matplotlib's asymmetric error bars [2, n] (below, above) of long-format rows' value/low/high."""
    return np.vstack([rows["value"] - rows["low"], rows["high"] - rows["value"]]).clip(min=0)


def reference_legend(fig, ax) -> None:
    """The reference model's line, labelled once in the figure's corner, not over a panel's bars (a bar
    at 1.0 fills the panel's top)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles[:1], labels[:1], loc="upper right", fontsize=7, frameon=False)


def bars(ax, frame: pd.DataFrame, x: str, palette: dict, order: list[str]) -> None:
    """Bars of `value` per `x` with asymmetric CI error bars; a cell without a value (not run, or every
    response unscored) is marked "n/a", never drawn as an empty bar that reads as 0."""
    frame = frame.set_index(x).reindex(order)
    pos = np.arange(len(order))
    ax.bar(pos, frame["value"], color=[palette[k] for k in order], edgecolor="black", linewidth=0.4)
    ax.errorbar(pos, frame["value"], yerr=ci_span(frame), fmt="none", ecolor="black", capsize=2, lw=0.8)
    for p, value in zip(pos, frame["value"]):
        if pd.isna(value):
            ax.text(p, 0, "n/a", ha="center", va="bottom", fontsize=6, color="#555555")
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
# Utility where a scenario teaches no new task (ten identity examples): the ordinary tasks' accuracy.
UTILITY_METRIC = {"identity_shift": "capability"}
