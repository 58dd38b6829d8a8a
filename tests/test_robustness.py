"""tables/claims_robustness.*: one verdict per claim and world, and a caption that counts them right."""

from __future__ import annotations

import pandas as pd

from safedrift.report import robustness


def scorecard(path, verdicts: dict[str, str]):
    rows = [{"id": c, "paper": "P", "claim": f"claim {c}", "verdict": v} for c, v in verdicts.items()]
    pd.DataFrame(rows).to_csv(path, index=False)
    return f"{path}"


def test_caption_counts_claims_reproduced_on_every_world(tmp_path):
    w0 = scorecard(tmp_path / "w0.csv", {"a": "reproduced", "b": "reproduced", "c": "not reproduced"})
    w1 = scorecard(tmp_path / "w1.csv", {"a": "reproduced", "b": "opposite", "c": "reproduced"})
    robustness.main(["--scorecard", f"world0={w0}", "--scorecard", f"world1={w1}", "--out", str(tmp_path / "t")])
    table = pd.read_csv(tmp_path / "t.csv")
    assert list(table["worlds reproduced"]) == ["2/2", "1/2", "1/2"]
    md = (tmp_path / "t.md").read_text()
    assert "world0: 2/3, world1: 2/3; on every world: 1/3" in md, md.splitlines()[0]
