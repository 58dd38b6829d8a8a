"""A local run turns off Snakemake's job-rate limiter, whose timers pile up with every finished job.

With the CLI's default `--max-jobs-per-timespan 100/1s`, each scheduling round of Snakemake 9
starts a one-second timer that starts the next round, and every finished job starts another such
chain: the scheduler's threads and CPU grow with the number of jobs done (snakemake_hooks.drop_local_job_rate_limit).
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

from snakemake.scheduling.job_scheduler import JobRateLimiter
from snakemake.settings.types import MaxJobsPerTimespan

from conftest import ROOT
from safedrift.snakemake_hooks import drop_local_job_rate_limit

N_JOBS = 40


def scheduler_benchmark():
    """benchmarks/scheduler.py: its synthetic workflow calls the hook as the Snakefile does, and each of
    its jobs records the thread count of Snakemake's main process (its shell's parent)."""
    path = ROOT / "benchmarks" / "scheduler.py"
    spec = importlib.util.spec_from_file_location("bench_scheduler", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workflow(limit: str | None, local: bool = True):
    limiter = JobRateLimiter(MaxJobsPerTimespan.parse_choice(limit)) if limit else None
    return SimpleNamespace(local_exec=local, scheduler=SimpleNamespace(job_rate_limiter=limiter))


def test_only_the_cli_default_of_a_local_run_is_dropped():
    local_default = workflow("100/1s")
    assert drop_local_job_rate_limit(local_default) and local_default.scheduler.job_rate_limiter is None
    for kept in (workflow("10/1s"), workflow("100/1m"), workflow("100/1s", local=False)):
        assert not drop_local_job_rate_limit(kept) and kept.scheduler.job_rate_limiter is not None
    assert not drop_local_job_rate_limit(workflow(None))
    assert not drop_local_job_rate_limit(SimpleNamespace(local_exec=True))  # a Snakemake without the attribute


def max_threads(folder, *args: str) -> int:
    settings = SimpleNamespace(jobs=N_JOBS, inputs=0, seconds=0.05, cores=1)
    return scheduler_benchmark().run(folder, settings, list(args))["threads"]


def test_the_scheduler_threads_do_not_grow_with_the_jobs(tmp_path):
    without_limiter = max_threads(tmp_path / "default")
    # an explicit limit is the user's and kept: the timers pile up, which shows this test can see them
    with_limiter = max_threads(tmp_path / "explicit", "--max-jobs-per-timespan", "1000/1s")
    assert without_limiter <= 10, without_limiter
    assert with_limiter >= without_limiter + N_JOBS // 4, (with_limiter, without_limiter)
