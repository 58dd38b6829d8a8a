"""Snakemake's own CPU and the wall time of a many-job run, with its CLI-default job-rate limiter vs without.

A synthetic workflow shaped like the toy grid's fine-tuning phase: `--jobs` jobs, all ready at once,
each with `--inputs` input files (the toy's finetune and generate jobs list ~60, mostly the source
files of their stage), each sleeping `--seconds` (so the jobs use no CPU and what is measured is
Snakemake's). Its `onstart:` calls snakemake_hooks.drop_local_job_rate_limit as the project's Snakefile
does. Variants, alternated for `--rounds` rounds:

- `no limiter`: the CLI default (100/1s), which the hook turns off, as in a local safedrift run;
- `limiter`: `--max-jobs-per-timespan 1000/1s`, which the hook keeps: Snakemake as it runs by
  default (the same one-second timers).

Snakemake's CPU is the run's child-process CPU (the jobs only sleep). Prints medians and ratios.

    python benchmarks/scheduler.py                 # about 2 min
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SNAKEFILE = """
import sys
sys.path.insert(0, {src!r})
from safedrift.snakemake_hooks import drop_local_job_rate_limit

onstart:
    drop_local_job_rate_limit(workflow)

rule all:
    input: expand("done/{{i}}.txt", i=range({jobs}))

rule job:
    input: expand("code/{{k}}.py", k=range({inputs}))
    output: "done/{{i}}.txt"
    shell: "sleep {seconds}; grep Threads /proc/$PPID/status | cut -f2 > {{output}}"
"""


def run(folder: Path, args, extra: list[str]) -> dict:
    folder.mkdir(parents=True)
    (folder / "code").mkdir()
    for k in range(args.inputs):
        (folder / "code" / f"{k}.py").write_text(f"# {k}\n")
    (folder / "Snakefile").write_text(SNAKEFILE.format(src=str(ROOT / "src"), jobs=args.jobs, inputs=args.inputs,
                                                       seconds=args.seconds))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(args.cores), *extra], cwd=folder,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    threads = max(int(p.read_text()) for p in (folder / "done").glob("*.txt"))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "threads": threads}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=300)
    p.add_argument("--inputs", type=int, default=60, help="input files per job")
    p.add_argument("--seconds", type=float, default=0.2, help="each job's sleep")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    variants = {"no limiter": [], "limiter": ["--max-jobs-per-timespan", "1000/1s"]}
    results = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, extra in variants.items():
                results[name].append(run(Path(tmp) / f"{r}-{name.replace(' ', '_')}", args, extra))
    ideal = args.jobs * args.seconds / args.cores
    print(f"{args.jobs} jobs x {args.inputs} inputs, {args.seconds} s each, {args.cores} cores "
          f"(ideal wall {ideal:.0f} s); medians of {args.rounds} rounds")
    print(f"{'variant':<11} {'wall s':>7} {'snakemake CPU s':>16} {'max threads':>12}")
    med = {name: {k: statistics.median(x[k] for x in rows) for k in ("wall", "cpu", "threads")}
           for name, rows in results.items()}
    for name, m in med.items():
        print(f"{name:<11} {m['wall']:>7.1f} {m['cpu']:>16.1f} {m['threads']:>12.0f}")
    print(f"limiter / no limiter: wall {med['limiter']['wall'] / med['no limiter']['wall']:.2f}x, "
          f"Snakemake CPU {med['limiter']['cpu'] / med['no limiter']['cpu']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
