"""Coverage and width of the crossed intervals (evaluate.stats, today) against the pigeonhole bootstrap
the pipeline used before (prompts and seeds both resampled, percentile interval), on simulated data sets
of 3 seeds x P prompts with known truth: crossed random effects, continuous and binary (logit-normal).

    python benchmarks/ci_coverage.py [--datasets 400]

Prints one row per design: the share of 95% intervals that cover the truth, for both methods, and the
median width of today's over the old one's, measured in one run on the same data sets. With 3 seeds
the pigeonhole bootstrap's seed part is the range of the seed means (27 equally likely seed draws)."""

from __future__ import annotations

import argparse

import numpy as np

from safedrift.evaluate import stats


def pigeonhole(cells, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """The old interval: shared prompt draws, seeds with replacement (one draw per seed tuple), percentile;
    a difference of two cells when two are given; the score floors as today."""
    cells = stats.on_shared_prompts(cells)
    rng = np.random.default_rng(seed)
    weights = stats._prompt_weights(rng, len(cells[0].prompts), resamples)
    draws = {c.seeds: rng.integers(0, len(c.seeds), (resamples, len(c.seeds))) for c in cells}
    reps = [np.take_along_axis(stats._seed_means(c.sums, c.counts, weights), draws[c.seeds], 1).mean(1)
            for c in cells]
    points = [stats._point(c) for c in cells]
    if len(cells) == 1:
        low, high = stats._interval(reps[0], confidence)
        ci = stats.rate_floor({"value": points[0], "low": low, "high": high}, cells[0], confidence)
    else:
        low, high = stats._interval(reps[0] - reps[1], confidence)
        ci = stats.difference_floor({"value": points[0] - points[1], "low": low, "high": high}, *cells,
                                    *points, confidence)
    return ci["low"], ci["high"]


def crossed(values: np.ndarray) -> stats.Cell:
    binary = bool(np.isin(values, (0.0, 1.0)).all())
    return stats.Cell(tuple(range(values.shape[0])), tuple(range(values.shape[1])), values,
                      np.ones_like(values), 0, binary)


def continuous(rng, prompts, seed_sd, prompt_sd, noise_sd):
    return (rng.normal(0, seed_sd, (3, 1)) + rng.normal(0, prompt_sd, (1, prompts))
            + rng.normal(0, noise_sd, (3, prompts)))


def binary(rng, prompts, logit, seed_sd, prompt_sd):
    p = 1 / (1 + np.exp(-(logit + rng.normal(0, seed_sd, (3, 1)) + rng.normal(0, prompt_sd, (1, prompts)))))
    return (rng.random((3, prompts)) < p).astype(float)


def true_rate(logit, seed_sd, prompt_sd) -> float:
    rng = np.random.default_rng(99)
    effects = logit + rng.normal(0, seed_sd, (400, 1)) + rng.normal(0, prompt_sd, (1, 4000))
    return float((1 / (1 + np.exp(-effects))).mean())


def designs():
    for sd in [(0.1, 1, 0.5), (0.3, 1, 1), (0.5, 0.5, 0.5), (1.0, 0.3, 0.5), (2, 0.1, 0.1), (0, 0, 1)]:
        yield (f"continuous, 60 prompts, SD seed {sd[0]} prompt {sd[1]} noise {sd[2]}",
               lambda r, sd=sd: [continuous(r, 60, *sd)], 0.0)
    for logit, seed_sd, prompt_sd, prompts in [(0, 0.2, 1.5, 120), (0, 1.0, 1.5, 120), (0, 0, 0, 120),
                                               (-2, 0.5, 1, 60), (1, 1.0, 0.5, 20)]:
        truth = true_rate(logit, seed_sd, prompt_sd)
        yield (f"rate {truth:.2f}, {prompts} prompts, logit SD seed {seed_sd} prompt {prompt_sd}",
               lambda r, a=(prompts, logit, seed_sd, prompt_sd): [binary(r, *a)], truth)
    for seed_sd in (0.3, 0.8):
        def paired(r, seed_sd=seed_sd):
            shared = r.normal(0, 1, (1, 60))
            return [0.3 + shared + continuous(r, 60, seed_sd, 0.3, 0.5), shared + continuous(r, 60, seed_sd, 0.3, 0.5)]
        yield f"paired difference, 60 prompts, 3 shared seeds, seed SD {seed_sd}", paired, 0.3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", type=int, default=400, help="simulated data sets per design")
    p.add_argument("--resamples", type=int, default=1000)
    a = p.parse_args()
    print("| design (3 seeds) | coverage, seeds resampled (old) | coverage, today | width today / old |")
    print("|---|---|---|---|")
    for name, simulate, truth in designs():
        rng = np.random.default_rng(1)
        covered, widths = {"old": 0, "new": 0}, {"old": [], "new": []}
        for d in range(a.datasets):
            cells = [crossed(v) for v in simulate(rng)]
            if len(cells) == 1:
                ci = stats.cell_ci(cells[0], a.resamples, 0.95, seed=d)
            else:
                ci = stats.difference_ci(*cells, a.resamples, 0.95, seed=d)
            for method, (low, high) in (("old", pigeonhole(cells, a.resamples, 0.95, d)),
                                        ("new", (ci["low"], ci["high"]))):
                covered[method] += low <= truth <= high
                widths[method].append(high - low)
        ratio = np.median(widths["new"]) / np.median(widths["old"])
        print(f"| {name} | {covered['old'] / a.datasets:.3f} | {covered['new'] / a.datasets:.3f} | {ratio:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
