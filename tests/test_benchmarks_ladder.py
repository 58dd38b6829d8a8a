"""benchmarks/ladder.py: a ladder's rungs train only their increments, and the ratio line parses."""

import re

import pytest

from conftest import load_benchmark

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def smoke_results(smoke):
    smoke.run("results/toy/data/harmful.jsonl")
    return smoke.path / "results/toy"


def run(smoke_results, capsys, *args):
    script = load_benchmark("ladder")
    code = script.main(["--config", str(smoke_results.parents[1] / "configs/smoke.yaml"), "--results",
                        str(smoke_results), "--repeats", "1", "--warmup-steps", "0", *args])
    return code, capsys.readouterr().out, script


def test_ladder_trains_the_increments_and_prints_the_ratio(smoke_results, capsys):
    code, out, script = run(smoke_results, capsys, "--budgets", "1", "2", "4", "--max-ratio", "1e9")
    rows = {line.split()[1]: line.split() for line in out.splitlines() if re.match(r"\s+[123] ", line)}
    assert {budget: row[3] for budget, row in rows.items()} == {"1": "1", "2": "1", "4": "2"}
    assert [row[2] for row in rows.values()] == ["reference", "steps1", "steps2"]
    totals = dict((m[0], m[1:]) for m in re.findall(r"^\s*(ladder total|largest alone)\s+(\d+)\s+([0-9.]+)", out, re.M))
    assert totals["ladder total"][0] == "4"  # the sum of increments; a ladder from scratch trains 1 + 2 + 4
    assert totals["largest alone"][0] == "4"
    match = re.search(rf"^{re.escape(script.RATIO_LINE)} ([0-9.]+)x .* (pass|FAIL)$", out, re.M)
    ratio = float(match.group(1))
    # the totals are printed to 0.01 s and a toy rung takes ~0.1 s: the ratio must lie within their rounding
    ladder, alone = float(totals["ladder total"][1]), float(totals["largest alone"][1])
    assert (ladder - 0.005) / (alone + 0.005) <= ratio <= (ladder + 0.005) / max(alone - 0.005, 1e-9)
    assert match.group(2) == "pass" and code == 0


def test_the_verdict_is_the_median_ratio_and_a_ladder_that_retrains_fails(capsys):
    script = load_benchmark("ladder")
    Timed = script.Timed
    budgets = [1, 2, 4]
    assert script.estimated_sweep(budgets, 1.0, 2.5) == pytest.approx(1.0 + 1.5 + 2.5)  # 0.5 s a step

    def rep(alone_seconds, rung_steps=(1, 1, 2)):
        rungs = [Timed(1.0, 0.5, rung_steps[0]), Timed(1.0, 0.5, rung_steps[1]), Timed(2.0, 1.0, rung_steps[2])]
        return {"rungs": rungs, "ladder": Timed(4.0, 2.0, sum(rung_steps)), "alone": Timed(alone_seconds, 1.0, 4),
                "sweep": {"seconds": 8.0, "cpu": 4.0}}

    reps = [rep(2.0), rep(4.0), rep(1.0)]  # ratios 2, 1, 4: median 2
    assert script.report(reps, budgets, 2.0, False) == 0
    line = "ladder / largest alone: 2.000x (repetitions: 2.000 1.000 4.000)  target <= 2x  pass"
    assert line in capsys.readouterr().out
    assert script.report(reps, budgets, 1.99, False) == 1
    assert "target <= 1.99x  FAIL" in capsys.readouterr().out
    retrained = [rep(2.0, (1, 2, 4))]  # each rung from the reference: fast enough, but not a ladder
    assert script.report(retrained, budgets, 100, False) == 1
    assert "the ladder trained 7 steps, not the largest budget's 4" in capsys.readouterr().out
