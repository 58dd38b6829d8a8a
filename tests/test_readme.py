"""report.readme: the README's results blocks are rewritten from the results, and nothing else is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from safedrift.errors import SafedriftError
from safedrift.report import readme

ROOT = Path(__file__).resolve().parents[1]
README = """# title

Prose with a number 0.42 that no block owns.

<!-- safedrift:results:table:begin -->
| old | table |
|---|---|
<!-- safedrift:results:table:end -->

More prose.
<!-- safedrift:results:untouched:begin -->
hand text
<!-- safedrift:results:untouched:end -->
tail without newline"""

CARD = {"gates": {  # sorted by name, as world.card writes it
    "over_refusal": {"value": 4 / 60, "threshold": 0.05, "op": "<=", "pass": False},
    "refusal_heldout_objects": {"value": 1.0, "threshold": 0.6, "op": ">=", "pass": True},
}}


def test_rewrites_only_between_markers_and_is_idempotent(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(README)
    blocks = {"table": "| new | table |\n|---|---|\n| 1 | 2 |\n"}
    assert readme.write_readme(path, blocks) is True
    text = path.read_text()
    before, _, rest = README.partition("<!-- safedrift:results:table:begin -->")
    _, _, after = rest.partition("<!-- safedrift:results:table:end -->")
    assert text == (before + "<!-- safedrift:results:table:begin -->\n\n| new | table |\n|---|---|\n| 1 | 2 |\n\n"
                    "<!-- safedrift:results:table:end -->" + after)
    stat = path.stat()
    assert readme.write_readme(path, blocks) is False  # same results: the file is not touched
    assert path.read_text() == text and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert readme.replace_blocks(text, blocks) == text


def test_keeps_the_files_mode(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(README)
    path.chmod(0o640)
    readme.write_readme(path, {"table": "x"})
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("text, message", [
    (README, r"README.md has no markers for block\(s\) claims: add <!-- safedrift:results:claims:begin -->"),
    ("a\n<!-- safedrift:results:claims:begin -->\nb\n", r"README.md:2: block claims has no end marker"),
    ("<!-- safedrift:results:claims:end -->\n", r"README.md:1: end of claims without its begin"),
    ("<!-- safedrift:results:claims:begin -->\n<!-- safedrift:results:x:begin -->\n",
     r"README.md:2: begin of x inside block claims"),
    ("<!-- safedrift:results:claims:begin -->\n<!-- safedrift:results:claims:end -->\n"
     "<!-- safedrift:results:claims:begin -->\n", r"README.md:3: a second block named claims"),
])
def test_bad_markers_name_the_line(text, message):
    with pytest.raises(SafedriftError, match=message):
        readme.replace_blocks(text, {"claims": "x"})


def test_reference_gates_table(tmp_path):
    (tmp_path / "card.json").write_text(json.dumps(CARD))
    text = readme.reference_gates(str(tmp_path / "card.json"))
    assert text.startswith("The reference model passes 1 of its 2 quality gates")
    assert ("| refuses harmful (held-out objects) | 100.0% | >= 60% | yes |\n"
            "| over-refuses benign | 6.7% | <= 5% | **no** |\n") in text  # in the figure's order


def stage(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "safedrift", "report.readme", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_stage_writes_blocks_and_provenance_in_a_git_checkout(tmp_path):
    (tmp_path / "README.md").write_text(README.replace("untouched", "provenance"))
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "card.json").write_text(json.dumps(CARD))
    for cmd in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    args = ("--readme", "README.md", "--block", "table=reference_card:card.json", "--config-files", "config.yaml",
            "--config-sha256", "ab" * 32)
    proc = stage(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "README.md").read_text()
    assert "The reference model passes 1 of its 2 quality gates" in text
    assert f"at commit `{head[:7]}` ({head}), on " in text  # the README it rewrote does not count as a change
    assert "with uncommitted changes" not in text
    for part in ("from `config.yaml` (canonical JSON sha256 `abababababababab`)", "torch ", "CPU pins: "):
        assert part in text
    assert stage(tmp_path, *args).stdout.startswith("README.md: unchanged")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert stage(tmp_path, *args).returncode == 0
    assert f"({head}) with uncommitted changes" in (tmp_path / "README.md").read_text()


def test_bad_block_spec_is_one_line(tmp_path):
    (tmp_path / "README.md").write_text(README)
    proc = stage(tmp_path, "--readme", "README.md", "--block", "table=pdf:x.pdf", "--config-sha256", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("safedrift report.readme: error: --block 'table=pdf:x.pdf': expected "
                                   "NAME=RENDERER:PATH with RENDERER one of markdown, reference_card")


def test_missing_readme_is_one_line(tmp_path):
    proc = stage(tmp_path, "--readme", "README.md", "--config-sha256", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("safedrift report.readme: error: README.md: no such file; the docs target "
                                   "rewrites the README of the checkout it runs in")


def test_project_readme_has_a_marked_region_for_every_block():
    lines = (ROOT / "README.md").read_text().split("\n")
    assert set(readme.regions(lines, "README.md")) == {"provenance", "claims", "claims_robustness",
                                                        "reference_gates", "objectives", "adaptive",
                                                        "ema_defenses", "judge_validation", "run_times"}
