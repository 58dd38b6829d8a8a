"""Shared fixtures: a copy of the workflow in a temporary folder, run on configs/smoke.yaml.

`smoke` is built once per test session (the reference model in about a minute); tests ask it
for further targets with `smoke.run(target, ...)`, which share the same results folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from safedrift.report.run_times import job_stats

ROOT = Path(__file__).resolve().parents[1]


WORKFLOW_FILES = ("Snakefile", "config.yaml", "configs", "envs", "workflow", "src")


def load_benchmark(name: str):
    """The script benchmarks/<name>.py as a module (benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest / name)
    return dest


def slurm_modules(session) -> list:
    return list({id(i.module): i.module for i in getattr(session, "items", [])
                 if i.get_closest_marker("slurm") and hasattr(i.module, "BACKGROUND")}.values())


def pytest_collection_finish(session):
    # The SLURM smoke run mostly waits on the SLURM plugin's status polling; started now, in the
    # background, that wait overlaps the other tests (tests/test_slurm.py, BackgroundRun).
    if not session.config.option.collectonly:
        for module in slurm_modules(session):
            module.BACKGROUND.start()


def pytest_sessionfinish(session):
    for module in slurm_modules(session):
        module.BACKGROUND.stop(kill=True)


class Workflow:
    """A workflow copy in `path`, run with `configfile` (relative to it)."""

    def __init__(self, path: Path, configfile: str = "configs/smoke.yaml"):
        self.path = path
        self.configfile = configfile

    def snakemake(self, *args: str, check: bool = True, timeout: int = 1800, cores: int = 2,
                  env: dict | None = None) -> subprocess.CompletedProcess:
        # --configfile takes several values: it goes last so that targets are not read as configfiles
        cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), *args, "--configfile", self.configfile]
        env = {**(os.environ if env is None else env), "PYTHONHASHSEED": "0"}
        proc = subprocess.run(cmd, cwd=self.path, capture_output=True, text=True, timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
        return proc

    def run(self, *targets: str, **kw) -> subprocess.CompletedProcess:
        return self.snakemake(*targets, **kw)

    def dry_run_jobs(self, *targets: str, extra: tuple[str, ...] = ()) -> dict[str, int]:
        """Rule name -> number of jobs `snakemake -n` would run."""
        # targets first: `--quiet` takes any number of values and would swallow them
        proc = self.snakemake(*targets, *extra, "-n", "--quiet", "rules")
        return job_stats((proc.stdout + proc.stderr).splitlines())


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> Workflow:
    wf = Workflow(copy_workflow(tmp_path_factory.mktemp("smoke")))
    wf.run("results/toy/reference/card.json")
    return wf


@pytest.fixture(scope="session")
def built(smoke) -> Workflow:
    """Every target of `rule all` on configs/smoke.yaml, built once per session."""
    smoke.run("all")
    return smoke


@pytest.fixture
def workflow_copy(tmp_path) -> Workflow:
    return Workflow(copy_workflow(tmp_path / "wf"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared CPU run far slower with two threads fighting for it; a module asks
    for this with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
