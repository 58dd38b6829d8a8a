"""Confidence intervals for cells of seeds x prompts, and for paired differences.

Every seed of a cell is evaluated on the *same* prompts, so seeds and prompts are crossed
factors, not nested ones, and an interval has two parts:

- prompts: a bootstrap replicate draws prompt indices once (with replacement) and applies them
  to every seed (resampling prompts separately for each seed would treat k seeds as k
  independent prompt samples: k identical copies of one seed would shrink the interval by about
  sqrt(k)); its percentile interval is the prompt part;
- seeds: the delete-one-seed jackknife standard error of the estimate times a t quantile on k - 1
  degrees of freedom. Three seeds are few: resampling them (the pigeonhole bootstrap of crossed
  designs, which this module used before) has 27 equally likely draws, so its 95% interval of the
  seed part was the range of the seed means, which covers the mean over seeds 75% of the time
  (simulated: 0.78 where the seed spread dominates). The t quantile on 2 degrees of freedom (4.30
  instead of 1.96) says how little three seeds tell.

The two half-widths are added in quadrature on each side, as the intervals of two independent
parts of a sum are (the MOVER of Zou and Donner 2008). Where seeds agree the interval is the
prompt bootstrap's; where they disagree it becomes a t-interval over the seed means. It errs on
the wide side: the seed part also holds the seed-by-prompt noise that the prompt part already
counts, and each part keeps its own quantile. Simulated (benchmarks/ci_coverage.py: 3 seeds,
crossed random effects, binary and continuous): coverage 0.955-1.00 where the pigeonhole bootstrap
gave 0.76-1.00; 1.2-1.5 times as wide as before where prompts or noise dominate, 2.5-2.7 times
where seeds do. Welch-
Satterthwaite's pooled degrees of freedom were narrower and covered 0.91 where seeds dominate
(a seed variance estimated small by chance also lowers the quantile); subtracting an ANOVA
estimate of the double-counted noise covered 0.82 on binary data.

Several samples of one prompt (generations at temperature > 0) move with their prompt, and a
seed's mean is the pooled mean of its observations. Missing observations (NaN: a response the
judge could not score) are left out of every mean and counted, never decided.

A difference between two cells that share prompts (a run against the reference, a defense
against `none`, a large budget against a small one) uses the *same* prompt draws for both
cells, and leaves out the same seed of both when both cells have the same seeds (runs of one
seed share their data order), so its interval is the paired interval of the difference. Cells
with other seeds (a three-seed run against the one-seed reference) are independent in their
seeds; a cell of one seed has no seed part.

The point estimate of a cell is the mean of its seed means.

A percentile bootstrap cannot see past its own data: a cell whose every observation is 0 (or 1)
gets the interval [0, 0] whatever its size, and such intervals of a true rate near 0 or 1 cover
it 60-70% of the time instead of 95%. So where the observations are 0/1 decisions (a rate), a
cell's interval is widened to contain the Wilson score interval of its rate, and a difference of
two rates to contain Newcombe's hybrid score interval built from the two (Newcombe 1998, method
10), with n the number of decided responses per seed (seeds evaluate the same prompts, so a
second seed is not counted as more data). Away from 0 and 1 the bootstrap interval is usually
the wider one and is kept. A rate's interval stays within [0, 1], a difference of rates within
[-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NAN_CI = {"value": float("nan"), "low": float("nan"), "high": float("nan")}
Z = {}  # confidence -> two-sided normal quantile (cached)


@dataclass(frozen=True)
class Cell:
    """Observations of one cell. sums, counts: [seeds, prompts] sum and number of non-missing
    observations of each (seed, prompt); missing: NaN observations left out."""

    seeds: tuple
    prompts: tuple
    sums: np.ndarray
    counts: np.ndarray
    missing: int = 0
    binary: bool = False  # every observation is 0 or 1: a rate (its interval has a score floor)

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def on(self, prompts: tuple) -> "Cell":
        """The same cell on another prompt list (prompts it lacks get no observations)."""
        index = {p: i for i, p in enumerate(self.prompts)}
        cols = np.array([index.get(p, len(self.prompts)) for p in prompts], dtype=np.int64)
        zero = np.zeros((len(self.seeds), 1))
        return Cell(self.seeds, tuple(prompts), np.hstack([self.sums, zero])[:, cols],
                    np.hstack([self.counts, zero])[:, cols], self.missing, self.binary)

    @property
    def per_seed(self) -> int:
        """Decided observations per observed seed (the n of a rate's score interval)."""
        seeds = int((self.counts.sum(axis=1) > 0).sum())
        return int(round(self.n / seeds)) if seeds else 0


def make_cell(observations: dict) -> Cell:
    """observations: {seed: {prompt id: sequence of observations}} (NaN = missing)."""
    seeds, prompts, values = [], [], []
    for s, per_seed in observations.items():
        for p, obs in per_seed.items():
            obs = np.asarray(obs, dtype=float).ravel()
            seeds += [s] * len(obs)
            prompts += [p] * len(obs)
            values.append(obs)
    return cell_from_records(seeds, prompts, np.concatenate(values) if values else np.zeros(0))


def cell_from_records(seeds, prompts, values) -> Cell:
    """A cell from parallel sequences: one (seed, prompt id, observation) per record."""
    values = np.asarray(values, dtype=float)
    seed_keys, seed_idx = np.unique(np.asarray(seeds), return_inverse=True)
    prompt_keys, prompt_idx = np.unique(np.asarray(prompts, dtype=object).astype(str), return_inverse=True)
    valid = ~np.isnan(values)
    sums = np.zeros((len(seed_keys), len(prompt_keys)))
    counts = np.zeros_like(sums)
    np.add.at(sums, (seed_idx[valid], prompt_idx[valid]), values[valid])
    np.add.at(counts, (seed_idx[valid], prompt_idx[valid]), 1.0)
    binary = bool(valid.any() and np.isin(values[valid], (0.0, 1.0)).all())
    return Cell(tuple(seed_keys.tolist()), tuple(prompt_keys.tolist()), sums, counts, int((~valid).sum()), binary)


def _seed_means(sums: np.ndarray, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[B, seeds] pooled mean of each seed under prompt multiplicities weights [B, prompts]."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ sums.T) / (weights @ counts.T)


def _point(cell: Cell) -> float:
    means = _seed_means(cell.sums, cell.counts, np.ones((1, len(cell.prompts))))[0]
    means = means[~np.isnan(means)]
    return float(means.mean()) if len(means) else float("nan")


def _prompt_weights(rng, n_prompts: int, resamples: int) -> np.ndarray:
    """[B, prompts] how often each prompt is drawn in each replicate."""
    draws = rng.integers(0, n_prompts, (resamples, n_prompts))
    weights = np.zeros((resamples, n_prompts))
    np.add.at(weights, (np.arange(resamples)[:, None], draws), 1.0)
    return weights


def _mean_over_seeds(per_seed: np.ndarray) -> np.ndarray:
    """[...] mean over the last axis of seed means [..., seeds], leaving out NaN (unobserved) seeds."""
    if not np.isnan(per_seed).any():
        return per_seed.mean(axis=-1)
    counts = (~np.isnan(per_seed)).sum(axis=-1)
    return np.where(counts > 0, np.nansum(per_seed, axis=-1) / np.maximum(counts, 1), np.nan)


def _replicates(cell: Cell, weights: np.ndarray) -> np.ndarray:
    """[B] replicate means of the cell, every seed kept, prompts weighted by weights [B, prompts]."""
    return _mean_over_seeds(_seed_means(cell.sums, cell.counts, weights))


def _leave_one_seed_out(cell: Cell) -> np.ndarray:
    """[seeds] the cell's point estimate with each of its seeds left out in turn."""
    means = _seed_means(cell.sums, cell.counts, np.ones((1, len(cell.prompts))))[0]
    k = len(means)
    return _mean_over_seeds(np.where(np.eye(k, dtype=bool), np.nan, means[None, :]))


@dataclass(frozen=True)
class Replicates:
    """What an interval of a statistic of k cells is computed from (module docstring).

    cells: the cells' observed parts on the prompts every one of them observed (on_shared_prompts);
    points: [k] their point estimates; prompt: [B, k] their bootstrap replicates under the same
    prompt draws, every seed kept; leave_one_out: one [k_g, k] array per seed tuple with k_g >= 2
    seeds, the points with one of its seeds left out of every cell that has that tuple."""

    cells: list
    points: np.ndarray
    prompt: np.ndarray
    leave_one_out: tuple

    @property
    def shared(self) -> int:
        """The number of prompts every cell observed (0: no estimate)."""
        return len(self.cells[0].prompts)


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    replicates = replicates[~np.isnan(replicates)]
    if not len(replicates):
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(replicates, [alpha, 1 - alpha])
    return float(low), float(high)


def _summary(cell: Cell, value: float, low: float, high: float) -> dict:
    return {"value": value, "low": low, "high": high, "n": cell.n, "unscored": int(cell.missing),
            "seeds": int((cell.counts.sum(axis=1) > 0).sum())}


def _observed(cell: Cell) -> Cell:
    """The cell without seeds or prompts that have no observation (all missing)."""
    rows, cols = cell.counts.sum(axis=1) > 0, cell.counts.sum(axis=0) > 0
    return Cell(tuple(s for s, k in zip(cell.seeds, rows) if k), tuple(p for p, k in zip(cell.prompts, cols) if k),
                cell.sums[rows][:, cols], cell.counts[rows][:, cols], cell.missing, cell.binary)


def _z(confidence: float) -> float:
    if confidence not in Z:
        from statistics import NormalDist

        Z[confidence] = NormalDist().inv_cdf(0.5 + confidence / 2)
    return Z[confidence]


def _t(confidence: float, dof: float) -> float:
    """Two-sided t quantile on dof degrees of freedom (the normal one at infinity)."""
    if not np.isfinite(dof):
        return _z(confidence)
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, dof))


def wilson(p: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a rate p observed on n units."""
    if n <= 0 or np.isnan(p):
        return float("nan"), float("nan")
    z = _z(confidence)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def newcombe(p1: float, n1: int, p2: float, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p1 - p2 from the two Wilson intervals (method 10)."""
    l1, u1 = wilson(p1, n1, confidence)
    l2, u2 = wilson(p2, n2, confidence)
    d = p1 - p2
    return float(d - np.hypot(p1 - l1, u2 - p2)), float(d + np.hypot(u1 - p1, p2 - l2))


def _hull(low: float, high: float, floor: tuple[float, float]) -> tuple[float, float]:
    """[low, high] widened to contain `floor` (an interval with a NaN end is left as it is)."""
    if np.isnan(low) or np.isnan(high) or np.isnan(floor[0]) or np.isnan(floor[1]):
        return low, high
    return min(low, floor[0]), max(high, floor[1])


def _within(low: float, high: float, lowest: float, highest: float) -> tuple[float, float]:
    return float(min(max(low, lowest), highest)), float(max(min(high, highest), lowest))


def rate_floor(ci: dict, cell: "Cell", confidence: float) -> dict:
    """A rate's interval widened to its Wilson interval on the cell's responses per seed, within [0, 1]
    (module docstring)."""
    if not cell.binary:
        return ci
    low, high = _hull(ci["low"], ci["high"], wilson(ci["value"], cell.per_seed, confidence))
    return {**ci, **dict(zip(("low", "high"), _within(low, high, 0.0, 1.0)))}


def difference_floor(ci: dict, a: "Cell", b: "Cell", p_a: float, p_b: float, confidence: float) -> dict:
    """A difference of two rates widened to Newcombe's interval, within [-1, 1] (module docstring); a, b on
    the shared prompts."""
    if not (a.binary and b.binary):
        return ci
    low, high = _hull(ci["low"], ci["high"], newcombe(p_a, a.per_seed, p_b, b.per_seed, confidence))
    return {**ci, **dict(zip(("low", "high"), _within(low, high, -1.0, 1.0)))}


def cell_ci(cell: Cell, resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Mean of the cell's seed means and its crossed-bootstrap interval.
    Returns {value, low, high, n, unscored, seeds}; NaNs when there are no observations."""
    cell = _observed(cell)
    if not cell.n:
        return {**NAN_CI, "n": 0, "unscored": int(cell.missing), "seeds": 0}
    if cell.n == 1:
        value = _point(cell)
        ci = {"value": value, "low": value, "high": value}
    else:
        ci = statistic_ci(lambda v: v[..., 0], joint_replicates([cell], resamples, seed), confidence)
    ci = rate_floor(ci, cell, confidence)
    return _summary(cell, ci["value"], ci["low"], ci["high"])


def on_shared_prompts(cells: list[Cell]) -> list[Cell]:
    """The cells' observed parts on the prompts every one of them observed (the cells a paired
    statistic compares)."""
    cells = [_observed(c) for c in cells]
    shared = tuple(sorted(set.intersection(*(set(c.prompts) for c in cells))))
    return [c.on(shared) for c in cells]


def joint_replicates(cells: list[Cell], resamples: int = 1000, seed: int = 0) -> Replicates:
    """The points, prompt replicates and leave-one-seed-out points of several cells on the prompts
    every one of them observed, under the *same* prompt draws, leaving out the same seed of cells with
    the same seeds: any statistic of the k values (a difference, a ratio, a range) gets a paired
    interval from `statistic_ci`."""
    cells = on_shared_prompts(cells)
    shared = cells[0].prompts
    if not shared:
        return Replicates(cells, np.full(len(cells), np.nan), np.full((resamples, len(cells)), np.nan), ())
    points = np.array([_point(c) for c in cells])
    weights = _prompt_weights(np.random.default_rng(seed), len(shared), resamples)
    prompt = np.stack([_replicates(c, weights) for c in cells], axis=1)
    leave_one_out = []
    for seeds in dict.fromkeys(c.seeds for c in cells):
        if len(seeds) < 2:
            continue
        rows = np.repeat(points[None, :], len(seeds), axis=0)
        for j, c in enumerate(cells):
            if c.seeds == seeds:
                rows[:, j] = _leave_one_seed_out(c)
        leave_one_out.append(rows)
    return Replicates(cells, points, prompt, tuple(leave_one_out))


def statistic_ci(statistic, replicates: Replicates, confidence: float = 0.95) -> dict:
    """{value, low, high} of statistic(values [..., k]) -> [...] of the cells behind `replicates`: the
    percentile interval of its prompt replicates, widened by its delete-one-seed jackknife standard error
    times a t quantile on k - 1 degrees of freedom per seed tuple (module docstring)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(statistic(replicates.points))
        low, high = _interval(np.asarray(statistic(replicates.prompt), dtype=float), confidence)
        parts = [np.asarray(statistic(rows), dtype=float) for rows in replicates.leave_one_out]
    if np.isnan(value) or np.isnan(low) or not all(np.isfinite(p).all() for p in parts):
        # no estimate, or one with a seed left out is undefined (a ratio over 0)
        return {"value": value, "low": float("nan"), "high": float("nan")}
    seed_half = float(np.sqrt(sum(_t(confidence, len(p) - 1) ** 2 * (len(p) - 1) / len(p) * ((p - p.mean()) ** 2).sum()
                                  for p in parts)))
    if seed_half == 0:
        return {"value": value, "low": low, "high": high}
    return {"value": value, "low": value - float(np.hypot(max(value - low, 0.0), seed_half)),
            "high": value + float(np.hypot(max(high - value, 0.0), seed_half))}


def difference_ci(a: Cell, b: Cell, resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """mean(a) - mean(b) with the paired interval over their shared prompts (and shared seeds).

    Returns {value, low, high, n, unscored, seeds} where n counts a's observations on prompts that
    b also has; NaNs when the cells share no observed prompt."""
    replicates = joint_replicates([a, b], resamples, seed)
    ci = statistic_ci(lambda v: v[..., 0] - v[..., 1], replicates, confidence)
    observed, other = replicates.cells
    ci = difference_floor(ci, observed, other, *replicates.points, confidence)
    shared = replicates.shared
    return {**ci, "n": observed.n if shared else 0, "unscored": int(a.missing + b.missing),
            "seeds": int((observed.counts.sum(axis=1) > 0).sum()) if shared else 0}


def bootstrap_ci(groups: list, resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """One seed's observations grouped by prompt: the prompt (cluster) bootstrap of the mean.

    groups: one sequence of observations per prompt (NaNs are missing, empty groups ignored).
    Returns {value, low, high, n, unscored}."""
    cell = make_cell({0: {i: g for i, g in enumerate(groups)}})
    ci = cell_ci(cell, resamples, confidence, seed)
    return {k: ci[k] for k in ("value", "low", "high", "n", "unscored")}
