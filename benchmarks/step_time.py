"""Seconds per optimizer step of every objective and defense, relative to plain SFT.

Each variant is one real `finetune.run.finetune()` call (the code a pipeline run executes) on
the toy reference and the `harmful` scenario, with the run's resolved settings (checkpoints off;
`--steps` may shorten the budget). A PyTorch optimizer-step hook timestamps every step, so model
loading, reference copies and data preparation are excluded; the first `--warmup` steps of each
run are dropped.
Variants run round-robin for `--reps` rounds so that load from other processes hits all alike;
a variant's time is the median over its rounds of the median step interval in that round.

    python benchmarks/step_time.py            # 5 rounds of the `b40` budget's 40 steps

A run whose objective or defense reads the reference's cached log-probs (kl, kl_sft, adaptive:
finetune.reference_logprobs) runs twice, with the cache and without it ("(live)": the reference's forward
pass every step).

Targets: steering <= 1.05x SFT, kl <= 1.1x (cached), ldifs <= 1.5x, adaptive <= kl + 5%.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from safedrift import config as config_lib
from safedrift.finetune.run import finetune
from safedrift.models import set_threads

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = ("sft", "dpo", "orpo", "cft", "inoculation", "kl_sft")
DEFENSES = ("none", "kl", "ldifs", "steering", "interleave", "adaptive_probe", "adaptive_critic")
BASELINE = ("sft", "none")
# variant -> (variant it is compared with, largest allowed ratio).
TARGETS = {"sft+steering": ("sft", 1.05), "sft+kl": ("sft", 1.1), "sft+ldifs": ("sft", 1.5),
           "sft+adaptive_probe": ("sft+kl", 1.05), "sft+adaptive_critic": ("sft+kl", 1.05)}


def variants() -> list[tuple[str, str]]:
    """(objective, defense) pairs: every objective without a defense, every defense under SFT."""
    return [(o, "none") for o in OBJECTIVES] + [("sft", d) for d in DEFENSES if d != "none"]


def label(objective: str, defense: str) -> str:
    return objective if defense == "none" else f"{objective}+{defense}"


def inputs(config: dict, run: dict, results: Path) -> dict[str, Path | list[Path]]:
    """The files a run needs, as the `finetune` rule wires them: `data` and `reference`, and the files
    its objective and defense declare (safedrift.config.finetune_declared_inputs), with their
    results/<model>/ replaced by `results`."""
    declared = config_lib.finetune_declared_inputs(config, run)
    return {"data": results / "data" / f"{run['scenario']}.jsonl", "reference": results / "reference",
            **{name: [rebased(p, run["model"], results) for p in path] if isinstance(path, list)
               else rebased(path, run["model"], results) for name, path in declared.items()}}


def rebased(path: str, model: str, results: Path) -> Path:
    """A workflow path results/<model>/... under `results` (others stay relative to the repository)."""
    inside = Path("results") / model
    return results / Path(path).relative_to(inside) if Path(path).is_relative_to(inside) else ROOT / path


def flat(files: dict) -> list[Path]:
    return [p for v in files.values() for p in (v if isinstance(v, list) else [v])]


def built(path: Path) -> Path:
    """The file whose presence says `path` is built (the reference folder: its weights)."""
    return path / "model.safetensors" if path.name == "reference" else path


def target(path: Path) -> str:
    """`path` as a Snakemake target: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


class StepClock:
    """Timestamps of every optimizer step taken in this process while active."""

    def __init__(self):
        self.stamps: list[float] = []

    def __enter__(self):
        self.stamps = []
        self.handle = register_optimizer_step_post_hook(lambda *_: self.stamps.append(time.perf_counter()))
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def step_seconds(self, steps: int, warmup: int) -> float:
        """Median interval between the trainer's last `steps` steps, its first `warmup` left out
        (optimizer steps before training, e.g. ranked interleaving's probe model, are ignored)."""
        stamps = self.stamps[-steps:]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])][warmup:]
        if not gaps:
            raise SystemExit(f"only {len(self.stamps)} optimizer steps were timed; raise --steps above --warmup + 1")
        return statistics.median(gaps)


def time_run(settings: dict, files: dict[str, Path], out: Path, warmup: int, log) -> float:
    declared = {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in files.items()
                if k not in ("data", "reference")}
    with StepClock() as clock, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        finetune(settings, str(files["data"]), str(files["reference"]), str(out), inputs=declared)
    return clock.step_seconds(settings["budget"]["steps"], warmup)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "config.yaml"))
    p.add_argument("--model", default="toy")
    p.add_argument("--scenario", default="harmful")
    p.add_argument("--budget", default="b40", help="budget whose settings are used (its steps are replaced)")
    p.add_argument("--results", help="the model's results folder (default: results/<model> of the repository)")
    p.add_argument("--steps", type=int, help="optimizer steps per timed run (default: the budget's)")
    p.add_argument("--warmup", type=int, default=3, help="first steps of each run left out of its median")
    p.add_argument("--reps", type=int, default=5, help="round-robin rounds over all variants")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the finetune rule uses 1)")
    p.add_argument("--only", help="comma-separated variants to time (e.g. sft,sft+kl,sft+kl(live)); default all")
    a = p.parse_args(argv)
    set_threads(a.threads)
    config = config_lib.load(a.config)
    results = Path(a.results) if a.results else ROOT / "results" / a.model
    steps = a.steps or config["budgets"][a.budget]["steps"]

    runnable, skipped = [], {}  # skipped: first missing file -> variants it stops
    for objective, defense in variants():
        run = {"model": a.model, "scenario": a.scenario, "objective": objective, "defense": defense,
               "budget": a.budget, "seed": 0}
        files = inputs(config, run, results)
        missing = [built(path) for path in flat(files) if not built(path).exists()]
        if missing:
            skipped.setdefault(missing[0], []).append(label(objective, defense))
        else:
            runnable.append((label(objective, defense), objective, defense, files))
            if "reference_logprobs" in files:
                live = {k: v for k, v in files.items() if k != "reference_logprobs"}
                runnable.append((f"{label(objective, defense)}(live)", objective, defense, live))
    if a.only:
        runnable = [r for r in runnable if r[0] in a.only.split(",")]
    for path, names in skipped.items():
        print(f"skipped {', '.join(names)}: {path} is missing; build it with `snakemake --cores 2 {target(path)}`")
    if BASELINE not in [(o, d) for _, o, d, _ in runnable]:
        print("nothing to compare against: plain SFT cannot run")
        return 1

    seconds: dict[str, list[float]] = {name: [] for name, *_ in runnable}
    with tempfile.TemporaryDirectory(prefix="bench_step_time_") as work, open(Path(work) / "train.log", "w") as log:
        for rep in range(a.reps):
            for name, objective, defense, files in runnable:
                settings = copy.deepcopy(config_lib.run_settings(config, a.model, a.scenario, objective, defense,
                                                                 a.budget, 0))
                settings["budget"]["steps"] = steps
                seconds[name].append(time_run(settings, files, Path(work) / f"{name}-{rep}", a.warmup, log))
                print(f"  round {rep + 1}/{a.reps} {name:20s} {seconds[name][-1]:.4f} s/step", file=sys.stderr,
                      flush=True)

    median = {name: statistics.median(values) for name, values in seconds.items()}
    base = median[label(*BASELINE)]
    batch = config["models"][a.model]["finetune"]["batch_size"]
    print(f"\nper-optimizer-step time, {a.model}/{a.scenario}, batch {batch}, {steps} steps per run "
          f"({a.warmup} warm-up dropped), {a.reps} rounds, {a.threads} torch thread(s), "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'}")
    print(f"{'variant':22s} {'s/step':>8s} {'rounds min-max':>15s} {'vs sft':>7s}  {'target':15s} result")
    for name, value in median.items():
        spread = f"{min(seconds[name]):.4f}-{max(seconds[name]):.4f}"
        goal, verdict = "-", ""
        if name in TARGETS and TARGETS[name][0] in median:
            against, factor = TARGETS[name]
            goal = f"<= {factor}x {against}"
            verdict = "pass" if value <= factor * median[against] else "FAIL"
        print(f"{name:22s} {value:8.4f} {spread:>15s} {value / base:6.2f}x  {goal:15s} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
