"""A local run turns off Snakemake's job-rate limiter, whose timers pile up with every finished job.

With the CLI's default `--max-jobs-per-timespan 100/1s`, each scheduling round of Snakemake 9
starts a one-second timer that starts the next round, and every finished job starts another such
chain: the scheduler's threads and CPU grow with the number of jobs done (snakemake_hooks.drop_local_job_rate_limit).
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

from snakemake.scheduling.job_scheduler import JobRateLimiter
from snakemake.settings.types import MaxJobsPerTimespan

from conftest import ROOT
from safedrift.snakemake_hooks import drop_local_job_rate_limit

N_JOBS = 40
# Each job writes how many threads Snakemake's main process (its shell's parent) has while it runs.
SNAKEFILE = f"""
import sys
sys.path.insert(0, {str(ROOT / "src")!r})
from safedrift.snakemake_hooks import drop_local_job_rate_limit

onstart:
    drop_local_job_rate_limit(workflow)

rule all:
    input: expand("threads/{{i}}.txt", i=range({N_JOBS}))

rule job:
    output: "threads/{{i}}.txt"
    shell: "sleep 0.05; grep Threads /proc/$PPID/status | cut -f2 > {{output}}"
"""


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
    folder.mkdir()
    tmp_path = folder
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return max(int(p.read_text()) for p in (tmp_path / "threads").glob("*.txt"))


def test_the_scheduler_threads_do_not_grow_with_the_jobs(tmp_path):
    without_limiter = max_threads(tmp_path / "default")
    # an explicit limit is the user's and kept: the timers pile up, which shows this test can see them
    with_limiter = max_threads(tmp_path / "explicit", "--max-jobs-per-timespan", "1000/1s")
    assert without_limiter <= 10, without_limiter
    assert with_limiter >= without_limiter + N_JOBS // 4, (with_limiter, without_limiter)
