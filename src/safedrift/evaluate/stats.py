"""Bootstrap confidence intervals for cells of seeds x prompts, and for paired differences.

Every seed of a cell is evaluated on the *same* prompts, so seeds and prompts are crossed
factors, not nested ones. A bootstrap replicate therefore draws prompt indices once (with
replacement) and applies them to every seed, and draws seeds with replacement (the
"pigeonhole" bootstrap of crossed designs, Owen 2007). Resampling prompts separately for each
seed would treat k seeds as k independent prompt samples: k identical copies of one seed would
then shrink the interval by about sqrt(k).

Several samples of one prompt (generations at temperature > 0) move with their prompt, and a
seed's mean is the pooled mean of its observations. Missing observations (NaN: a response the
judge could not score) are left out of every mean and counted, never decided.

A difference between two cells that share prompts (a run against the reference, a defense
against `none`, a large budget against a small one) uses the *same* prompt draws for both
cells, and the same seed draws when both cells have the same seeds (runs of one seed share
their data order), so its interval is the paired interval of the difference.

The point estimate of a cell is the mean of its seed means; intervals are percentile intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NAN_CI = {"value": float("nan"), "low": float("nan"), "high": float("nan")}


@dataclass(frozen=True)
class Cell:
    """Observations of one cell. sums, counts: [seeds, prompts] sum and number of non-missing
    observations of each (seed, prompt); missing: NaN observations left out."""

    seeds: tuple
    prompts: tuple
    sums: np.ndarray
    counts: np.ndarray
    missing: int = 0

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def on(self, prompts: tuple) -> "Cell":
        """The same cell on another prompt list (prompts it lacks get no observations)."""
        index = {p: i for i, p in enumerate(self.prompts)}
        cols = np.array([index.get(p, len(self.prompts)) for p in prompts], dtype=np.int64)
        zero = np.zeros((len(self.seeds), 1))
        return Cell(self.seeds, tuple(prompts), np.hstack([self.sums, zero])[:, cols],
                    np.hstack([self.counts, zero])[:, cols], self.missing)


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
    return Cell(tuple(seed_keys.tolist()), tuple(prompt_keys.tolist()), sums, counts, int((~valid).sum()))


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


def _replicates(cell: Cell, weights: np.ndarray, seed_draws: np.ndarray) -> np.ndarray:
    """[B] replicate means: seeds drawn by seed_draws [B, k], prompts weighted by weights."""
    per_seed = _seed_means(cell.sums, cell.counts, weights)  # [B, seeds]
    picked = np.take_along_axis(per_seed, seed_draws, axis=1)
    if not np.isnan(picked).any():
        return picked.mean(axis=1)
    counts = (~np.isnan(picked)).sum(axis=1)
    return np.where(counts > 0, np.nansum(picked, axis=1) / np.maximum(counts, 1), np.nan)


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
                cell.sums[rows][:, cols], cell.counts[rows][:, cols], cell.missing)


def cell_ci(cell: Cell, resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Mean of the cell's seed means and its crossed-bootstrap interval.
    Returns {value, low, high, n, unscored, seeds}; NaNs when there are no observations."""
    cell = _observed(cell)
    if not cell.n:
        return {**NAN_CI, "n": 0, "unscored": int(cell.missing), "seeds": 0}
    value = _point(cell)
    if cell.n == 1:
        return _summary(cell, value, value, value)
    rng = np.random.default_rng(seed)
    weights = _prompt_weights(rng, len(cell.prompts), resamples)
    seed_draws = rng.integers(0, len(cell.seeds), (resamples, len(cell.seeds)))
    return _summary(cell, value, *_interval(_replicates(cell, weights, seed_draws), confidence))


def joint_replicates(cells: list[Cell], resamples: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Point estimates [k] and bootstrap replicates [B, k] of several cells under the *same*
    prompt draws (over the prompts every cell observed) and the same seed draws for cells with
    the same seeds: any statistic of the k values (a difference, a ratio, a range) computed per
    replicate gets a paired interval. Also returns the number of shared prompts (0: no estimate)."""
    cells = [_observed(c) for c in cells]
    shared = tuple(sorted(set.intersection(*(set(c.prompts) for c in cells))))
    if not shared:
        return np.full(len(cells), np.nan), np.full((resamples, len(cells)), np.nan), 0
    cells = [c.on(shared) for c in cells]
    points = np.array([_point(c) for c in cells])
    rng = np.random.default_rng(seed)
    weights = _prompt_weights(rng, len(shared), resamples)
    draws: dict[tuple, np.ndarray] = {}
    for c in cells:
        if c.seeds not in draws:
            draws[c.seeds] = rng.integers(0, len(c.seeds), (resamples, len(c.seeds)))
    replicates = np.stack([_replicates(c, weights, draws[c.seeds]) for c in cells], axis=1)
    return points, replicates, len(shared)


def statistic_ci(value: float, replicates: np.ndarray, confidence: float = 0.95) -> dict:
    """{value, low, high} of a statistic from its point estimate and its bootstrap replicates."""
    low, high = _interval(np.asarray(replicates, dtype=float), confidence)
    if np.isnan(value):
        low = high = float("nan")
    return {"value": float(value), "low": low, "high": high}


def difference_ci(a: Cell, b: Cell, resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """mean(a) - mean(b) with the paired interval over their shared prompts (and shared seeds).

    Returns {value, low, high, n, unscored, seeds} where n counts a's observations on prompts that
    b also has; NaNs when the cells share no observed prompt."""
    points, replicates, shared = joint_replicates([a, b], resamples, seed)
    ci = statistic_ci(points[0] - points[1], replicates[:, 0] - replicates[:, 1], confidence)
    observed = _observed(a).on(tuple(sorted(set(_observed(a).prompts) & set(_observed(b).prompts))))
    return {**ci, "n": observed.n if shared else 0, "unscored": int(a.missing + b.missing),
            "seeds": int((observed.counts.sum(axis=1) > 0).sum()) if shared else 0}


def bootstrap_ci(groups: list, resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """One seed's observations grouped by prompt: the prompt (cluster) bootstrap of the mean.

    groups: one sequence of observations per prompt (NaNs are missing, empty groups ignored).
    Returns {value, low, high, n, unscored}."""
    cell = make_cell({0: {i: g for i, g in enumerate(groups)}})
    ci = cell_ci(cell, resamples, confidence, seed)
    return {k: ci[k] for k in ("value", "low", "high", "n", "unscored")}
