"""Batch schedule of a run: exactly `steps * batch_size` rows, in training order.

The scenario's rows are cycled in a fresh seeded shuffle per epoch; a defense's safe rows fill
`per_batch` slots of every batch (interleaving). Building the order up front makes the data a
run sees a pure function of its settings, makes "tokens seen" exact, and lets a resumed run
replay the same batches. The schedule of N steps begins with the schedule of any M < N steps, so a
longer budget can continue a shorter one (`ladder_eligible`).
"""

from __future__ import annotations

import random

from safedrift.errors import DataError


def _cycle(rows: list[dict], rng: random.Random):
    while True:
        order = list(rows)
        rng.shuffle(order)
        yield from order


def schedule(rows: list[dict], steps: int, batch_size: int, seed: int, safe_rows: list[dict] = (),
             safe_fraction: float = 0.0, source: str = "the run's data") -> list[dict]:
    """`source` names the data in errors (the scenario file)."""
    if not rows:
        raise DataError(f"{source}: no training examples (an empty scenario file, or no preference pair "
                        "left); check the scenario's pools and n, delete the file and rerun snakemake")
    per_batch = round(safe_fraction * batch_size) if safe_rows else 0
    rng = random.Random(f"schedule/{seed}")
    main, safe = _cycle(rows, rng), _cycle(list(safe_rows), rng) if per_batch else None
    out = []
    for _ in range(steps):
        batch = [next(main) for _ in range(batch_size - per_batch)] + [next(safe) for _ in range(per_batch)]
        rng.shuffle(batch)
        out += batch
    return out


def ladder_eligible(finetune: dict) -> bool:
    """Whether a longer budget can continue a shorter one (a budget ladder): only when the learning
    rate does not depend on the total number of steps (constant, no warmup), and ladders are on."""
    return (finetune.get("ladder", True) and finetune.get("lr_scheduler", "constant") == "constant"
            and not finetune.get("warmup_ratio", 0))
