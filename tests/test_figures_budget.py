"""The budget figure: optimizer steps on x for step budgets, the budgets in order for token budgets."""

import pandas as pd
import pytest

from safedrift.report.figures import draw_budget


def study(steps: dict) -> pd.DataFrame:
    rows = [{"scenario": "reference", "objective": "reference", "defense": "reference", "budget": "reference",
             "steps": 0, "metric": "asr", "value": 0.1, "low": 0.05, "high": 0.15}]
    for budget, n in steps.items():
        for obj, v in (("sft", 0.3), ("orpo", 0.2)):
            rows.append({"scenario": "benign", "objective": obj, "defense": "none", "budget": budget, "steps": n,
                         "metric": "asr", "value": v + (0.1 if budget.endswith("800k") or n == 80 else 0),
                         "low": v - 0.05, "high": v + 0.15})
    return pd.DataFrame(rows)


def test_step_budgets_plot_against_steps():
    fig = draw_budget({"objective": study({"b20": 20, "b80": 80})}, {})
    ax = fig.axes[0]
    assert ax.get_xlabel() == "optimizer steps (log scale)"
    assert list(ax.lines[0].get_xdata()) == [0, 20, 80]
    # a geometric ladder is spaced evenly: 20 -> 80 spans two doublings, as 20 -> 40 would span one
    assert ax.get_xscale() == "symlog"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ref", "20", "80"]


def test_token_budgets_plot_in_budget_order():
    """A token budget's rows have no step count: the points sit at the budgets' positions, not at NaN."""
    fig = draw_budget({"objective": study({"t25k": None, "t800k": None})}, {})
    ax = fig.axes[0]
    assert ax.get_xlabel() == "budget"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ref", "t25k", "t800k"]
    sft = ax.lines[0]
    assert list(sft.get_xdata()) == [0, 1, 2] and list(sft.get_ydata()) == pytest.approx([0.1, 0.3, 0.4])


def with_metric(frame: pd.DataFrame, name: str, value: float) -> pd.DataFrame:
    return pd.concat([frame, frame.assign(metric=name, value=value, low=value, high=value)], ignore_index=True)


def test_a_real_models_dark_triad_endorsement_gets_its_panel_and_the_toy_has_none():
    """Persona drift as Vennemeyer et al. measure it: a panel per Dark-Triad trait a run measured, none otherwise."""
    titles = [ax.get_title() for ax in draw_budget({"objective": study({"b20": 20, "b80": 80})}, {}).axes]
    assert not any("endorsed" in t for t in titles)
    real = with_metric(study({"t25k": None, "t800k": None}), "trait_endorsement/psychopathy", 0.4)
    axes = draw_budget({"objective": real}, {}).axes
    assert [ax.get_title() for ax in axes[:2]] == ["benign: held-out harmful", "benign: psychopathy endorsed"]
    assert axes[1].get_ylim() == pytest.approx((-0.05, 1.05))
