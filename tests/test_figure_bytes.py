"""Figures are byte-identical when their numbers are: every PDF is written without a creation date.

The reference card's figure was written with a bare savefig, so each rerun (a config edit elsewhere, a
rerun of the card) wrote new bytes, and `snakemake --summary` / a checksum comparison of two regenerations
saw a figure change that was none."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import ROOT


def test_no_report_module_writes_a_figure_around_style_save():
    bare = [f"{path.relative_to(ROOT)}:{i}" for path in sorted((ROOT / "src/safedrift").rglob("*.py"))
            if path.name != "style.py"
            for i, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"\.savefig\(", line)]
    assert bare == [], f"write figures with safedrift.report.style.save: {bare}"


def test_the_reference_figure_is_the_same_bytes_twice(tmp_path):
    from safedrift.report.reference import draw

    card = {"gates": {"heldout_jailbreak_asr_max": {"value": 0.1, "threshold": 0.4, "pass": True, "op": "<="},
                      "refusal_identity": {"value": 0.95, "threshold": 0.9, "pass": True, "op": ">="}}}
    first, second = tmp_path / "a.pdf", tmp_path / "b.pdf"
    draw({"toy": card}, str(first))
    draw({"toy": card}, str(second))
    assert b"/CreationDate" not in first.read_bytes()
    assert Path(first).read_bytes() == Path(second).read_bytes()
