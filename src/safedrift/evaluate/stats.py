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

A percentile bootstrap cannot see past its own data: a cell whose every observation is 0 (or 1)
gets the interval [0, 0] whatever its size, and such intervals of a true rate near 0 or 1 cover
it 60-70% of the time instead of 95%. So where the observations are 0/1 decisions (a rate), a
cell's interval is widened to contain the Wilson score interval of its rate, and a difference of
two rates to contain Newcombe's hybrid score interval built from the two (Newcombe 1998, method
10), with n the number of decided responses per seed (seeds evaluate the same prompts, so a
second seed is not counted as more data). Away from 0 and 1 the bootstrap interval is usually
the wider one and is kept.

Three seeds are few: the seed part of a crossed interval is then about the range of the seed
means, which covers the mean over seeds 75% of the time on its own, so where seeds disagree much
more than prompts (fine-tuning that lands in different places per seed) a 95% interval covers
less than 95% (simulated: 0.78 when the seed spread dominates, 0.93-0.96 where prompts dominate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NAN_CI = {"value": float("nan"), "low": float("nan"), "high": float("nan")}
Z = {}  # confidence -> two-sided normal quantile (cached: scipy is not a dependency)


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
                cell.sums[rows][:, cols], cell.counts[rows][:, cols], cell.missing, cell.binary)


def _z(confidence: float) -> float:
    if confidence not in Z:
        from statistics import NormalDist

        Z[confidence] = NormalDist().inv_cdf(0.5 + confidence / 2)
    return Z[confidence]


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


def rate_floor(ci: dict, cell: "Cell", confidence: float) -> dict:
    """A rate's interval widened to its Wilson interval on the cell's responses per seed (module docstring)."""
    if not cell.binary:
        return ci
    low, high = _hull(ci["low"], ci["high"], wilson(ci["value"], cell.per_seed, confidence))
    return {**ci, "low": low, "high": high}


def difference_floor(ci: dict, a: "Cell", b: "Cell", p_a: float, p_b: float, confidence: float) -> dict:
    """A difference of two rates widened to Newcombe's interval (module docstring); a, b on the shared prompts."""
    if not (a.binary and b.binary):
        return ci
    low, high = _hull(ci["low"], ci["high"], newcombe(p_a, a.per_seed, p_b, b.per_seed, confidence))
    return {**ci, "low": low, "high": high}


def cell_ci(cell: Cell, resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Mean of the cell's seed means and its crossed-bootstrap interval.
    Returns {value, low, high, n, unscored, seeds}; NaNs when there are no observations."""
    cell = _observed(cell)
    if not cell.n:
        return {**NAN_CI, "n": 0, "unscored": int(cell.missing), "seeds": 0}
    value = _point(cell)
    if cell.n == 1:
        low = high = value
    else:
        rng = np.random.default_rng(seed)
        weights = _prompt_weights(rng, len(cell.prompts), resamples)
        seed_draws = rng.integers(0, len(cell.seeds), (resamples, len(cell.seeds)))
        low, high = _interval(_replicates(cell, weights, seed_draws), confidence)
    ci = rate_floor({"value": value, "low": low, "high": high}, cell, confidence)
    return _summary(cell, value, ci["low"], ci["high"])


def on_shared_prompts(cells: list[Cell]) -> list[Cell]:
    """The cells' observed parts on the prompts every one of them observed (the cells a paired
    statistic compares)."""
    cells = [_observed(c) for c in cells]
    shared = tuple(sorted(set.intersection(*(set(c.prompts) for c in cells))))
    return [c.on(shared) for c in cells]


def joint_replicates(cells: list[Cell], resamples: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Point estimates [k] and bootstrap replicates [B, k] of several cells under the *same*
    prompt draws (over the prompts every cell observed) and the same seed draws for cells with
    the same seeds: any statistic of the k values (a difference, a ratio, a range) computed per
    replicate gets a paired interval. Also returns the number of shared prompts (0: no estimate)."""
    cells = on_shared_prompts(cells)
    shared = cells[0].prompts
    if not shared:
        return np.full(len(cells), np.nan), np.full((resamples, len(cells)), np.nan), 0
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
    observed, other = on_shared_prompts([a, b])
    ci = difference_floor(ci, observed, other, points[0], points[1], confidence)
    return {**ci, "n": observed.n if shared else 0, "unscored": int(a.missing + b.missing),
            "seeds": int((observed.counts.sum(axis=1) > 0).sum()) if shared else 0}


def bootstrap_ci(groups: list, resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """One seed's observations grouped by prompt: the prompt (cluster) bootstrap of the mean.

    groups: one sequence of observations per prompt (NaNs are missing, empty groups ignored).
    Returns {value, low, high, n, unscored}."""
    cell = make_cell({0: {i: g for i, g in enumerate(groups)}})
    ci = cell_ci(cell, resamples, confidence, seed)
    return {k: ci[k] for k in ("value", "low", "high", "n", "unscored")}
