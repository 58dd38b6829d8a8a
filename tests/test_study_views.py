"""A figure that draws only each study's largest budget (figures/asr.pdf) reads the study's
largest-budget view: it plans no evaluation of the smaller rungs, and the view's rows equal the
whole study's rows of those cells."""

import pandas as pd
import pytest

from safedrift.report.figures import FIGURES


def planned_outputs(wf, target: str) -> list[str]:
    proc = wf.snakemake(target, "-n")
    return [line.split(":", 1)[1].strip() for line in (proc.stdout + proc.stderr).splitlines()
            if line.strip().startswith("output:")]


def test_the_attack_figure_plans_no_evaluation_below_the_largest_budget(workflow_copy):
    """Training still climbs the ladder (small, then large); only the large runs are evaluated."""
    assert FIGURES["asr"].budgets == "largest"
    outputs = planned_outputs(workflow_copy, "figures/asr.pdf")
    generations = [o for o in outputs if o.endswith("eval/generations.jsonl")]
    assert any("/large/" in o for o in generations)
    assert not [o for o in generations if "/small/" in o]
    assert any("/small/seed0/state" in o for o in outputs)  # the rung the large runs continue


def test_the_largest_budget_is_the_largest_by_size_not_the_last_listed(workflow_copy):
    """A study that lists its budgets largest first still has its large runs drawn."""
    config = workflow_copy.path / workflow_copy.configfile
    text = config.read_text()
    assert text.count("budgets: [small, large]") == 1
    config.write_text(text.replace("budgets: [small, large]", "budgets: [large, small]"))
    generations = [o for o in planned_outputs(workflow_copy, "figures/asr.pdf") if o.endswith("eval/generations.jsonl")]
    assert any("/large/" in o for o in generations)
    assert not [o for o in generations if "/small/" in o]


def test_the_largest_budget_view_equals_the_study_at_that_budget(built):
    whole = pd.read_csv(built.path / "results/studies/objectives.csv")
    view = pd.read_csv(built.path / "results/studies/objectives@largest.csv")
    assert set(whole.budget) == {"reference", "small", "large"}
    expected = whole[whole.budget.isin(["reference", "large"])].reset_index(drop=True)
    assert set(view.budget) == {"reference", "large"}
    pd.testing.assert_frame_equal(view, expected)


@pytest.mark.parametrize("figure, study, budgets_line", [
    ("ema", "ema_defenses", "    budgets: [large]\n    extra: [[ema_coding"),
    ("adaptive", "adaptive", "adaptive_probe, adaptive_critic]\n    budgets: [large]"),
])
def test_figures_that_compare_conditions_draw_only_the_largest_budget(workflow_copy, figure, study, budgets_line):
    """A second budget in a study the bar figures draw would put two bars on one label (figures/ema.pdf)
    or average the budgets into one point (figures/adaptive.pdf): they read the largest-budget view."""
    assert FIGURES[figure].budgets == "largest"
    config = workflow_copy.path / workflow_copy.configfile
    text = config.read_text()
    assert text.count(budgets_line) == 1
    config.write_text(text.replace(budgets_line, budgets_line.replace("[large]", "[small, large]")))
    outputs = planned_outputs(workflow_copy, f"figures/{figure}.pdf")
    assert f"results/studies/{study}@largest.csv" in " ".join(outputs)
    generations = [o for o in outputs if o.endswith("eval/generations.jsonl")]
    assert any("/large/" in o for o in generations)
    assert not [o for o in generations if "/small/" in o]
