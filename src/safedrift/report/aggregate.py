"""Stage `report.aggregate`: one study's runs → one long table of metrics with CIs across seeds.

Input: the `metrics_rows.parquet` of every run of the study (one row per metric, prompt and
sample) and of the reference. Each (model, scenario, objective, defense, budget) cell pools its
seeds with a hierarchical bootstrap (seeds, then prompts within a seed), so the CI covers both
seed-to-seed and prompt-to-prompt variation. The reference is a cell with objective and defense
"reference". `persona_drift` is a run's mean persona projection minus its reference's.
Unscored responses (value NaN: the judge's score was missing) are left out of every mean and CI
and counted per cell in `unscored` (n counts the decided ones).
Output columns: model, scenario, objective, defense, budget, steps, metric, value, low, high, n,
seeds, unscored, plus `<stem>_seeds.csv` with each seed's own value (what the tables' tests recompute).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd

from safedrift.evaluate.stats import hierarchical_ci
from safedrift.io import atomic_path

RUN = re.compile(r"results/(?P<model>[^/]+)/runs/(?P<scenario>[^/]+)/(?P<objective>[^/]+)/(?P<defense>[^/]+)/"
                 r"(?P<budget>[^/]+)/seed(?P<seed>\d+)/?$")
CELL = ["model", "scenario", "objective", "defense", "budget"]


def load_rows(run: str) -> pd.DataFrame:
    m = RUN.search(run.rstrip("/"))
    if m:
        labels = {**m.groupdict(), "seed": int(m["seed"])}
    else:  # results/<model>/reference
        labels = {"model": Path(run).parent.name, "scenario": "reference", "objective": "reference",
                  "defense": "reference", "budget": "reference", "seed": 0}
    rows = pd.read_parquet(f"{run}/eval/metrics_rows.parquet")
    return rows.assign(**labels)


def with_persona_drift(rows: pd.DataFrame) -> pd.DataFrame:
    projection = rows[rows.metric == "persona_projection"]
    reference = projection[projection.objective == "reference"].groupby("model")["value"].mean()
    if projection.empty or reference.empty:
        return rows
    drift = projection.assign(metric="persona_drift",
                              value=projection["value"] - projection["model"].map(reference))
    return pd.concat([rows, drift], ignore_index=True)


def aggregate(rows: pd.DataFrame, bootstrap: dict, steps: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    cells, per_seed = [], []
    for key, group in rows.groupby(CELL + ["metric"], sort=True):
        seeds = []
        for seed, g in group.groupby("seed", sort=True):
            prompts = [p["value"].dropna().to_numpy() for _, p in g.groupby("id", sort=True)]
            seeds.append(prompts)
            per_seed.append({**dict(zip(CELL + ["metric"], key)), "seed": seed, "value": float(g["value"].mean()),
                             "n": int(g["value"].count())})
        ci = hierarchical_ci(seeds, bootstrap["resamples"], bootstrap["confidence"], bootstrap["seed"])
        cells.append({**dict(zip(CELL + ["metric"], key)), **ci, "unscored": int(group["value"].isna().sum())})
    table = pd.DataFrame(cells)
    table.insert(5, "steps", table["budget"].map(lambda b: 0 if b == "reference" else steps.get(b)))
    return table, pd.DataFrame(per_seed)


def in_config_order(table: pd.DataFrame, order: dict) -> pd.DataFrame:
    """Rows sorted by the config's order of scenarios, objectives, defenses and budgets (reference first)."""
    rank = {axis: {name: i for i, name in enumerate(["reference", *names])} for axis, names in order.items()}
    keys = [axis for axis in ("scenario", "objective", "defense", "budget") if axis in rank]
    return table.sort_values(keys, key=lambda col: col.map(rank[col.name]), kind="stable")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="run folders (and results/<model>/reference)")
    p.add_argument("--settings", required=True, help="{bootstrap, steps: {budget: steps}} as JSON")
    p.add_argument("--order", default="{}", help="{axis: [names in config order]}: the tables' row order")
    p.add_argument("--out", required=True, help="study CSV")
    a = p.parse_args(argv)
    s = json.loads(a.settings)
    rows = with_persona_drift(pd.concat([load_rows(r) for r in a.runs], ignore_index=True))
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
