"""The zygote fork server: a real server, real stages, and the ways a job can go wrong.

One server (full preload) serves the module; stages run as Snakemake runs them, as
`python -m safedrift <stage>` subprocesses, with SAFEDRIFT_ZYGOTE pointing at it or set to 0.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safedrift import zygote

# A job's environment as Snakemake sets it for `threads: 1`; offline, so that a bad path fails fast.
JOB_ENV = {**os.environ, **{k: "1" for k in zygote.THREAD_ENV}, "HF_HUB_OFFLINE": "1"}
ARCH = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}


def run(stage_argv: list, zygote_dir, env=JOB_ENV, **kw) -> subprocess.CompletedProcess:
    """`python -m safedrift ...` as a job would run it; zygote_dir None: in-process."""
    env = {**env, zygote.ENV_VAR: str(zygote_dir) if zygote_dir else "0"}
    return subprocess.run([sys.executable, "-m", "safedrift", *map(str, stage_argv)], env=env,
                          capture_output=True, text=True, timeout=300, **kw)


def pretrain_argv(work: Path, out: Path, steps: int = 3, tokenizer: Path | None = None) -> list:
    settings = {"steps": steps, "batch_size": 4, "learning_rate": 1e-3, "warmup_ratio": 0.0, "max_length": 32,
                "seed": 0}
    return ["world.pretrain", "--corpus", work / "corpus.jsonl", "--tokenizer", tokenizer or work / "tokenizer",
            "--arch", json.dumps(ARCH), "--settings", json.dumps(settings), "--out", out,
            "--log-jsonl", out / "train_log.jsonl", "--threads", 1]


def server_log(folder: Path) -> str:
    return (folder / "threads1.log").read_text()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("zygote")
    rng = random.Random(0)
    words = "the cat sat on a mat while a dog ran to the red box under the sun".split()
    rows = [{"text": " ".join(rng.choice(words) for _ in range(30))} for _ in range(300)]
    (work / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run(["world.tokenizer", "--corpus", work / "corpus.jsonl", "--vocab-size", 200, "--out", work / "tokenizer"],
               None)
    assert proc.returncode == 0, proc.stderr
    return work


@pytest.fixture(scope="module")
def server(work):
    servers = zygote.Servers(work / "z", threads=[1], env=JOB_ENV)
    servers.wait_ready()
    yield servers.folder
    servers.stop()


def test_stage_through_zygote_writes_the_same_bytes_as_in_process(work, server):
    in_process = run(pretrain_argv(work, work / "in_process"), None)
    forked = run(pretrain_argv(work, work / "forked"), server)
    assert in_process.returncode == 0, in_process.stderr
    assert forked.returncode == 0, forked.stderr
    assert re.search(r"forked \d+ for world.pretrain .*/forked ", server_log(server)), server_log(server)
    for name in ("model.safetensors", "train_log.jsonl", "config.json", "tokenizer.json"):
        assert (work / "forked" / name).read_bytes() == (work / "in_process" / name).read_bytes(), name
    # The stage's own output reached the client's stdout (the log file of a Snakemake job).
    assert "parameters: " in forked.stdout


def test_safedrift_error_exits_2_with_its_message(work, server):
    proc = run(pretrain_argv(work, work / "bad", tokenizer=work / "missing"), server)
    assert proc.returncode == 2
    assert "safedrift world.pretrain: error: model path " in proc.stderr and "missing" in proc.stderr
    assert re.search(r"child \d+ exited 2", server_log(server))


def test_environment_mismatch_is_refused_and_runs_in_process(work, server):
    env = {**JOB_ENV, "SAFEDRIFT_TEST_EXTRA": "1"}
    proc = run(pretrain_argv(work, work / "bad", tokenizer=work / "missing"), server, env=env)
    assert proc.returncode == 2 and "error: model path " in proc.stderr
    assert "refused world.pretrain: environment differs in SAFEDRIFT_TEST_EXTRA" in server_log(server)
    # Another thread count has no server: no request at all.
    assert zygote.socket_path(str(server), {**env, "OMP_NUM_THREADS": "2"}) is None


def test_killed_client_kills_its_child(work, server):
    client = subprocess.Popen([sys.executable, "-m", "safedrift",
                               *map(str, pretrain_argv(work, work / "long", steps=10**6))],
                              env={**JOB_ENV, zygote.ENV_VAR: str(server)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    child = wait_for(lambda: re.search(rf"forked (\d+) for world.pretrain .*/long ", server_log(server)))
    pid = int(child.group(1))
    client.kill()
    client.wait()
    assert wait_for(lambda: f"child {pid} exited 137" in server_log(server))
    assert not Path(f"/proc/{pid}").exists()


def test_a_served_job_ends_without_the_interpreters_teardown(tmp_path):
    # Teardown decrefs every preloaded object, copying the pages a child shares with its server
    # (0.2-0.8 s a job); the exit steps a job can observe still run: its status, message, atexit.
    log = tmp_path / "exits.log"
    env = {**JOB_ENV, "PYTHONPATH": str(Path(__file__).parent / "fixtures"), "SAFEDRIFT_TEST_EXIT_LOG": str(log)}
    servers = zygote.Servers(tmp_path / "z", env=env, specs=["zygote_exit_marker"])
    servers.wait_ready()
    try:
        proc = run(["no_such_stage"], servers.folder, env=env)
    finally:
        servers.stop()
    assert proc.returncode == 2 and "unknown stage 'no_such_stage'" in proc.stderr
    [child] = re.findall(r"child (\d+) exited 2", server_log(tmp_path / "z"))
    assert f"{child} atexit\n" in log.read_text()
    assert f"{child} teardown" not in log.read_text()


EXIT_CHILD = """
import sys, threading, time
from safedrift.zygote import exit_child

def job():
    print("buffered", end="")  # stdout is a pipe: block-buffered until flushed
    threading.Thread(target=lambda: (time.sleep(0.2), print(" thread-done", end=""))).start()
    return {job}

exit_child(job)
"""


@pytest.mark.parametrize("body, status, stderr", [
    ("3", 3, ""),
    ("sys.exit('bad config key')", 1, "bad config key"),
    ("sys.exit(None)", 0, ""),
    ("1 / 0", 1, "ZeroDivisionError"),
])
def test_exit_child_keeps_what_a_python_exit_does(body, status, stderr):
    proc = subprocess.run([sys.executable, "-c", EXIT_CHILD.replace("{job}", body)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == status
    assert stderr in proc.stderr
    assert proc.stdout == "buffered thread-done"  # the non-daemon thread ran to its end; stdout was flushed


def test_idle_server_exits_and_stop_removes_the_socket(tmp_path):
    # A light preload: this is about the server's lifetime, not its imports.
    idle = zygote.Servers(tmp_path / "idle", env=JOB_ENV, idle_timeout=0.5, specs=["json"])
    stopped = zygote.Servers(tmp_path / "stopped", env=JOB_ENV, specs=["json"])
    idle.wait_ready()
    stopped.wait_ready()
    [idle_process] = idle.processes.values()
    assert idle_process.wait(timeout=30) == 0
    assert not any((tmp_path / "idle").glob("*.sock"))
    assert "stopping: idle" in server_log(tmp_path / "idle")
    stopped.stop()
    assert all(p.poll() is not None for p in stopped.processes.values())
    assert not any((tmp_path / "stopped").glob("*.sock"))


def test_server_exits_when_its_parent_is_gone(tmp_path):
    # Its parent, a shell standing in for Snakemake, exits after 1 s without stopping it.
    sock, log = tmp_path / "threads1.sock", tmp_path / "threads1.log"
    subprocess.run(["bash", "-c", f'"{sys.executable}" -m safedrift.zygote --socket {sock} --parent-pid $$'
                                  f' --preload json > {log} 2>&1 & sleep 1'], env=JOB_ENV, check=True)
    wait_for(lambda: "stopping: Snakemake is gone" in log.read_text())
    wait_for(lambda: not sock.exists())


SNAKEFILE = """
import os, sys
from pathlib import Path
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
from safedrift import zygote

onstart:
    if workflow.local_exec and not workflow.deployment_settings.deployment_method:
        zygote.start_for_workflow(threads=[1])
onsuccess:
    zygote.stop_for_workflow()
onerror:
    zygote.stop_for_workflow()

rule tokenizer:
    input: "corpus.jsonl"
    output: "tokenizer/tokenizer.json"
    threads: 1
    shell:
        "until [ -S $SAFEDRIFT_ZYGOTE/threads1.sock ]; do sleep 0.1; done;"
        " python -m safedrift world.tokenizer --corpus {input} --vocab-size 200 --out tokenizer"
"""


def test_snakemake_hooks_serve_jobs_and_stop_the_server(work, tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "corpus.jsonl").write_bytes((work / "corpus.jsonl").read_bytes())
    env = {**os.environ, zygote.ENV_VAR: "1"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [log] = (tmp_path / zygote.WORKFLOW_DIR).glob("*/threads1.log")
    text = log.read_text()
    assert re.search(r"forked \d+ for world.tokenizer", text), text  # the job's environment matched the server's
    assert (tmp_path / "tokenizer/tokenizer.json").read_bytes() == (work / "tokenizer/tokenizer.json").read_bytes()
    server_pid = re.search(r"zygote\[(\d+)\] serving", text).group(1)
    assert not Path(f"/proc/{server_pid}").exists() and not any(log.parent.glob("*.sock"))


def wait_for(condition, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)
    return result
