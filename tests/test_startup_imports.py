"""Every Snakemake start (a dry run, each cluster job, each rerun check) parses the workflow and
validates the config, which imports every objective, defense and judge module the config names.
None of that may import torch: it took 2-3 s of each start (about 40% of a dry run of the smoke
workflow), and the test suite alone starts Snakemake about a hundred times."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, copy_workflow

SHIPPED_CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml")) + ["config.yaml"]
HEAVY = ("torch", "transformers", "trl", "peft")
# configs/sensitivity/ holds overlays, run as `--configfile config.yaml <overlay>`: validated merged over
# config.yaml the way Snakemake merges two config files (snakemake.utils.update_config).
VALIDATE = """
import sys
from snakemake.utils import update_config
from safedrift.config import load, validate
for path in sys.argv[1:]:
    config = load(path)
    if path.startswith("configs/sensitivity/"):
        base = load("config.yaml")
        update_config(base, config)
        config = base
    validate(config)
"""


def test_validating_every_shipped_config_imports_no_torch():
    code = VALIDATE + f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code, *SHIPPED_CONFIGS], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]", f"config validation imported {proc.stdout.strip()}"


def test_a_dry_run_imports_no_torch(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "snakemake", "all", "--cores", "1", "-n",
                           "--quiet", "rules", "--configfile", "configs/smoke.yaml"],
                          cwd=wf, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
