"""CI widths of study cells: the crossed interval (evaluate.stats, today) against the nested bootstrap the
pipeline used before (prompts resampled independently for every seed), on the same metric rows.

    python benchmarks/ci_widths.py --runs results/toy/runs/harmful/sft/none/b80/seed* [--metrics asr ...]

Prints, per cell, both widths and their ratio, measured in one run. Nested resampling treats k seeds
as k independent prompt samples, so where seeds agree it is too narrow (about 1/sqrt(k))."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from safedrift.evaluate.stats import cell_ci, cell_from_records
from safedrift.report.aggregate import load_rows


def nested_ci(seed_groups, resamples=1000, confidence=0.95, seed=0):
    """The old `hierarchical_ci`: seeds with replacement, then prompts resampled within each seed slot."""
    seeds = [[np.asarray(p, dtype=float) for p in s if len(p)] for s in seed_groups]
    rng = np.random.default_rng(seed)
    k = len(seeds)
    slot = np.empty((k, resamples, k))
    for u, prompts in enumerate(seeds):
        sums, counts = np.array([p.sum() for p in prompts]), np.array([len(p) for p in prompts])
        idx = rng.integers(0, len(prompts), (resamples, k, len(prompts)))
        slot[u] = sums[idx].sum(-1) / counts[idx].sum(-1)
    picked = rng.integers(0, k, (resamples, k))
    means = slot[picked, np.arange(resamples)[:, None], np.arange(k)[None, :]].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return high - low


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="run folders of the cells (all seeds)")
    p.add_argument("--metrics", nargs="+", default=["asr", "jailbreak_asr_heldout", "misaligned",
                                                    "new_task_capability"])
    a = p.parse_args()
    rows = pd.concat([load_rows(r) for r in a.runs], ignore_index=True)
    rows = rows[rows.metric.isin(a.metrics)].dropna(subset=["value"])
    print(f"{'cell':45s} {'metric':24s} {'nested':>8s} {'crossed':>8s} {'crossed/nested':>15s}")
    for key, g in rows.groupby(["scenario", "objective", "defense", "budget", "metric"], sort=True):
        seeds = [[p["value"].to_numpy() for _, p in s.groupby("id", sort=True)] for _, s in g.groupby("seed")]
        old = nested_ci(seeds)
        ci = cell_ci(cell_from_records(g["seed"].to_numpy(), g["id"].to_numpy(), g["value"].to_numpy()))
        new = ci["high"] - ci["low"]
        ratio = new / old if old else float("nan")
        print(f"{'/'.join(key[:4]):45s} {key[4]:24s} {old:8.3f} {new:8.3f} {ratio:15.2f}")


if __name__ == "__main__":
    main()
