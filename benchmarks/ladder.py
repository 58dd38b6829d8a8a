"""Wall time of a budget ladder vs the largest budget trained alone, and vs a from-scratch sweep.

A ladder trains each budget by continuing the next smaller one's saved state (`--start-from`), so
a sweep over budgets costs about one run of the largest budget plus a set-up per rung. Each rung
is one real `finetune.run.finetune()` call with `start_from` the previous rung's run folder, as
the `finetune` rule wires it; the largest budget alone is the same call from the reference. The
steps each call trained come from its run card (`ladder.steps_trained`; `steps` for a run from
the reference), so a ladder that retrained from scratch shows up as more steps, not only as time.
The from-scratch sweep (each budget trained alone: what a budget sweep cost before ladders) is
estimated per repetition by a line through the two from-scratch runs measured anyway (the first
rung and the largest budget alone), or measured with `--measure-scratch`.

Calls are timed in-process with time.perf_counter (interpreter start and imports, which the
zygote fork server removes from pipeline jobs, are not counted; a `--warmup-steps` run first pays
the lazy imports), and each call starts with the objects alive before it frozen out of garbage
collection, as a zygote child does. Ladder and largest-alone runs alternate for `--repeats` repetitions so that
load from other processes hits both alike; the ratio is the median of the per-repetition ratios.

    python benchmarks/ladder.py                                # config.yaml's toy model, results/toy
    python benchmarks/ladder.py --config configs/smoke.yaml    # the smoke world, after building it

Settings: `--budgets` (steps, increasing; default 10 20 40 80 160), `--objective` (default sft,
no defense), `--scenario`, `--repeats`, `--max-ratio` (exit 1 above it; default 1.3), `--threads`.

Target: ladder <= 1.3x the largest budget alone.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch

from safedrift import config as config_lib
from safedrift.finetune.run import finetune
from safedrift.finetune.schedule import ladder_eligible
from safedrift.models import set_threads

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: step_time's run wiring
from step_time import inputs as run_inputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RATIO_LINE = "ladder / largest alone:"


class Timed(NamedTuple):
    seconds: float  # wall clock (time.perf_counter): what the target is judged on
    cpu: float      # this process's CPU time: barely moved by other processes' load on a shared machine
    steps: int      # optimizer steps trained (run card)


def settings_for(base: dict, steps: int) -> dict:
    settings = copy.deepcopy(base)
    settings["budget"] = {"name": f"steps{steps}", "type": "steps", "steps": steps}
    return settings


def steps_trained(card: dict) -> int:
    """Optimizer steps this call took: a rung's extension, or the whole budget from the reference."""
    return card["ladder"]["steps_trained"] if card["ladder"] else card["steps"]


def timed_finetune(settings: dict, files: dict, out: Path, log, start_from: Path | None = None,
                   checkpoint_every: int = 0) -> Timed:
    """Wall seconds, CPU seconds and steps trained of one finetune() call (saving resumable state every
    `checkpoint_every` steps, as the workflow's jobs do)."""
    declared = {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in files.items()
                if k not in ("data", "reference")}
    # As in a pipeline job (a child of the zygote fork server, safedrift.zygote): what was alive before
    # the job is frozen out of its garbage collections. Unfrozen, the full gc.collect() the Trainer runs
    # at the start of training walks every object of this long-lived process: about half a second a call.
    gc.collect()
    gc.freeze()
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        card = finetune(settings, str(files["data"]), str(files["reference"]), str(out),
                        inputs=declared, start_from=str(start_from) if start_from else None,
                        checkpoint_every=checkpoint_every)
    return Timed(time.perf_counter() - wall, time.process_time() - cpu, steps_trained(card))


def estimated_sweep(budgets: list[int], smallest: float, largest: float) -> float:
    """Cost of training every budget alone, from the smallest's and the largest's cost: a line through
    the two (set-up + steps x per-step cost)."""
    per_step = (largest - smallest) / (budgets[-1] - budgets[0]) if len(budgets) > 1 else 0.0
    return sum(smallest + (steps - budgets[0]) * per_step for steps in budgets)


def one_repetition(base: dict, budgets: list[int], files: dict, work: Path, log, measure_scratch: bool,
                   checkpoint_every: int) -> dict:
    """Every rung, the largest budget alone, and the from-scratch sweep's {"seconds", "cpu"}."""
    rungs, previous = [], None
    for steps in budgets:
        out = work / "ladder" / f"steps{steps}"
        rungs.append(timed_finetune(settings_for(base, steps), files, out, log, previous, checkpoint_every))
        previous = out
    alone = timed_finetune(settings_for(base, budgets[-1]), files, work / "alone" / f"steps{budgets[-1]}", log,
                           checkpoint_every=checkpoint_every)
    # the first rung starts from the reference: it is the smallest budget trained alone
    middle = [timed_finetune(settings_for(base, s), files, work / "alone" / f"steps{s}", log,
                             checkpoint_every=checkpoint_every)
              for s in budgets[1:-1]] if measure_scratch else None
    sweep = {}
    for measure in ("seconds", "cpu"):
        first, largest = getattr(rungs[0], measure), getattr(alone, measure)
        sweep[measure] = (first + sum(getattr(m, measure) for m in middle) + largest if middle is not None
                          else estimated_sweep(budgets, first, largest))
    ladder = Timed(sum(r.seconds for r in rungs), sum(r.cpu for r in rungs), sum(r.steps for r in rungs))
    return {"rungs": rungs, "ladder": ladder, "alone": alone, "sweep": sweep}


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def row(name: str, steps: int, runs: list[Timed]) -> str:
    wall, cpu = [r.seconds for r in runs], [r.cpu for r in runs]
    return (f"{name:>24s} {steps:14d} {statistics.median(wall):8.2f} {spread(wall):>12s} "
            f"{statistics.median(cpu):8.2f}")


def ratio_line(name: str, ratios: list[float]) -> str:
    return f"{name} {statistics.median(ratios):.3f}x (repetitions: {' '.join(f'{x:.3f}' for x in ratios)})"


def report(reps: list[dict], budgets: list[int], max_ratio: float, measure_scratch: bool) -> int:
    """Print the table and the ratios; 0 if the ladder trained only its increments and is within max_ratio."""
    print(f"{'rung':>4s} {'budget':>7s} {'starts from':>12s} {'steps trained':>14s} {'wall s':>8s} "
          f"{'min-max':>12s} {'CPU s':>8s}")
    for i, steps in enumerate(budgets):
        start = f"steps{budgets[i - 1]}" if i else "reference"
        print(f"{i + 1:4d} {steps:7d} {start:>12s}" + row("", reps[-1]["rungs"][i].steps,
                                                          [r["rungs"][i] for r in reps])[24:])
    print(row("ladder total", reps[-1]["ladder"].steps, [r["ladder"] for r in reps]))
    print(row("largest alone", reps[-1]["alone"].steps, [r["alone"] for r in reps]))
    sweep = [Timed(r["sweep"]["seconds"], r["sweep"]["cpu"], sum(budgets)) for r in reps]
    print(row("from-scratch sweep", sum(budgets), sweep)
          + f"  ({'measured' if measure_scratch else 'estimated'}: each budget alone)")

    ratios = [r["ladder"].seconds / r["alone"].seconds for r in reps]
    verdict = "pass" if statistics.median(ratios) <= max_ratio else "FAIL"
    print(f"\n{ratio_line(RATIO_LINE, ratios)}  target <= {max_ratio:g}x  {verdict}")
    print(ratio_line("ladder / largest alone, CPU seconds:", [r["ladder"].cpu / r["alone"].cpu for r in reps]))
    alone = [r["alone"].seconds for r in reps]
    print(ratio_line("from-scratch sweep / largest alone:", [s.seconds / a for s, a in zip(sweep, alone)]))
    print(ratio_line("ladder / from-scratch sweep:", [r["ladder"].seconds / s.seconds for s, r in zip(sweep, reps)]))
    increments = [b - a for a, b in zip([0, *budgets], budgets)]
    if [r.steps for r in reps[-1]["rungs"]] != increments:
        print(f"FAIL: the ladder trained {reps[-1]['ladder'].steps} steps, not the largest budget's {budgets[-1]}: "
              "its rungs did not continue each other")
        return 1
    return 0 if verdict == "pass" else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "config.yaml"))
    p.add_argument("--model", default="toy")
    p.add_argument("--scenario", default="harmful")
    p.add_argument("--objective", default="sft", help="objective of every run (no defense)")
    p.add_argument("--results", help="the model's results folder (default: results/<model> of the repository)")
    p.add_argument("--reference", help="reference model folder (default: <results>/reference)")
    p.add_argument("--data", help="scenario data JSONL (default: <results>/data/<scenario>.jsonl)")
    p.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 40, 80, 160],
                   help="the ladder's budgets in optimizer steps, increasing")
    p.add_argument("--repeats", type=int, default=3, help="ladder / largest-alone repetitions, interleaved")
    p.add_argument("--max-ratio", type=float, default=1.3, help="exit 1 when ladder / largest alone exceeds it")
    p.add_argument("--measure-scratch", action="store_true",
                   help="train every middle budget alone too, instead of estimating the from-scratch sweep")
    p.add_argument("--warmup-steps", type=int, default=1, help="untimed run first (lazy imports); 0: none")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the finetune rule uses 1)")
    a = p.parse_args(argv)
    if any(b < 1 for b in a.budgets) or a.budgets != sorted(set(a.budgets)):
        raise SystemExit(f"--budgets must be increasing positive step counts, got {a.budgets}")
    config = config_lib.load(a.config)
    results = Path(a.results) if a.results else ROOT / "results" / a.model
    run = {"model": a.model, "scenario": a.scenario, "objective": a.objective, "defense": "none",
           "budget": next(iter(config["budgets"])), "seed": 0}
    files = run_inputs(config, run, results)
    files.update({k: Path(v) for k, v in (("data", a.data), ("reference", a.reference)) if v})
    for path in [p for v in files.values() for p in (v if isinstance(v, list) else [v])]:
        if not path.exists():
            target = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            raise SystemExit(f"{path} is missing; build it with `snakemake --cores 2 --configfile {a.config} {target}` "
                             "or point --results (--reference, --data) at a built one")
    base = config_lib.run_settings(config, a.model, a.scenario, a.objective, "none", next(iter(config["budgets"])), 0)
    if not ladder_eligible(base["model"]["finetune"]):
        raise SystemExit(f"models.{a.model}.finetune in {a.config} has no budget ladder (it needs "
                         "lr_scheduler: constant, no warmup_ratio, ladder not false)")
    checkpoint_every = config["models"][a.model]["finetune"].get("checkpoint_every", 0)
    set_threads(a.threads)

    reps = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench_ladder_") as tmp, open(Path(tmp) / "train.log", "w") as log:
            if a.warmup_steps:
                timed_finetune(settings_for(base, a.warmup_steps), files, Path(tmp) / "warmup", log)
            for rep in range(a.repeats):
                work = Path(tmp) / f"rep{rep}"
                reps.append(one_repetition(base, a.budgets, files, work, log, a.measure_scratch, checkpoint_every))
                shutil.rmtree(work)
                print(f"  repetition {rep + 1}/{a.repeats}: ladder {reps[-1]['ladder'].seconds:.2f} s, "
                      f"largest alone {reps[-1]['alone'].seconds:.2f} s", file=sys.stderr, flush=True)
    finally:
        gc.unfreeze()
    ft = base["model"]["finetune"]
    print(f"\nbudget ladder, {a.model}/{a.scenario} {a.objective}, batch {ft['batch_size']}, "
          f"checkpoint_every {checkpoint_every}, budgets {' '.join(map(str, a.budgets))}, "
          f"{a.repeats} repetitions (interleaved; medians), {a.threads} torch thread(s), "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'}")
    return report(reps, a.budgets, a.max_ratio, a.measure_scratch)


if __name__ == "__main__":
    sys.exit(main())
