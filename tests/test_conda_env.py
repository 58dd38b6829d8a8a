"""envs/safedrift.yaml (the jobs' conda environment) pins what pyproject.toml pins."""

from __future__ import annotations

import re
import tomllib

import yaml

from conftest import ROOT

# Snakemake runs outside the jobs' environment: the environment does not need it.
SNAKEMAKE_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].lower()


def test_conda_env_pins_equal_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "envs" / "safedrift.yaml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    [pip] = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    pinned = {r.replace(" ", "") for r in project["dependencies"] if requirement_name(r) not in SNAKEMAKE_ONLY}
    assert {r for r in pip if not r.startswith("-")} == pinned
    minimum = re.fullmatch(r">=(\d+\.\d+)", project["requires-python"]).group(1)
    assert f"python={minimum}" in conda, conda


# Packages that write the pipeline's output bytes without being imported by it: each must be pinned.
OUTPUT_WRITERS = {"fonttools", "pillow", "jinja2"}


def test_the_packages_that_write_output_bytes_are_pinned():
    """fontTools 4.69.1 gave figures/asr.pdf other bytes than 4.68.0 from identical results (its font
    subsets): a fresh clone reproduces the figures byte for byte only with these pinned."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {requirement_name(r) for r in project["dependencies"] if "==" in r}
    assert OUTPUT_WRITERS <= pinned, OUTPUT_WRITERS - pinned
