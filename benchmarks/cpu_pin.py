"""Cost of the CPU numerics pins (safedrift.cpu_pin): the toy pretraining, pinned vs unpinned.

Builds the world corpus and tokenizer of a config (the smoke config by default) in a temporary
folder, then runs the real `python -m safedrift world.pretrain` stage for --steps optimizer steps,
alternating two SAFEDRIFT_CPU_PIN settings (--compare; by default avx2, the default pins, and off: each
library dispatches for this CPU), so that load from other processes hits both alike. Reports medians of the job's wall time, its CPU
time (user + system of the process: unaffected by the machine pausing or sharing it) and the
training loop's wall time (the trainer's train_runtime), their ratios (first setting / second), and
whether the two settings gave the same weights.

    python benchmarks/cpu_pin.py --rounds 3
    python benchmarks/cpu_pin.py --config config.yaml --steps 40   # the default toy model
    python benchmarks/cpu_pin.py --compare portable,avx2             # MKL's cross-vendor branch: cost, bits
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from safedrift import cpu_pin, zygote
from safedrift.world.splits import product_settings

OUTER_PIN_VARS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OMP_DYNAMIC")


def stage(argv: list, env: dict) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds and stdout of one `python -m safedrift ...` job."""
    t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "safedrift", *map(str, argv)], env=env, capture_output=True, text=True)
    wall, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), proc.stdout


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/smoke.yaml", help="world, toy_model and pretrain settings")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    p.add_argument("--threads", type=int, default=1, help="torch threads (Snakemake gives pretrain --cores)")
    p.add_argument("--rounds", type=int, default=3, help="runs per setting")
    p.add_argument("--compare", default="avx2,off", help="two SAFEDRIFT_CPU_PIN settings: avx2, portable, off")
    a = p.parse_args(argv)
    names = a.compare.split(",")
    if len(names) != 2 or any(name not in cpu_pin.MODES for name in names):
        sys.exit(f"--compare {a.compare!r}: give two of avx2, portable, off, comma-separated")
    if cpu_pin.why_unsupported():
        sys.exit(f"no pins on this machine ({cpu_pin.why_unsupported()}): nothing to compare")
    config = yaml.safe_load(Path(a.config).read_text())
    settings = {**config["pretrain"], "steps": a.steps}
    base = {k: v for k, v in os.environ.items() if k not in OUTER_PIN_VARS}
    base.update({k: str(a.threads) for k in zygote.THREAD_ENV}, **{zygote.ENV_VAR: "0"})
    envs = {name: {**base, cpu_pin.PIN_VAR: name} for name in names}
    with tempfile.TemporaryDirectory(prefix="safedrift-cpu-pin-") as tmp:
        work = Path(tmp)
        stage(["world.splits", "--product", "corpus", "--settings", json.dumps(product_settings(config["world"], "corpus")),
               "--out", work], base)
        stage(["world.tokenizer", "--corpus", work / "pretrain.jsonl", "--vocab-size", config["toy_model"]["vocab_size"],
               "--out", work / "tok"], base)
        times = {name: {"job": [], "CPU": [], "loop": []} for name in envs}
        digests = {name: set() for name in envs}
        for r in range(a.rounds):
            for name, env in envs.items():
                out = work / f"{name}{r}"
                wall, cpu, stdout = stage(["world.pretrain", "--corpus", work / "pretrain.jsonl", "--tokenizer",
                                           work / "tok", "--arch", json.dumps(config["toy_model"]), "--settings",
                                           json.dumps(settings), "--out", out, "--threads", a.threads], env)
                loop = float(re.search(r"'train_runtime': '?([\d.]+)", stdout).group(1))
                for kind, seconds in (("job", wall), ("CPU", cpu), ("loop", loop)):
                    times[name][kind].append(seconds)
                digests[name].add(hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()[:12])
                print(f"round {r} {name:8s} job {wall:6.1f}s wall, {cpu:6.1f}s CPU; training loop {loop:6.1f}s",
                      flush=True)
    median = {name: {kind: statistics.median(v) for kind, v in t.items()} for name, t in times.items()}
    print(f"\n{a.config}: {a.steps} pretraining steps, {a.threads} thread(s), {a.rounds} rounds; CPU {cpu_pin.cpu_model()}")
    for name in names:
        print(f"{name}: {cpu_pin.pins({cpu_pin.PIN_VAR: name})[1]}")
    print(f"{'median s':10s}{'job wall':>10s}{'job CPU':>10s}{'loop wall':>11s}  weights")
    for name in envs:
        m = median[name]
        print(f"{name:10s}{m['job']:10.1f}{m['CPU']:10.1f}{m['loop']:11.1f}  {', '.join(sorted(digests[name]))}")
    first, second = names
    print(f"{first} / {second}: " + ", ".join(f"{kind} {median[first][kind] / median[second][kind]:.2f}x"
                                             for kind in ("job", "CPU", "loop")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
