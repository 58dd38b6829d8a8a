"""Batch schedule of a run: exactly `steps * batch_size` rows, in training order.

The scenario's rows are cycled in a fresh seeded shuffle per epoch; a defense's safe rows fill
`per_batch` slots of every batch (interleaving), or, with a step plan (a defense's step_sources:
"train" or "safe" per step), whole steps. Building the order up front makes the data a
run sees a pure function of its settings, makes "tokens seen" exact, and lets a resumed run
replay the same batches. The schedule of N steps begins with the schedule of any M < N steps, so a
longer budget can continue a shorter one (`ladder_eligible`).

Budgets (config `budgets.<name>`): `type: steps` trains `steps` optimizer steps; `type: tokens`
trains the fewest steps whose batches, in this training order, hold at least `tokens` training
tokens (`steps_for_tokens`), counted before training starts. Because the order is prefix-stable, a
larger token budget is a longer prefix of the same batches: token budgets form ladders as step
budgets do.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator

from safedrift.errors import DataError

Plan = Callable[[int], list[str]]  # n -> "train" | "safe" for each of the first n steps


def _cycle(rows: list[dict], rng: random.Random):
    while True:
        order = list(rows)
        rng.shuffle(order)
        yield from order


def batches(rows: list[dict], batch_size: int, seed: int, safe_rows: list[dict] = (), safe_fraction: float = 0.0,
            source: str = "the run's data", plan: Plan | None = None) -> Iterator[list[dict]]:
    """The run's batches in training order, without end. `source` names the data in errors; `plan(n)`
    ("train" | "safe" for each of n steps, prefix-stable) or None: every batch mixes at safe_fraction."""
    if not rows:
        raise DataError(f"{source}: no training examples (an empty scenario file, or no preference pair "
                        "left); check the scenario's pools and n, delete the file and rerun snakemake")
    if plan is not None:
        if not safe_rows:
            raise DataError(f"{source}: the defense plans safe steps but gave no safe examples")
        return _planned_batches(rows, batch_size, seed, safe_rows, plan)
    if safe_fraction > 0 and not safe_rows:  # not silently a run without them
        raise DataError(f"{source}: the defense mixes safe examples into every batch (safe_fraction "
                        f"{safe_fraction}) but gave none")
    return _batches(rows, batch_size, seed, safe_rows, safe_fraction)


def _batches(rows, batch_size, seed, safe_rows, safe_fraction):
    per_batch = round(safe_fraction * batch_size)
    rng = random.Random(f"schedule/{seed}")
    main, safe = _cycle(rows, rng), _cycle(list(safe_rows), rng) if per_batch else None
    while True:
        batch = [next(main) for _ in range(batch_size - per_batch)] + [next(safe) for _ in range(per_batch)]
        rng.shuffle(batch)
        yield batch


def _planned_batches(rows, batch_size, seed, safe_rows, plan):
    rng = random.Random(f"schedule/{seed}")
    pools = {"train": _cycle(rows, rng), "safe": _cycle(list(safe_rows), rng)}
    steps: list[str] = []
    for step in itertools.count():
        if step == len(steps):  # the plan of a longer run begins with the shorter one's
            steps = plan(max(64, 2 * len(steps)))
        yield [next(pools[steps[step]]) for _ in range(batch_size)]


def schedule(rows: list[dict], steps: int, batch_size: int, seed: int, safe_rows: list[dict] = (),
             safe_fraction: float = 0.0, source: str = "the run's data", plan: Plan | None = None) -> list[dict]:
    """The first `steps` batches, concatenated (`batches`)."""
    stream = batches(rows, batch_size, seed, safe_rows, safe_fraction, source, plan)
    out = []
    for _ in range(steps):
        out += next(stream)
    return out


def steps_for_tokens(tokens: int, count: Callable[[dict], int], rows: list[dict], batch_size: int, seed: int,
                     safe_rows: list[dict] = (), safe_fraction: float = 0.0,
                     source: str = "the run's data", plan: Plan | None = None) -> tuple[int, int]:
    """(steps, tokens they hold): the fewest steps of the schedule whose rows hold at least `tokens`
    training tokens, `count(row)` tokens each."""
    steps = seen = 0
    for batch in batches(rows, batch_size, seed, safe_rows, safe_fraction, source, plan):
        sizes = [count(r) for r in batch]
        if steps == 0 and not any(sizes):
            raise DataError(f"{source}: the first batch holds no tokens; a token budget cannot be reached")
        steps, seen = steps + 1, seen + sum(sizes)
        if seen >= tokens:
            return steps, seen


def budget_amount(budget: dict) -> tuple[str, int]:
    """(unit, size) of a budget variant: ('steps', N) or ('tokens', N). Budgets of one unit are
    ordered by size (ladders, smallest/largest); budgets of different units are not comparable."""
    return budget["type"], budget[budget["type"]]


def budget_order(budgets: dict):
    """Sort key over names of `budgets` (the config's `budgets:` section): by (unit, size), then name;
    what `smallest` and `largest` mean wherever a budget is picked by size."""
    return lambda name: (budget_amount(budgets[name]), name)


def ladder_eligible(finetune: dict) -> bool:
    """Whether a longer budget can continue a shorter one (a budget ladder): only when the learning
    rate does not depend on the total number of steps (constant, no warmup), and ladders are on."""
    return (finetune.get("ladder", True) and finetune.get("lr_scheduler", "constant") == "constant"
            and not finetune.get("warmup_ratio", 0))
