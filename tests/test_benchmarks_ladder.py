"""benchmarks/ladder.py: a ladder's rungs train only their increments, and the ratio line parses."""

import importlib.util
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def load_script():
    path = Path(__file__).parents[1] / "benchmarks" / "ladder.py"
    spec = importlib.util.spec_from_file_location("bench_ladder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_results(smoke):
    smoke.run("results/toy/data/harmful.jsonl")
    return smoke.path / "results/toy"


def run(smoke_results, capsys, *args):
    script = load_script()
    code = script.main(["--config", str(smoke_results.parents[1] / "configs/smoke.yaml"), "--results",
                        str(smoke_results), "--repeats", "1", "--warmup-steps", "0", *args])
    return code, capsys.readouterr().out, script


def test_ladder_trains_the_increments_and_prints_the_ratio(smoke_results, capsys):
    code, out, script = run(smoke_results, capsys, "--budgets", "1", "2", "4", "--max-ratio", "1e9")
    rows = {line.split()[1]: line.split() for line in out.splitlines() if re.match(r"\s+[123] ", line)}
    assert {budget: row[3] for budget, row in rows.items()} == {"1": "1", "2": "1", "4": "2"}
    assert [row[2] for row in rows.values()] == ["reference", "steps1", "steps2"]
    totals = {" ".join(line.split()[:-3]): line.split()[-3:] for line in out.splitlines()
              if line.strip().startswith(("ladder total", "largest alone"))}
    assert totals["ladder total"][0] == "4"  # the sum of increments; a ladder from scratch trains 1 + 2 + 4
    assert totals["largest alone"][0] == "4"
    match = re.search(rf"^{re.escape(script.RATIO_LINE)} ([0-9.]+)x .* (pass|FAIL)$", out, re.M)
    ratio = float(match.group(1))
    assert ratio == pytest.approx(float(totals["ladder total"][1]) / float(totals["largest alone"][1]), rel=0.05)
    assert match.group(2) == "pass" and code == 0


def test_a_ratio_above_the_target_exits_non_zero(smoke_results, capsys):
    code, out, _ = run(smoke_results, capsys, "--budgets", "1", "2", "--max-ratio", "0")
    assert code == 1 and re.search(r"target <= 0x\s+FAIL$", out, re.M)
