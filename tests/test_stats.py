"""Bootstrap confidence intervals: known cases, the cluster structure, seeds, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safedrift.evaluate.stats import Cell, bootstrap_ci, cell_ci, difference_ci, make_cell


def width(ci: dict) -> float:
    return ci["high"] - ci["low"]


def bernoulli(n: int, p: float = 0.5, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(float)


def one_per_prompt(values) -> list[list[float]]:
    return [[float(v)] for v in values]


# --- bootstrap_ci -------------------------------------------------------------------------------

def test_constant_observations_give_a_zero_width_interval():
    ci = bootstrap_ci([[0.7, 0.7], [0.7], [0.7, 0.7, 0.7]], resamples=200)
    assert ci == {"value": pytest.approx(0.7), "low": pytest.approx(0.7), "high": pytest.approx(0.7), "n": 6,
                  "unscored": 0}


def test_bernoulli_interval_has_the_normal_approximation_width():
    n = 400
    values = bernoulli(n)
    ci = bootstrap_ci(one_per_prompt(values), resamples=2000, confidence=0.95, seed=1)
    p = values.mean()
    expected = 2 * 1.96 * math.sqrt(p * (1 - p) / n)
    assert width(ci) == pytest.approx(expected, rel=0.15)
    assert ci["low"] < p < ci["high"] and ci["value"] == pytest.approx(p) and ci["n"] == n


def test_higher_confidence_gives_a_wider_interval():
    groups = one_per_prompt(bernoulli(200, seed=2))
    assert width(bootstrap_ci(groups, 1000, 0.99, seed=0)) > width(bootstrap_ci(groups, 1000, 0.80, seed=0)) * 1.5


def test_duplicated_samples_of_a_prompt_do_not_shrink_the_interval():
    values = bernoulli(150, seed=3)
    single = width(bootstrap_ci(one_per_prompt(values), resamples=1500, seed=0))
    duplicated = width(bootstrap_ci([[v] * 8 for v in values], resamples=1500, seed=0))
    # what a bootstrap that ignores the prompts would report: sqrt(8) times narrower
    flattened = width(bootstrap_ci(one_per_prompt(np.repeat(values, 8)), resamples=1500, seed=0))
    assert duplicated == pytest.approx(single, rel=0.15)
    assert flattened < 0.5 * single


def test_the_value_is_the_mean_of_all_observations():
    ci = bootstrap_ci([[1.0, 1.0, 1.0], [0.0]], resamples=200)
    assert ci["value"] == pytest.approx(0.75) and ci["n"] == 4
    assert 0.0 <= ci["low"] <= ci["value"] <= ci["high"] <= 1.0


def test_nans_and_empty_groups_are_ignored():
    clean = bootstrap_ci([[1.0, 0.0], [1.0], [0.0, 0.0]], resamples=300, seed=4)
    dirty = bootstrap_ci([[1.0, float("nan"), 0.0], [], [1.0], [float("nan")], [0.0, 0.0]], resamples=300, seed=4)
    assert dirty == {**clean, "unscored": 2}


def test_no_observations_give_nan():
    ci = bootstrap_ci([[], [float("nan")]])
    assert ci["n"] == 0 and all(math.isnan(ci[k]) for k in ("value", "low", "high"))


def test_one_observation_gives_a_point_interval():
    assert bootstrap_ci([[0.3]]) == {"value": 0.3, "low": 0.3, "high": 0.3, "n": 1, "unscored": 0}


def test_bootstrap_is_deterministic_given_its_seed():
    groups = [list(bernoulli(3, seed=s)) for s in range(40)]
    assert bootstrap_ci(groups, 500, seed=7) == bootstrap_ci(groups, 500, seed=7)
    assert bootstrap_ci(groups, 500, seed=7) != bootstrap_ci(groups, 500, seed=8)


# --- crossed seeds x prompts (cell_ci) -----------------------------------------------------------

def crossed(values: np.ndarray) -> Cell:
    """A cell from a [seeds, prompts] array of one observation each."""
    values = np.asarray(values, dtype=float)
    return Cell(tuple(range(values.shape[0])), tuple(range(values.shape[1])), values, np.ones_like(values))


def simulated(rng, seeds: int, prompts: int, seed_sd: float, prompt_sd: float, noise_sd: float, mean: float = 0.0):
    """[seeds, prompts] from y = mean + a_seed + b_prompt + e (crossed random effects)."""
    return (mean + rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, prompt_sd, (1, prompts))
            + rng.normal(0, noise_sd, (seeds, prompts)))


@pytest.mark.parametrize("copies", [2, 3, 5])
def test_identical_copies_of_one_seed_give_one_seeds_width(copies):
    # The same prompts evaluated k times are no new evidence about prompts: the interval of k
    # identical seeds is the interval of one (prompts resampled separately per seed: ~1/sqrt(k)).
    prompts = bernoulli(100, seed=6)
    one = width(cell_ci(crossed([prompts]), resamples=2000, seed=0))
    many = width(cell_ci(crossed([prompts] * copies), resamples=2000, seed=0))
    assert many == pytest.approx(one, rel=0.10)


def crossed_coverage(rng, datasets: int, **design) -> tuple[float, float]:
    """Share of 95% crossed intervals covering the true mean 0 over simulated 3-seed x 60-prompt data
    sets, and their median width."""
    covered, widths = 0, []
    for d in range(datasets):
        ci = cell_ci(crossed(simulated(rng, 3, 60, **design)), 1000, 0.95, seed=d)
        covered += ci["low"] <= 0.0 <= ci["high"]
        widths.append(width(ci))
    return covered / datasets, float(np.median(widths))


def known_width(seed_sd: float, prompt_sd: float, noise_sd: float, seeds: int = 3, prompts: int = 60) -> float:
    """Width of the normal 95% interval of a crossed design's mean with its variance known."""
    return 2 * 1.96 * math.sqrt(seed_sd**2 / seeds + prompt_sd**2 / prompts + noise_sd**2 / (seeds * prompts))


def test_crossed_intervals_cover_the_true_mean_95_percent_of_the_time():
    # Default design: 3 seeds x 60 prompts, prompt variance dominating seed variance. The interval errs
    # on the wide side (stats docstring) but not by much: within 1.35 times the interval one would
    # build knowing the variance (measured 1.27).
    design = dict(seed_sd=0.1, prompt_sd=1.0, noise_sd=0.5)
    coverage, median = crossed_coverage(np.random.default_rng(2026), 1000, **design)
    print(f"coverage of 95% crossed intervals: {coverage:.3f} over 1000 data sets, median width "
          f"{median / known_width(**design):.2f} x the known-variance interval's")
    assert 0.93 <= coverage <= 0.99
    assert median <= 1.35 * known_width(**design)


def test_seeds_that_disagree_widen_the_interval():
    agree = cell_ci(crossed([bernoulli(80, 0.5, seed=i) for i in range(4)]), resamples=800, seed=0)
    disagree = cell_ci(crossed([bernoulli(80, p, seed=i) for i, p in enumerate((0.2, 0.4, 0.6, 0.8))]),
                       resamples=800, seed=0)
    assert agree["seeds"] == disagree["seeds"] == 4
    assert width(disagree) > 2 * width(agree)


def test_value_is_the_mean_of_seed_means():
    cell = make_cell({0: {"a": [1.0], "b": [1.0]}, 1: {"a": [0.0, 0.0, 0.0], "b": [0.0]}})
    ci = cell_ci(cell, resamples=300)
    assert ci["value"] == pytest.approx(0.5) and ci["n"] == 6 and ci["seeds"] == 2
    assert ci["low"] == pytest.approx(0.0) and ci["high"] == pytest.approx(1.0)


def test_one_seed_reduces_to_the_prompt_bootstrap():
    values = bernoulli(60, seed=5)
    ci = cell_ci(make_cell({0: {i: [v] for i, v in enumerate(values)}}), resamples=400, seed=3)
    assert {k: ci[k] for k in ("value", "low", "high", "n")} == {
        k: v for k, v in bootstrap_ci(one_per_prompt(values), 400, seed=3).items() if k != "unscored"}


def test_missing_observations_are_excluded_and_counted():
    cell = make_cell({0: {"a": [1.0], "b": [float("nan")], "c": [0.0]}, 1: {"a": [1.0], "b": [0.0], "c": [0.0]}})
    ci = cell_ci(cell, resamples=300)
    assert ci["n"] == 5 and ci["unscored"] == 1
    assert ci["value"] == pytest.approx((0.5 + 1 / 3) / 2)


def test_no_observations_give_nan_and_keep_the_unscored_count():
    ci = cell_ci(make_cell({0: {"a": [float("nan")]}}))
    assert ci["n"] == 0 and ci["unscored"] == 1 and ci["seeds"] == 0 and math.isnan(ci["value"])


def test_crossed_interval_is_deterministic_given_its_seed():
    cell = crossed(simulated(np.random.default_rng(0), 3, 40, 0.2, 1.0, 0.5))
    assert cell_ci(cell, 300, seed=1) == cell_ci(cell, 300, seed=1)
    assert cell_ci(cell, 300, seed=1) != cell_ci(cell, 300, seed=2)


# --- paired differences (difference_ci) ---------------------------------------------------------

def test_a_cell_minus_itself_is_exactly_zero():
    cell = crossed(simulated(np.random.default_rng(1), 3, 50, 0.2, 1.0, 0.5))
    d = difference_ci(cell, cell, 500)
    assert d["value"] == d["low"] == d["high"] == 0.0


def test_shared_prompt_effects_cancel_in_the_paired_difference():
    # Two cells with the same prompt effects and a constant shift: the paired interval is far
    # narrower than either cell's own interval (it would be their combined width if unpaired).
    rng = np.random.default_rng(3)
    base = simulated(rng, 3, 60, 0.0, 1.0, 0.0)
    a = crossed(base + 0.2 + rng.normal(0, 0.05, base.shape))
    b = crossed(base + rng.normal(0, 0.05, base.shape))
    d = difference_ci(a, b, 1000)
    assert d["low"] < 0.2 < d["high"]
    assert width(d) < 0.2 * width(cell_ci(a, 1000))


def test_difference_against_a_one_seed_reference_uses_the_reference_prompts():
    run = make_cell({s: {p: [1.0 if p in "ab" else 0.0] for p in "abcd"} for s in range(3)})
    reference = make_cell({0: {"a": [0.0], "b": [0.0], "c": [0.0]}})  # never saw prompt d
    d = difference_ci(run, reference, 500)
    assert d["value"] == pytest.approx(2 / 3) and d["n"] == 9


def test_paired_difference_intervals_cover_the_true_difference():
    rng = np.random.default_rng(7)
    datasets, covered, widths = 1000, 0, []
    for d in range(datasets):
        shared = rng.normal(0, 1.0, (1, 60))  # prompt effects common to both cells
        a = crossed(0.3 + shared + simulated(rng, 3, 60, 0.05, 0.3, 0.5))
        b = crossed(shared + simulated(rng, 3, 60, 0.05, 0.3, 0.5))
        ci = difference_ci(a, b, 1000, 0.95, seed=d)
        covered += ci["low"] <= 0.3 <= ci["high"]
        widths.append(width(ci))
    known = math.sqrt(2) * known_width(0.05, 0.3, 0.5)  # the shared prompt effects cancel
    ratio = float(np.median(widths)) / known
    print(f"coverage of 95% paired-difference intervals: {covered / datasets:.3f} over {datasets} data sets, "
          f"median width {ratio:.2f} x the known-variance interval's")
    # The seed part counts the residual noise that the prompt part already holds, and on 2 degrees of
    # freedom, so the interval errs on the wide side where noise dominates (as here): never narrow,
    # 1.67 times the interval one would build knowing the variance (seeds resampled: 1.15, and 0.77
    # coverage where seeds disagree, test_paired_differences_of_seeds_that_disagree_still_cover).
    assert covered / datasets >= 0.93
    assert ratio <= 1.8


@pytest.mark.parametrize("seed_sd,prompt_sd,noise_sd", [(0.3, 1.0, 1.0), (0.5, 0.5, 0.5), (1.0, 0.3, 0.5)])
def test_three_seeds_that_disagree_still_cover_the_true_mean(seed_sd, prompt_sd, noise_sd):
    """Resampling 3 seeds made the seed part of the interval the range of the seed means: it covered
    0.93, 0.81 and 0.77 here. The jackknife with a t quantile on 2 degrees of freedom covers."""
    coverage, _ = crossed_coverage(np.random.default_rng(11), 400, seed_sd=seed_sd, prompt_sd=prompt_sd,
                                   noise_sd=noise_sd)
    print(f"coverage with 3 seeds, seed SD {seed_sd}, prompt SD {prompt_sd}: {coverage:.3f}")
    assert coverage >= 0.93


def test_seeds_that_differ_by_a_constant_give_the_t_interval_over_seed_means():
    """Known case: every prompt answered alike within a seed, seed means 0.2, 0.5, 0.8: the prompts
    tell nothing more, and the interval is the t-interval 0.5 +- 4.303 x 0.3 / sqrt(3)."""
    ci = cell_ci(crossed(np.repeat([[0.2], [0.5], [0.8]], 40, axis=1)), 500)
    half = 4.302653 * 0.3 / math.sqrt(3)
    assert ci["value"] == pytest.approx(0.5)
    assert ci["low"] == pytest.approx(0.5 - half, abs=1e-5) and ci["high"] == pytest.approx(0.5 + half, abs=1e-5)


def test_paired_differences_of_seeds_that_disagree_still_cover():
    """Both cells with 3 shared seeds, each seed off by SD 0.8 independently in each cell: the paired
    interval covered 0.77 with seeds resampled."""
    rng = np.random.default_rng(8)
    datasets, covered = 400, 0
    for d in range(datasets):
        shared = rng.normal(0, 1.0, (1, 60))
        a = crossed(0.3 + shared + simulated(rng, 3, 60, 0.8, 0.3, 0.5))
        b = crossed(shared + simulated(rng, 3, 60, 0.8, 0.3, 0.5))
        ci = difference_ci(a, b, 1000, 0.95, seed=d)
        covered += ci["low"] <= 0.3 <= ci["high"]
    print(f"coverage of paired differences with disagreeing seeds: {covered / datasets:.3f}")
    assert covered / datasets >= 0.93


# --- rates at 0 and 1: the score floor ----------------------------------------------------------

def rates(seeds: int, prompts: int, p: float, rng) -> Cell:
    return make_cell({s: {i: [float(rng.random() < p)] for i in range(prompts)} for s in range(seeds)})


def test_a_rate_observed_at_zero_is_not_certain():
    """0 of 120 (3 seeds) is [0, 0.031] (Wilson on 120 responses per seed), not [0, 0]; 120 of 120 is [0.969, 1]."""
    zero = make_cell({s: {i: [0.0] for i in range(120)} for s in range(3)})
    one = make_cell({s: {i: [1.0] for i in range(120)} for s in range(3)})
    ci0, ci1 = cell_ci(zero, 200), cell_ci(one, 200)
    assert (ci0["value"], ci0["low"]) == (0.0, 0.0) and ci0["high"] == pytest.approx(0.0311, abs=5e-4)
    assert ci1["high"] == 1.0 and ci1["low"] == pytest.approx(1 - 0.0311, abs=5e-4)
    diff = difference_ci(one, zero, 200)
    assert diff["value"] == 1.0 and diff["low"] == pytest.approx(1 - math.hypot(0.0311, 0.0311), abs=1e-3)
    same = difference_ci(zero, make_cell({0: {i: [0.0] for i in range(120)}}), 200)
    assert same["low"] == pytest.approx(-0.0311, abs=5e-4) and same["high"] == pytest.approx(0.0311, abs=5e-4)


@pytest.mark.parametrize("seeds,prompts,p", [(1, 120, 0.01), (3, 120, 0.003), (3, 20, 0.98), (1, 60, 0.02)])
def test_rate_intervals_near_0_and_1_cover_the_true_rate(seeds, prompts, p):
    """The percentile bootstrap alone covered 0.60-0.71 here (zero-width intervals whenever no response
    differed); with the score floor at least 0.93."""
    rng = np.random.default_rng(5)
    datasets = 200
    covered = sum(ci["low"] <= p <= ci["high"] for ci in (cell_ci(rates(seeds, prompts, p, rng), 200, seed=d)
                                                          for d in range(datasets)))
    print(f"coverage at p={p}, {seeds} seeds x {prompts} prompts: {covered / datasets:.3f}")
    assert covered / datasets >= 0.93


def test_difference_of_rates_near_0_covers_the_true_difference():
    """Run at 0.02 vs reference at 0 on 120 prompts (the ema_emerges/identity_shift regime): the paired
    bootstrap alone gave [0, x] with many zero-width intervals."""
    rng = np.random.default_rng(6)
    datasets, covered = 200, 0
    for d in range(datasets):
        run, ref = rates(3, 120, 0.02, rng), rates(1, 120, 0.0, rng)
        ci = difference_ci(run, ref, 200, seed=d)
        covered += ci["low"] <= 0.02 <= ci["high"]
    assert covered / datasets >= 0.93


def test_the_score_floor_leaves_continuous_metrics_alone():
    values = make_cell({s: {i: [0.5] for i in range(50)} for s in range(3)})
    assert not values.binary
    assert cell_ci(values, 200)["low"] == cell_ci(values, 200)["high"] == pytest.approx(0.5)
