"""What the Snakefile does to Snakemake's own run, as opposed to our jobs (pipeline.py).

Kept out of pipeline.py, which fine-tuning imports: a change here must not make every run's code
inputs newer than its outputs.
"""

from __future__ import annotations

# Snakemake's CLI default for --max-jobs-per-timespan, which its CLI always sets.
CLI_DEFAULT_JOB_RATE = (100, 1)  # (jobs, seconds)


def drop_local_job_rate_limit(workflow) -> bool:
    """Turn off Snakemake's job-rate limiter for a local run that kept the CLI default (100 jobs/1 s).

    Why: with a limiter, each round of Snakemake's scheduler (snakemake 9.27,
    scheduling/job_scheduler.py) ends by starting a timer that wakes the scheduler again one
    timespan later, and each wake starts the next timer; every finished job starts one more such
    chain. After N finished jobs the main process re-selects jobs N times a second over every ready
    job's inputs: measured on the toy grid, its CPU use rose from 0.07 to 0.33 s/s within two
    minutes, taking the CPU from the jobs. A local run has nothing to rate-limit (the API's default is
    no limiter); without one the scheduler wakes when a job ends. Any other limit, a cluster run,
    or a Snakemake without this scheduler attribute is left as it is.
    Call from `onstart:` (the scheduler exists then and has not selected a job). True if turned off.
    """
    scheduler = getattr(workflow, "scheduler", None)
    limiter = getattr(scheduler, "job_rate_limiter", None)
    if not workflow.local_exec or limiter is None:
        return False
    if (getattr(limiter, "max_jobs", None), getattr(limiter, "timespan", None)) != CLI_DEFAULT_JOB_RATE:
        return False
    scheduler.job_rate_limiter = None
    return True
