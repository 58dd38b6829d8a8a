"""Claims: planning from the config, and each verdict on synthetic metrics with known effects."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from safedrift.report.claims import combine, judge_test, plan
from safedrift.report.scorecard import main as scorecard

BOOT = {"resamples": 500, "confidence": 0.95, "seed": 0}
CELL = {"scenario": "harmful", "objective": "sft", "defense": "none", "budget": "largest"}


def config(claims: dict) -> dict:
    return {
        "seeds": [0, 1, 2], "models": {"toy": {"source": "toy"}},
        "budgets": {"small": {"type": "steps", "steps": 10}, "large": {"type": "steps", "steps": 40}},
        "studies": {"grid": {"scenarios": ["harmful"], "objectives": ["sft", "dpo"], "defenses": ["none", "kl"],
                             "budgets": ["small", "large"]}},
        "claims": claims,
    }


def claim(*tests, combine_how=None) -> dict:
    c = {"paper": "Someone 2026", "claim": "something holds", "tests": list(tests)}
    return {**c, "combine": combine_how} if combine_how else c


def write_rows(root, subject: str, metric: str, values) -> None:
    folder = root / subject / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics_rows.parquet"
    new = pd.DataFrame({"metric": metric, "id": [f"p/{i}" for i in range(len(values))], "sample": 0,
                        "value": np.asarray(values, dtype=float)})
    if path.exists():
        new = pd.concat([pd.read_parquet(path), new], ignore_index=True)
    new.to_parquet(path, index=False)


def world(tmp_path, asr: dict[str, float], metric: str = "asr", prompts: int = 60):
    """Metric rows where cell `defense/objective/budget` has a per-prompt rate `asr[...]` (same prompts flip
    first, so cells are paired), and the reference has rate asr['reference']."""
    rank = np.random.default_rng(0).permutation(prompts) / prompts
    write_rows(tmp_path, "results/toy/reference", metric, (rank < asr["reference"]).astype(float))
    for key, rate in asr.items():
        if key == "reference":
            continue
        objective, defense, budget = key.split("/")
        for seed in (0, 1, 2):
            write_rows(tmp_path, f"results/toy/runs/harmful/{objective}/{defense}/{budget}/seed{seed}", metric,
                       (rank < rate).astype(float))


def run_scorecard(tmp_path, monkeypatch, cfg, max_unscored=None) -> pd.DataFrame:
    monkeypatch.chdir(tmp_path)
    tests = plan(cfg, "toy")
    scorecard(["--plan", json.dumps(tests), "--claims", json.dumps(cfg["claims"]), "--model", "toy",
               "--bootstrap", json.dumps(BOOT), "--out", str(tmp_path / "tables/claims"),
               "--figure", str(tmp_path / "claims.pdf")]
              + (["--max-unscored", str(max_unscored)] if max_unscored is not None else []))
    return pd.read_csv(tmp_path / "tables/claims.csv")


RATES = {"reference": 0.0, "sft/none/small": 0.5, "sft/none/large": 0.9, "sft/kl/large": 0.3, "sft/kl/small": 0.2,
         "dpo/none/small": 0.45, "dpo/none/large": 0.95, "dpo/kl/small": 0.1, "dpo/kl/large": 0.1}


def test_each_verdict_on_known_effects(tmp_path, monkeypatch):
    cfg = config({
        "collapse": claim({"stat": "difference", "metric": "asr", "cell": CELL, "versus": "reference",
                           "at_least": 0.5, "excludes_zero": True}),
        "too_small": claim({"stat": "difference", "metric": "asr", "cell": {**CELL, "budget": "small"},
                            "versus": "reference", "at_least": 0.8, "excludes_zero": True}),
        "backwards": claim({"stat": "difference", "metric": "asr", "cell": {**CELL, "defense": "kl"},
                            "versus": {"defense": "none"}, "at_least": 0.0, "excludes_zero": True}),
        "absent": claim({"stat": "difference", "metric": "asr", "cell": {**CELL, "objective": "orpo"},
                         "versus": "reference", "at_least": 0.1}),
        "halves": claim({"stat": "ratio", "metric": "asr", "cell": {**CELL, "defense": "kl"},
                         "versus": {"defense": "none"}, "at_most": 0.5, "excludes_zero": True}),
        "alike": claim({"stat": "range", "metric": "asr", "cell": {**CELL, "objective": ["sft", "dpo"],
                        "budget": "small"}, "at_most": 0.1}),
        "either": claim({"stat": "value", "metric": "asr", "cell": CELL, "at_least": 0.99},
                        {"stat": "value", "metric": "asr", "cell": {**CELL, "objective": "dpo"}, "at_least": 0.9},
                        combine_how="any"),
    })
    world(tmp_path, RATES)
    table = run_scorecard(tmp_path, monkeypatch, cfg)
    verdicts = table.drop_duplicates("id").set_index("id")["verdict"].to_dict()
    assert verdicts == {"collapse": "reproduced", "too_small": "not reproduced", "backwards": "opposite",
                        "absent": "not run", "halves": "reproduced", "alike": "reproduced", "either": "reproduced"}
    row = table.set_index("id").loc["collapse"]
    assert row["effect"] == pytest.approx(0.9) and 0 < row["diff_low"] <= 0.9 <= row["diff_high"]
    assert table.set_index("id").loc["halves", "effect"] == pytest.approx(1 / 3)
    assert table.set_index("id").loc["alike", "effect"] == pytest.approx(0.05, abs=0.02)
    md = (tmp_path / "tables/claims.md").read_text()
    assert "✓ reproduced" in md and "⇄ opposite" in md and "– not run" in md
    assert (tmp_path / "claims.pdf").stat().st_size > 5000


def test_lists_expand_into_one_test_each_and_budgets_resolve_by_steps():
    cfg = config({"grows": claim({"stat": "difference", "metric": ["asr", "persona_projection"],
                                  "cell": {**CELL, "objective": ["sft", "dpo"]}, "versus": {"budget": "smallest"},
                                  "at_least": 0.0})})
    tests = plan(cfg, "toy")
    assert [t["cells"] for t in tests] == [["harmful/sft/none/large", "harmful/sft/none/small"],
                                           ["harmful/dpo/none/large", "harmful/dpo/none/small"]] * 2
    assert [t["metric"] for t in tests] == ["asr", "asr", "persona_projection", "persona_projection"]
    assert all(t["run"] for t in tests)
    assert tests[0]["subjects"]["harmful/sft/none/small"] == [
        f"results/toy/runs/harmful/sft/none/small/seed{s}" for s in (0, 1, 2)]


def test_versus_keeps_the_cells_resolved_budget():
    cfg = config({"x": claim({"stat": "difference", "metric": "asr", "cell": {**CELL, "defense": "kl"},
                              "versus": {"defense": "none"}, "at_most": 0.0})})
    cfg["studies"]["longer"] = {"scenarios": ["harmful"], "objectives": ["sft"], "defenses": ["none"],
                                "budgets": ["huge"]}
    cfg["budgets"]["huge"] = {"type": "steps", "steps": 160}
    [test] = plan(cfg, "toy")  # none's own largest budget is `huge`; kl's is `large`
    assert test["cells"] == ["harmful/sft/kl/large", "harmful/sft/none/large"]


def test_a_missing_cell_is_not_run_and_needs_no_files():
    cfg = config({"x": claim({"stat": "value", "metric": "asr", "cell": {**CELL, "scenario": "benign"},
                              "at_least": 0.5})})
    [test] = plan(cfg, "toy")
    assert not test["run"] and test["subjects"] == {}


@pytest.mark.parametrize("spec, effect, expected", [
    ({"stat": "difference", "at_least": 0.05, "excludes_zero": True}, (0.10, 0.02, 0.18), "reproduced"),
    ({"stat": "difference", "at_least": 0.05, "excludes_zero": True}, (0.10, -0.02, 0.22), "not reproduced"),
    ({"stat": "difference", "at_least": 0.05, "excludes_zero": True}, (-0.10, -0.18, -0.02), "opposite"),
    ({"stat": "difference", "at_most": 0.0, "excludes_zero": True}, (0.10, 0.02, 0.18), "opposite"),
    ({"stat": "difference", "at_least": -0.05}, (-0.03, -0.10, 0.04), "reproduced"),
    ({"stat": "difference", "at_least": -0.05}, (-0.30, -0.40, -0.20), "opposite"),
    ({"stat": "value", "at_least": 0.9}, (0.85, 0.8, 0.9), "not reproduced"),
    ({"stat": "value", "at_least": 0.9}, (float("nan"),) * 3, "not run"),  # nothing measured: no verdict
    # bounds_on: interval, a non-inferiority test: the whole interval must meet the bound
    ({"stat": "difference", "at_least": -0.05, "bounds_on": "interval"}, (-0.03, -0.10, 0.04), "not reproduced"),
    ({"stat": "difference", "at_least": -0.05, "bounds_on": "interval"}, (0.01, -0.04, 0.06), "reproduced"),
    ({"stat": "range", "at_most": 0.1, "bounds_on": "interval"}, (0.05, 0.0, 0.12), "not reproduced"),
    ({"stat": "range", "at_most": 0.1, "bounds_on": "interval"}, (0.05, 0.0, 0.09), "reproduced"),
])
def test_single_test_verdicts(spec, effect, expected):
    value, low, high = effect
    assert judge_test({**spec, "run": True}, {"value": value, "low": low, "high": high}) == expected


def test_combining_verdicts():
    assert combine(["reproduced", "reproduced"]) == "reproduced"
    assert combine(["reproduced", "opposite"]) == "opposite"
    assert combine(["reproduced", "not run"]) == "not run"
    assert combine(["not reproduced", "reproduced"], "any") == "reproduced"
    assert combine(["opposite", "opposite"], "any") == "opposite"
    assert combine(["not run", "not reproduced"], "any") == "not reproduced"


def test_a_range_compares_its_cells_at_one_budget():
    """dpo runs only at `large`: the range over sft and dpo at the smallest budget is taken at `large`
    for both (the smallest budget they share), not at sft's `small` beside dpo's `large`."""
    cfg = config({"alike": claim({"stat": "range", "metric": "asr", "cell": {**CELL, "objective": ["sft", "dpo"],
                                  "budget": "smallest"}, "at_most": 0.1})})
    cfg["studies"]["grid"]["objectives"] = ["sft"]
    cfg["studies"]["dpo_only"] = {"scenarios": ["harmful"], "objectives": ["dpo"], "defenses": ["none"],
                                  "budgets": ["large"]}
    [test] = plan(cfg, "toy")
    assert test["cells"] == ["harmful/sft/none/large", "harmful/dpo/none/large"] and test["run"]
    cfg["studies"]["dpo_only"]["budgets"] = ["huge"]
    cfg["budgets"]["huge"] = {"type": "steps", "steps": 160}
    [test] = plan(cfg, "toy")
    assert not test["run"]  # no budget both were run at


def test_a_cell_is_never_compared_with_itself():
    """Growth from the smallest to the largest budget of a cell run at one budget only: not run, where
    comparing the cell with itself would give Δ = 0 (and pass any bound that allows no change)."""
    cfg = config({"grows": claim({"stat": "difference", "metric": "asr", "cell": {**CELL, "objective": "dpo"},
                                  "versus": {"budget": "smallest"}, "at_most": 0.0})})
    cfg["studies"]["grid"]["objectives"] = ["sft"]
    cfg["studies"]["dpo_only"] = {"scenarios": ["harmful"], "objectives": ["dpo"], "defenses": ["none"],
                                  "budgets": ["large"]}
    [test] = plan(cfg, "toy")
    assert test["cells"] == ["harmful/dpo/none/large", "harmful/dpo/none/large"] and not test["run"]


def test_step_and_token_budgets_are_not_ordered_against_each_other():
    from safedrift.errors import ConfigError

    cfg = config({"x": claim({"stat": "value", "metric": "asr", "cell": CELL, "at_least": 0.5})})
    cfg["budgets"]["t1k"] = {"type": "tokens", "tokens": 1000}
    cfg["studies"]["grid"]["budgets"].append("t1k")
    with pytest.raises(ConfigError, match=r"config key claims.x: budget largest of harmful/sft/none/largest is "
                                          r"ambiguous.*name the budget"):
        plan(cfg, "toy")


def test_a_metric_missing_from_a_seed_is_not_run_not_a_verdict(tmp_path, monkeypatch):
    """kl's new-task accuracy written for seed 0 only would otherwise be a 'reproduced' on one seed of
    three; a misspelt metric would otherwise read 'not reproduced'."""
    cfg = config({"hurts": claim({"stat": "difference", "metric": "new_task_capability",
                                  "cell": {**CELL, "defense": "kl"}, "versus": {"defense": "none"},
                                  "at_most": -0.2}),
                  "typo": claim({"stat": "value", "metric": "asrr", "cell": CELL, "at_least": 0.5}),
                  "fine": claim({"stat": "value", "metric": "asr", "cell": CELL, "at_least": 0.5})})
    world(tmp_path, RATES)
    for seed in (0, 1, 2):
        write_rows(tmp_path, f"results/toy/runs/harmful/sft/none/large/seed{seed}", "new_task_capability", [1.0] * 60)
    write_rows(tmp_path, "results/toy/runs/harmful/sft/kl/large/seed0", "new_task_capability", [0.0] * 60)
    table = run_scorecard(tmp_path, monkeypatch, cfg).set_index("id")
    assert table.loc["hurts", "verdict"] == "not run" and table.loc["typo", "verdict"] == "not run"
    assert "no scored new_task_capability in results/toy/runs/harmful/sft/kl/large/seed1" in table.loc["hurts", "why"]
    assert table.loc["fine", "verdict"] == "reproduced"
    md = (tmp_path / "tables/claims.md").read_text()
    assert "– (no scored asrr in results/toy/runs/harmful/sft/none/large/seed0)" in md


def test_the_latex_scorecard_is_plain_pdflatex_input(tmp_path, monkeypatch):
    cfg = config({"collapse": claim({"stat": "difference", "metric": "asr", "cell": CELL, "versus": "reference",
                                     "at_least": 0.5, "excludes_zero": True})})
    world(tmp_path, RATES)
    run_scorecard(tmp_path, monkeypatch, cfg)
    tex = (tmp_path / "tables/claims.tex").read_text()
    assert tex.isascii(), sorted({c for c in tex if not c.isascii()})
    assert r"\textbf{collapse}" in tex and "**" not in tex and r"$\Delta$ asr" in tex and r"$\checkmark$" in tex


@pytest.mark.parametrize("spec, effect, expected", [
    ({"stat": "difference", "at_least": 0.05, "excludes_zero": True}, (0.10, float("nan"), float("nan")),
     "not reproduced"),
    # an interval below 0 excludes zero, but not on the side a rise asks for
    ({"stat": "difference", "at_least": 0.0, "excludes_zero": True}, (0.0, -0.2, -0.1), "opposite"),
])
def test_an_interval_that_is_undefined_or_on_the_wrong_side_does_not_exclude_zero(spec, effect, expected):
    value, low, high = effect
    assert judge_test({**spec, "run": True}, {"value": value, "low": low, "high": high}) == expected


def test_a_range_over_listed_budgets_keeps_each_budget():
    """A range across budgets (how much a cell moves between small and large) spans both budgets;
    collapsing them onto one would make its range 0 and pass any `at_most`."""
    cfg = config({"moves": claim({"stat": "range", "metric": "asr", "cell": {**CELL, "budget": ["small", "large"]},
                                  "at_most": 0.1})})
    [test] = plan(cfg, "toy")
    assert test["cells"] == ["harmful/sft/none/small", "harmful/sft/none/large"] and test["run"]


def test_a_budget_versus_among_step_and_token_budgets_is_one_config_line():
    from safedrift.errors import ConfigError

    cfg = config({"x": claim({"stat": "difference", "metric": "asr", "cell": {**CELL, "budget": "small"},
                              "versus": {"budget": "largest"}, "at_least": 0.0})})
    cfg["budgets"]["t1k"] = {"type": "tokens", "tokens": 1000}
    cfg["studies"]["grid"]["budgets"].append("t1k")
    with pytest.raises(ConfigError, match=r"^config key claims.x: budget largest of .* is ambiguous"):
        plan(cfg, "toy")


def test_a_test_that_is_not_run_says_why():
    cfg = config({"absent": claim({"stat": "value", "metric": "asr", "cell": {**CELL, "objective": "orpo"},
                                   "at_least": 0.1}),
                  "itself": claim({"stat": "difference", "metric": "asr", "cell": {**CELL, "budget": "large"},
                                   "versus": {"budget": "largest"}, "at_least": 0.0})})
    why = {t["claim"]: t.get("why") for t in plan(cfg, "toy")}
    assert why == {"absent": "harmful/orpo/none/largest is in no study",
                   "itself": "it compares harmful/sft/none/large with itself"}


def test_latex_escapes_every_special_character_once():
    from safedrift.report.tables import _latex_escape

    assert _latex_escape("**a_b** (Goel): ASR <2% -> >97%, {x} ~ ^ $ \\ Δ ≥ ✓") == (
        r"\textbf{a\_b} (Goel): ASR $<$2\% -$>$ $>$97\%, \{x\} \textasciitilde{} \textasciicircum{} \$ "
        r"\textbackslash{} $\Delta$ $\geq$ $\checkmark$")


def test_a_rate_at_zero_or_one_has_a_score_interval_in_the_scorecard(tmp_path, monkeypatch):
    """All-1 runs against an all-0 reference on 60 prompts: Δ 1.00 with Newcombe's interval [0.915, 1]
    (was [1, 1]); a value of 0 has Wilson's upper bound 0.060 (was 0)."""
    cfg = config({
        "collapse": claim({"stat": "difference", "metric": "asr", "cell": CELL, "versus": "reference",
                           "at_least": 0.5, "excludes_zero": True}),
        "none_left": claim({"stat": "value", "metric": "asr", "cell": {**CELL, "defense": "kl"}, "at_most": 0.1}),
    })
    world(tmp_path, {"reference": 0.0, "sft/none/large": 1.0, "sft/kl/large": 0.0})
    table = run_scorecard(tmp_path, monkeypatch, cfg).set_index("id")
    assert table.loc["collapse", "verdict"] == "reproduced"
    assert table.loc["collapse", "low"] == pytest.approx(1 - math.hypot(0.0602, 0.0602), abs=2e-3)
    assert table.loc["collapse", "high"] == pytest.approx(1.0)
    assert table.loc["none_left", "low"] == 0.0 and table.loc["none_left", "high"] == pytest.approx(0.0602, abs=1e-3)


def test_a_ratio_over_a_zero_denominator_is_not_run(tmp_path, monkeypatch):
    """ASR 0.1 over ASR 0: the ratio was inf with a NaN interval and passed at_least 2; now not run, saying why."""
    cfg = config({"doubles": claim({"stat": "ratio", "metric": "asr", "cell": CELL, "versus": {"defense": "kl"},
                                    "at_least": 2})})
    world(tmp_path, {"reference": 0.0, "sft/none/large": 0.1, "sft/kl/large": 0.0})
    row = run_scorecard(tmp_path, monkeypatch, cfg).set_index("id").loc["doubles"]
    assert row["verdict"] == "not run" and "ratio undefined" in row["why"]


def test_a_bound_met_by_the_estimate_only_is_marked_and_can_be_required_of_the_interval(tmp_path, monkeypatch):
    """Δ −0.02 against "at least −0.05" on 60 prompts: the estimate meets the bound, its interval reaches
    far below it. The default (the papers' reading) reproduces it and marks it "estimate only";
    bounds_on: interval makes it a non-inferiority test that does not pass."""
    keeps = {"stat": "difference", "metric": "asr", "cell": {**CELL, "defense": "kl"}, "versus": {"defense": "none"},
             "at_least": -0.05}
    cfg = config({"keeps": claim(keeps), "keeps_strictly": claim({**keeps, "bounds_on": "interval"}),
                  "collapse": claim({"stat": "difference", "metric": "asr", "cell": CELL, "versus": "reference",
                                     "at_least": 0.5, "excludes_zero": True})})
    world(tmp_path, {"reference": 0.0, "sft/none/large": 0.9, "sft/kl/large": 0.88})
    table = run_scorecard(tmp_path, monkeypatch, cfg).set_index("id")
    assert table.loc["keeps", "effect"] == pytest.approx(-1 / 60) and table.loc["keeps", "low"] < -0.05
    assert table.loc["keeps", "verdict"] == "reproduced" and not table.loc["keeps", "interval_meets_bounds"]
    assert table.loc["keeps_strictly", "verdict"] == "not reproduced"
    assert table.loc["collapse", "verdict"] == "reproduced" and table.loc["collapse", "interval_meets_bounds"]
    md = (tmp_path / "tables/claims.md").read_text()
    assert md.count("reproduced (estimate only)") == 1 and "(whole CI)" in md


def test_a_range_of_rates_stays_between_0_and_1_when_seeds_disagree():
    """Seed means 0, 0.9, 0.1 against 1, 1, 1: the seed part (t on 2 degrees of freedom) reaches past 1."""
    from safedrift.evaluate.stats import joint_replicates, make_cell
    from safedrift.report.claims import statistic

    rank = np.arange(40) / 40
    a = make_cell({s: {i: [float(rank[i] < rate)] for i in range(40)} for s, rate in enumerate((0.0, 0.9, 0.1))})
    b = make_cell({s: {i: [1.0] for i in range(40)} for s in range(3)})
    ci = statistic({"stat": "range"}, joint_replicates([a, b], 300), 0.95)
    assert ci["value"] == pytest.approx(1 - 1 / 3) and 0.0 <= ci["low"] and ci["high"] == 1.0


def test_cells_that_share_no_scored_prompt_are_not_run_not_a_verdict(tmp_path, monkeypatch):
    """The run scored prompts 0-29 and the reference 30-59: no paired effect exists; it read 'not reproduced'."""
    cfg = config({"collapse": claim({"stat": "difference", "metric": "asr", "cell": CELL, "versus": "reference",
                                     "at_least": 0.5, "excludes_zero": True})})
    write_rows(tmp_path, "results/toy/reference", "asr", [np.nan] * 30 + [0.0] * 30)
    for seed in (0, 1, 2):
        write_rows(tmp_path, f"results/toy/runs/harmful/sft/none/large/seed{seed}", "asr", [1.0] * 30 + [np.nan] * 30)
    row = run_scorecard(tmp_path, monkeypatch, cfg, max_unscored=1.0).set_index("id").loc["collapse"]
    assert row["verdict"] == "not run" and row["why"] == "no asr prompt scored in every cell", row.to_dict()


def test_a_cell_mostly_unscored_is_not_run_and_the_scorecard_counts_unscored_responses(tmp_path, monkeypatch):
    """54 of 60 asr responses of one seed unscored can pass the metrics job (it checks the judge's share over all
    its metrics) and the claim was decided on the 6 left."""
    cfg = config({"collapse": claim({"stat": "difference", "metric": "asr", "cell": CELL, "versus": "reference",
                                     "at_least": 0.5, "excludes_zero": True}),
                  "partly": claim({"stat": "value", "metric": "asr", "cell": {**CELL, "defense": "kl"},
                                   "at_most": 0.5})})
    write_rows(tmp_path, "results/toy/reference", "asr", [0.0] * 60)
    for seed in (0, 1, 2):
        values = [1.0] * 60 if seed else [1.0] * 6 + [np.nan] * 54
        write_rows(tmp_path, f"results/toy/runs/harmful/sft/none/large/seed{seed}", "asr", values)
        write_rows(tmp_path, f"results/toy/runs/harmful/sft/kl/large/seed{seed}", "asr", [0.0] * 59 + [np.nan])
    table = run_scorecard(tmp_path, monkeypatch, cfg, max_unscored=0.05).set_index("id")
    assert table.loc["collapse", "verdict"] == "not run"
    assert table.loc["collapse", "why"] == ("54 of 60 asr responses unscored in "
                                            "results/toy/runs/harmful/sft/none/large/seed0 (> evaluation.max_unscored 0.05)")
    assert table.loc["partly", "verdict"] == "reproduced"  # 1 of 60 per seed: under the limit, and shown
    assert json.loads(table.loc["partly", "unscored"]) == [3] and json.loads(table.loc["partly", "responses"]) == [180]
    assert "0.00 [0.00, 0.06] (unscored 3/180)" in (tmp_path / "tables/claims.md").read_text()


def test_a_judge_free_metrics_missing_answers_do_not_stop_its_test():
    """trait_yes is missing where the subject answered neither yes nor no: the subject's non-answers, never
    the judge's unscored responses (evaluate.metrics.judge_free), so max_unscored does not apply."""
    from safedrift.report.scorecard import load_cell

    import safedrift.report.scorecard as scorecard_module

    rows = pd.DataFrame({"metric": "trait_yes", "id": [f"t/{i}" for i in range(10)], "sample": 0,
                         "value": [1.0] * 5 + [np.nan] * 5, "seed": 0})
    cache = {"s": rows}
    cell, unscored, total = load_cell(["s"], "trait_yes", cache, max_unscored=0.05)
    assert (unscored, total) == (5, 10)
    judged = rows.assign(metric="asr")
    assert load_cell(["s"], "asr", {"s": judged}, max_unscored=0.05) == (
        "5 of 10 asr responses unscored in s (> evaluation.max_unscored 0.05)")
    assert scorecard_module.judge_free("trait_yes") and not scorecard_module.judge_free("asr")
