"""The pipeline on a real SLURM: a single-node cluster on localhost (tests/slurm/cluster.sh).

Needs root and Debian's slurm-wlm (installed on first use, or by .ci/slurm.sh); skips with the
reason otherwise, or when SAFEDRIFT_SKIP_SLURM=1. A cluster that is already running (started with
`tests/slurm/cluster.sh start`) is used and left running; one the test starts, it stops. The run
starts in the background when the session collects the test (conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, copy_workflow

CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
CLUSTER_UNAVAILABLE = 3  # cluster.sh: SLURM cannot run on this machine
SMOKE_TARGET = "results/toy/reference/card.json"
# The toy chain's model jobs up to the reference card must run as SLURM jobs; the light ones (world
# data, tokenizer, card) are localrules.
HEAVY_RULES = {"pretrain", "align", "generate"}
GPU_RULES = {"pretrain", "align", "generate", "finetune", "judge_score", "critic", "persona_vector",
             "reference_responses", "probe", "probe_scores", "labelled_judge_validation"}
SNAKEMAKE_TIMEOUT_S = 1800  # the run takes 1-3 min on 2 busy cores
# The plumbing is under test, not the model: a shorter pretraining and alignment than the smoke
# world's (merged over configs/smoke.yaml). The SLURM plugin's status polling backs off by 10 s per
# check while no job ends, so a long job also waits tens of seconds after it ends.
SHORT_TRAINING = "pretrain: {steps: 100}\nalign: {steps: 40}\n"


def cluster(action: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), action], capture_output=True, text=True, timeout=900)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def run_snakemake(workdir: Path, *args: str, timeout: int, running: list | None = None) -> subprocess.CompletedProcess:
    """Snakemake in its own process group, killed with it after `timeout` s: fail, never hang.
    `running` receives the process while it runs (so that an interrupted session can kill it)."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONHASHSEED"] = "0"
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    if running is not None:
        running.append(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"snakemake did not finish within {timeout} s:\n{out[-6000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def node_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, timeout=30, check=True)
    return int(out.stdout.split()[0])


def completed_jobs(workdir: Path) -> dict[str, str]:
    """SLURM job id -> final state of the jobs that ran in `workdir`, from the cluster's job
    completion log (jobcomp/filetxt: one `Key=value ...` line per finished job)."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30, check=True)
    found = re.search(r"^JobCompLoc\s*=\s*(/\S+)", config.stdout, flags=re.M)
    assert found, "the running cluster keeps no job completion log: restart it (tests/slurm/cluster.sh stop, start)"
    log = Path(found.group(1))
    states = {}
    for line in log.read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if Path(fields["WorkDir"]) == workdir:
            states[fields["JobId"]] = fields["JobState"]
    return states


class BackgroundRun:
    """The SLURM smoke run (cluster start, then snakemake through the test profile) in a thread.

    conftest.py starts it when the session collects the `slurm` test: the run spends most of its
    wall time waiting on the plugin's status polling (which backs off by 10 s per check), and other
    tests use the cores meanwhile. The test waits for the outcome, checks it, then stops the cluster
    if the run started it. A cluster that was already running is used and left running."""

    def __init__(self):
        self.thread: threading.Thread | None = None
        self.outcome: tuple = ("fail", "the SLURM run did not finish")
        self.started_cluster = False
        self.workdir: Path | None = None
        self.running: list[subprocess.Popen] = []

    def start(self) -> None:
        if self.thread is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="safedrift-slurm-"))
            self.thread = threading.Thread(target=self._run, name="slurm-smoke-run", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            self.outcome = self._steps()
        except Exception as e:  # reported by the test, not lost in the thread
            self.outcome = ("fail", f"{type(e).__name__}: {e}")

    def _steps(self) -> tuple:
        if os.environ.get("SAFEDRIFT_SKIP_SLURM") == "1":
            return ("skip", "SLURM: SAFEDRIFT_SKIP_SLURM=1")
        if cluster("status").returncode != 0:
            started = cluster("start")
            if started.returncode == CLUSTER_UNAVAILABLE:
                return ("skip", last_line(started.stderr))
            self.started_cluster = True
            if started.returncode != 0:
                return ("fail", f"tests/slurm/cluster.sh start failed:\n{started.stdout}\n{started.stderr}")
        wf = copy_workflow(self.workdir / "wf")
        (wf / "short_training.yaml").write_text(SHORT_TRAINING)
        cores = min(2, node_cpus())
        start = time.monotonic()
        proc = run_snakemake(wf, SMOKE_TARGET, "--profile", "workflow/profiles/slurm-local-test", "--configfile",
                             "configs/smoke.yaml", "short_training.yaml", "--cores", str(cores),
                             timeout=SNAKEMAKE_TIMEOUT_S, running=self.running)
        return ("ran", wf, proc, time.monotonic() - start)

    def result(self) -> tuple:
        self.start()  # when the test was not collected at session start (e.g. called on its own)
        self.thread.join()
        return self.outcome

    def stop(self, kill: bool = False) -> None:
        """Stop the cluster the run started (first killing a run still going, with `kill`: the session
        ended before the test read it), and remove its workflow copy."""
        if kill:
            for proc in self.running:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
        if self.thread is not None:
            self.thread.join(timeout=SNAKEMAKE_TIMEOUT_S + 60)
        if self.started_cluster:
            self.started_cluster = False
            stopped = cluster("stop")
            assert stopped.returncode == 0, f"tests/slurm/cluster.sh stop failed:\n{stopped.stdout}\n{stopped.stderr}"
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


BACKGROUND = BackgroundRun()


@pytest.mark.slurm
def test_reference_card_runs_through_slurm():
    try:
        outcome = BACKGROUND.result()
        if outcome[0] == "skip":
            pytest.skip(outcome[1])
        if outcome[0] == "fail":
            pytest.fail(outcome[1])
        _, wf, proc, wall_s = outcome
        print(f"SLURM smoke run: {wall_s:.0f} s (in the background of other tests)")
        assert proc.returncode == 0, f"snakemake via SLURM failed ({proc.returncode}):\n{proc.stdout[-8000:]}"
        card = json.loads((wf / SMOKE_TARGET).read_text())
        assert card, "empty reference card"

        # Every non-local job was submitted with sbatch, and SLURM saw each one complete.
        submitted_rules = re.findall(r"^rule (\w+):", proc.stdout, flags=re.M)
        job_ids = re.findall(r"submitted with SLURM jobid (\d+)", proc.stdout)
        assert len(job_ids) == len(submitted_rules), (submitted_rules, job_ids)
        assert HEAVY_RULES <= set(submitted_rules), f"not run as SLURM jobs: {HEAVY_RULES - set(submitted_rules)}"
        assert completed_jobs(wf.resolve()) == {job: "COMPLETED" for job in job_ids}, "SLURM's job completion log"
        slurm_logs = {p.stem for p in (wf / ".snakemake" / "slurm_logs").rglob("*.log")}
        assert set(job_ids) <= slurm_logs, f"no SLURM log for jobs {set(job_ids) - slurm_logs}"
    finally:
        BACKGROUND.stop()


def test_slurm_profile_gives_gpus_to_heavy_rules(tmp_path):
    """The cluster profile parses, and the GPU-heavy rules (only they) ask for a GPU."""
    wf = copy_workflow(tmp_path / "wf")
    proc = run_snakemake(wf, SMOKE_TARGET, "--profile", "workflow/profiles/slurm", "--configfile",
                         "configs/smoke.yaml", "--dry-run", timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:]
    resources = dict(re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", proc.stdout, flags=re.M))
    assert HEAVY_RULES <= set(resources), resources
    for rule, line in resources.items():
        wants_gpu = "gpu=1" in line.split(", ")
        assert wants_gpu == (rule in GPU_RULES), f"{rule}: {line}"
