"""Stage `report.study_tables`: a study's paper table (tables/<study>.{csv,md,tex}).

TABLES maps a table (tables/<name>.*) to the cells it shows (`cells`, report.cells: its study is the
first whose grid compares those, whatever the study is called), its row keys and metric columns. Cells are "value [low, high]" (95% CI
across seeds and prompts), with "(n=decided/total)" where the judge left responses unscored; the
CSV keeps value/low/high (and unscored) per metric. The reference model is the first row. A column
"<metric>:vs_reference" or "<metric>:vs_none" is a difference (the cell minus its reference, or minus
the same cell without defense) with its paired interval; persona drift is itself such a difference.
A study on reference variants (its aggregate has a `reference` column) leads every row with it.
With `--judge-validation` (the config accepts an eval judge below its validation targets) a judge
below its targets is named in a note under the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from safedrift.report.aggregate import REFERENCE
from safedrift.report.cells import DEFENSE_GRID, EMA_GRID, OBJECTIVE_GRID, POISON_SWEEP, STRENGTH_SWEEP
from safedrift.report.plotting import DARK_TRIAD_METRICS, PRETTY
from safedrift.report.tables import fmt_ci, write_table

# The columns of a table that sweeps defenses along one setting (poison ratio, strength).
DEFENSE_SWEEP_METRICS = {"asr": "ASR", "asr:vs_none": "Δ ASR vs none", "jailbreak_asr_heldout": "jailbreak ASR (held-out)",
                         "capability": "task acc.", "new_task_capability": "new-task acc."}

TABLES = {
    "objectives": {
        "cells": OBJECTIVE_GRID,
        "rows": ["scenario", "objective", "budget", "steps"],
        "metrics": {"asr": "ASR", "jailbreak_asr_heldout": "jailbreak ASR (held-out)",
                    "jailbreak_asr_heldout:vs_reference": "Δ jailbreak ASR vs reference", "over_refusal": "over-refusal",
                    "capability": "task acc.", "new_task_capability": "new-task acc.",
                    "trait_yes": "dark-trait yes", **{m: PRETTY[m] for m in DARK_TRIAD_METRICS},
                    "persona_drift": "persona drift"},
        "caption": "Objectives: safety and capability after fine-tuning on benign and harmful data, per objective "
                   "and budget (no defense).",
    },
    "ema_defenses": {
        "cells": EMA_GRID,
        "rows": ["scenario", "objective", "defense"],
        "metrics": {"misaligned": "general misalignment", "misaligned:vs_none": "Δ misalignment vs none",
                    "incoherent": "incoherence",
                    "narrow_misaligned/coding": "insecure code", "narrow_misaligned/medical": "harmful advice",
                    "trait_yes": "dark-trait yes", "persona_drift": "persona drift"},
        "caption": "Narrow fine-tuning (EMA): in-training defenses and inoculation against emergent misalignment.",
    },
    "adaptive": {
        "cells": DEFENSE_GRID,
        "rows": ["scenario", "defense"],
        "metrics": {"asr": "ASR", "asr:vs_none": "Δ ASR vs none", "asr@keyword": "ASR (keyword)",
                    "asr/harmful_identity": "ASR under the identity prompt", "over_refusal": "over-refusal",
                    "capability": "task acc.", "new_task_capability": "new-task acc."},
        "caption": "Risk-adaptive regularisation: no defense, fixed KL, safe-data interleaving and adaptive KL "
                   "driven by the activation probe or the Safety Critic (SFT, large budget).",
    },
    "baselines": {
        "cells": POISON_SWEEP,
        "rows": ["scenario", "defense"],
        "metrics": DEFENSE_SWEEP_METRICS,
        "caption": "Harmful fine-tuning baselines at poison ratios 0.05, 0.1 and 0.2 (the layout of Lisa's and "
                   "Vaccine's main tables): no defense, fixed and adaptive KL, Lisa, token-constrained fine-tuning "
                   "and SafeLoRA on the aligned reference, and no defense on the Vaccine reference (SFT, large budget).",
    },
    "adaptive_strength": {
        "cells": STRENGTH_SWEEP,
        "rows": ["scenario", "defense"],
        "metrics": DEFENSE_SWEEP_METRICS,
        "caption": "Dose-response of the KL defenses: fixed KL and adaptive KL (probe, critic) at several weights "
                   "(beta; lambda_max), and the paper's per-batch rule (configs/sensitivity/adaptive_strength.yaml; "
                   "SFT, large budget).",
    },
}


def long_form(study: pd.DataFrame, metrics: dict) -> pd.DataFrame:
    """Rows (cell, metric, value, low, high) for the table's columns; a "metric:contrast" column takes
    the contrast's difference and paired interval."""
    parts = []
    for column in metrics:
        metric, _, contrast = column.partition(":")
        rows = study[study.metric == metric]
        if contrast:
            rows = rows.assign(value=rows[contrast], low=rows[f"{contrast}_low"], high=rows[f"{contrast}_high"])
        parts.append(rows.assign(metric=column))
    return pd.concat(parts, ignore_index=True)


def build(study: pd.DataFrame, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    spec = TABLES[name]
    keys, metrics = (["reference"] if "reference" in study else []) + spec["rows"], spec["metrics"]
    cells = long_form(study, metrics)
    if "unscored" not in cells:  # an aggregate written before unscored responses were counted
        cells = cells.assign(unscored=0)
    data = cells.set_index(keys + ["metric"])[["value", "low", "high", "n", "unscored"]].unstack("metric")
    data.columns = [f"{m}_{v}" for v, m in data.columns]
    # Rows in the study table's order (report.aggregate: reference first, then config order).
    order = {k: i for i, k in enumerate(dict.fromkeys(map(tuple, study[keys].itertuples(index=False))))}
    data = data.reset_index()
    data = data.iloc[sorted(range(len(data)), key=lambda i: order[tuple(data.loc[i, keys])])]
    # a metric no cell measured is left out; one with a cell whose every response was unscored is kept, its
    # cells reading "– (n=0/k)": a judge that failed everywhere is shown, never dropped
    present = [m for m in metrics if f"{m}_value" in data
               and (data[f"{m}_value"].notna().any() or ((data[f"{m}_n"] == 0) & (data[f"{m}_unscored"] > 0)).any())]
    counts = data[[f"{m}_{v}" for m in present for v in ("n", "unscored")]]
    data = data[keys + [f"{m}_{v}" for m in present for v in ("value", "low", "high", "unscored")]]
    display = data[keys].copy()
    for m in present:
        n, unscored = counts[f"{m}_n"], counts[f"{m}_unscored"]
        display[metrics[m]] = [fmt_ci(v, lo, hi, n=k, total=k + u) for v, lo, hi, k, u in
                               zip(data[f"{m}_value"], data[f"{m}_low"], data[f"{m}_high"], n, unscored)]
    if "steps" in display:
        display["steps"] = display["steps"].map(lambda s: "–" if pd.isna(s) else str(int(s)))
    return data, display


def validation_notes(path: str | None) -> list[str]:
    """A note naming the eval judge and the targets it misses, when its validation summary says so."""
    if not path:
        return []
    v = json.loads(Path(path).read_text())
    if v["meets_targets"]:
        return []
    return [f"Note: the eval judge `{v['judge']}` is below its validation targets against {v['against']} "
            f"({'; '.join(v['misses'])}); reported because evaluation.judge_validation.accept_below_targets is true."]


def fewer_seeds(table: pd.DataFrame, seeds: int) -> str:
    """A caption sentence naming how many run cells have fewer scored seeds than configured ('' if none)."""
    if "seeds" not in table:
        return ""
    runs = table[(table["scenario"] != REFERENCE) & (table["seeds"] < seeds)]
    if runs.empty:
        return ""
    cells = runs.drop_duplicates(["scenario", "objective", "defense", "budget"])
    return (f" {len(cells)} cell(s) have fewer than {seeds} scored seeds for some metric (e.g. "
            f"{'/'.join(str(cells.iloc[0][c]) for c in ('scenario', 'objective', 'defense', 'budget'))} "
            f"{cells.iloc[0]['metric']}: {int(cells.iloc[0]['seeds'])}); the study's CSV has each cell's count.")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", required=True, choices=sorted(TABLES), help="the table (a key of TABLES)")
    p.add_argument("--table", required=True, help="the CSV (report.aggregate) of the study its cells select")
    p.add_argument("--seeds", type=int, required=True, help="seeds per cell (for the caption)")
    p.add_argument("--confidence", type=float, default=0.95, help="the intervals' level (evaluation.bootstrap)")
    p.add_argument("--judge-validation", help="the eval judge's validation summary (JSON), read when the config "
                   "accepts a judge below its targets")
    p.add_argument("--out", required=True, help="output stem (writes .csv, .md, .tex)")
    a = p.parse_args(argv)
    table = pd.read_csv(a.table)
    data, display = build(table, a.study)
    caption = (f"{TABLES[a.study]['caption']} Mean over {a.seeds} seeds with {a.confidence:.0%} CIs (prompts "
               "bootstrapped, crossed with seeds; seeds by jackknife with a t quantile on seeds − 1 degrees of "
               "freedom; differences paired over prompts and seeds; a rate at 0 or 1 gets its score interval)."
               f"{fewer_seeds(table, a.seeds)}")
    write_table(data, display, a.out, caption, validation_notes(a.judge_validation))
    print(display.to_string(index=False))


if __name__ == "__main__":
    main()
