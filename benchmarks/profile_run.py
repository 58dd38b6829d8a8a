"""Where a run's time went: job-seconds per rule, from Snakemake's `benchmark:` files.

The heavy rules (pretrain, align, finetune, generate, judge_score, metrics, the risk stages,
reference responses, classifier training) each write `logs/benchmarks/<rule>/<wildcards>.tsv`
(Snakemake's benchmark format: wall seconds `s`, `cpu_time`, `max_rss` in MB, ...). This script
sums them per rule:

    python benchmarks/profile_run.py                 # logs/benchmarks of this checkout
    python benchmarks/profile_run.py --logs OTHER/logs --model toy

Columns: jobs, job-seconds (sum of wall seconds), share of all benchmarked job-seconds, mean and
max seconds per job, CPU seconds, peak RSS. Job-seconds add up the jobs' own wall times, so with
parallel jobs they exceed the run's wall time; light rules (world building, tables, figures) have
no benchmark file and are not counted. With the fork server on (src/safedrift/zygote.py, the
default for local runs) a job's stage runs in a child of the server, so Snakemake measures the
client: wall seconds are right, CPU seconds and RSS are the client's; run with SAFEDRIFT_ZYGOTE=0
to measure those.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safedrift.report.run_times import job_profile as profile


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--logs", type=Path, default=Path("logs"), help="the run's logs folder (default: logs)")
    p.add_argument("--model", help="only this model's jobs (e.g. toy); default: all models")
    a = p.parse_args(argv)
    table = profile(a.logs, a.model)
    print("| rule | jobs | job-seconds | share | mean s | max s | CPU s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in table:
        print(f"| {r['rule']} | {r['jobs']} | {r['job_s']:.0f} | {r['share']:.0%} | {r['mean_s']:.1f} | "
              f"{r['max_s']:.1f} | {r['cpu_s']:.0f} | {r['rss_mb']:.0f} |")
    print(f"| total | {sum(r['jobs'] for r in table)} | {sum(r['job_s'] for r in table):.0f} | 100% | | | "
          f"{sum(r['cpu_s'] for r in table):.0f} | |")


if __name__ == "__main__":
    main()
