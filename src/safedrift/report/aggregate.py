"""Stage `report.aggregate`: one study's runs → one long table of metrics with CIs across seeds.

Input: the `metrics_rows.parquet` of every run of the study (one row per metric, prompt and
sample) and of the reference. Each (model, [reference,] scenario, objective, defense, budget) cell
pools its seeds; its interval is the crossed interval of `evaluate.stats` (prompts bootstrapped,
drawn once per replicate for every seed; seeds by their delete-one jackknife with a t quantile).
The reference is a cell with objective and defense "reference".

Reference variants (references:, e.g. Vaccine): a study that fine-tunes from more than the default
reference gets a `reference` column (after `model`) naming each row's variant; each variant's
reference folder is its own baseline cell, and every contrast stays within one variant. A study on
the default reference alone has no such column (its CSV is as before variants existed).

Differences are paired over the prompts both cells were evaluated on:
- `vs_reference*`: the cell minus its model's reference (the variant it was fine-tuned from);
- `vs_none*`: the cell minus the same (model, scenario, objective, budget) with defense `none`,
  where the study has that cell;
- `persona_drift`: the metric `persona_projection` as a difference vs the reference (its value,
  low and high are those of the paired difference).
Output columns: model, [reference,] scenario, objective, defense, budget, steps, metric, value, low, high, n,
unscored, seeds, vs_reference, vs_reference_low, vs_reference_high, vs_none, vs_none_low,
vs_none_high; plus `<stem>_seeds.csv` with each seed's own value (what the tables' tests
recompute).
Unscored responses (value NaN: the judge's score was missing) are left out of every mean and CI
and counted per cell in `unscored` (n counts the decided ones).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from safedrift.config import DEFAULT_REFERENCE, parse_subject_dir
from safedrift.evaluate.stats import cell_ci, cell_from_records, difference_ci
from safedrift.io import atomic_path

CELL = ["model", "reference", "scenario", "objective", "defense", "budget"]
REFERENCE = "reference"
CONTRASTS = ("vs_reference", "vs_none")


def load_rows(run: str) -> pd.DataFrame:
    labels = parse_subject_dir(run.rstrip("/"))
    if labels is None:
        raise ValueError(f"{run}: neither a run folder nor a reference folder (safedrift.config.run_dir/reference_dir)")
    if "scenario" not in labels:  # a reference folder: the baseline cell of its variant
        labels = {**labels, **{axis: REFERENCE for axis in ("scenario", "objective", "defense", "budget")}, "seed": 0}
    rows = pd.read_parquet(f"{run}/eval/metrics_rows.parquet")
    return rows.assign(**labels)


def cells_of(rows: pd.DataFrame) -> dict:
    """{(model, scenario, objective, defense, budget, metric): stats.Cell} of every cell and metric."""
    return {key: cell_from_records(g["seed"].to_numpy(), g["id"].to_numpy(), g["value"].to_numpy())
            for key, g in rows.groupby(CELL + ["metric"], sort=True)}


def counterpart(key: tuple, contrast: str) -> tuple | None:
    model, reference, scenario, objective, defense, budget, metric = key
    if contrast == "vs_reference":
        return None if scenario == REFERENCE else (model, reference, REFERENCE, REFERENCE, REFERENCE, REFERENCE, metric)
    if contrast == "vs_none":
        return None if defense in ("none", REFERENCE) else (model, reference, scenario, objective, "none", budget, metric)
    raise ValueError(contrast)


def aggregate(rows: pd.DataFrame, bootstrap: dict, steps: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    boot = (bootstrap["resamples"], bootstrap["confidence"], bootstrap["seed"])
    cells = cells_of(rows)
    out = []
    for key, cell in cells.items():
        record = {**dict(zip(CELL + ["metric"], key)), **cell_ci(cell, *boot)}
        for contrast in CONTRASTS:
            other = cells.get(counterpart(key, contrast))
            diff = difference_ci(cell, other, *boot) if other is not None else None
            for suffix, field in (("", "value"), ("_low", "low"), ("_high", "high")):
                record[contrast + suffix] = diff[field] if diff else np.nan
        out.append(record)
        if key[-1] == "persona_projection":
            out.append(persona_drift(record, cell, cells, boot))
    table = pd.DataFrame(out)
    table.insert(len(CELL), "steps", table["budget"].map(lambda b: 0 if b == REFERENCE else steps.get(b)))
    per_seed = (rows.groupby(CELL + ["metric", "seed"], sort=True)["value"]
                .agg(value="mean", n="count").reset_index())
    if (rows["reference"] == DEFAULT_REFERENCE).all():  # no variants: the columns as before they existed
        table, per_seed = table.drop(columns="reference"), per_seed.drop(columns="reference")
    return table, per_seed


def persona_drift(record: dict, cell, cells: dict, boot: tuple) -> dict:
    """persona_projection minus the reference's, paired over prompts (the reference drifts 0 from itself)."""
    key = tuple(record[c] for c in CELL) + ("persona_projection",)
    reference = cells.get(counterpart(key, "vs_reference")) if record["scenario"] != REFERENCE else cell
    drift = difference_ci(cell, reference, *boot) if reference is not None else {"value": np.nan, "low": np.nan,
                                                                                 "high": np.nan}
    return {**record, "metric": "persona_drift", "value": drift["value"], "low": drift["low"], "high": drift["high"],
            **{c + s: np.nan for c in CONTRASTS for s in ("", "_low", "_high")}}


def in_config_order(table: pd.DataFrame, order: dict) -> pd.DataFrame:
    """Rows sorted by the config's order of reference variants (where the table has them), scenarios,
    objectives, defenses and budgets (reference first)."""
    rank = {axis: {name: i for i, name in enumerate([REFERENCE, *names])} for axis, names in order.items()}
    keys = [axis for axis in ("reference", "scenario", "objective", "defense", "budget") if axis in rank
            and axis in table]
    return table.sort_values(keys, key=lambda col: col.map(rank[col.name]), kind="stable")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="run folders (and results/<model>/reference)")
    p.add_argument("--settings", required=True, help="{bootstrap, steps: {budget: steps}} as JSON")
    p.add_argument("--order", default="{}", help="{axis: [names in config order]}: the tables' row order")
    p.add_argument("--out", required=True, help="study CSV")
    a = p.parse_args(argv)
    s = json.loads(a.settings)
    rows = pd.concat([load_rows(r) for r in a.runs], ignore_index=True)
    table, per_seed = aggregate(rows, s["bootstrap"], s["steps"])
    order = json.loads(a.order)
    table, per_seed = in_config_order(table, order), in_config_order(per_seed, order)
    with atomic_path(a.out) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(a.out.removesuffix(".csv") + "_seeds.csv") as tmp:
        per_seed.to_csv(tmp, index=False)
    print(f"{len(a.runs)} runs, {len(table)} cells x metrics")


if __name__ == "__main__":
    main()
