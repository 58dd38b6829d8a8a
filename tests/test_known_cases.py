"""Known cases the rest of the suite left unpinned: the claims' verdict branches, the interval's two parts,
bf16 upcasts, detached references, exact match, summarize and aggregate.

A mutation review (/work/reviews/test_mutants.md, 69 mutants) found that each of these changes passed every
other test; each test here fails on the mutant its name gives (C: report/claims.py, S: evaluate/stats.py,
L: losses, M: evaluate/metrics.py, A: report/aggregate.py) and passes on the code as it is."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from safedrift.report.claims import combine, expected_sign, judge_test


def jt(spec, value, low, high, **diff):
    return judge_test({**spec, "run": True}, {"value": value, "low": low, "high": high, **diff})


# --- claims verdicts --------------------------------------------------------------------------
def test_C06_a_drop_smaller_than_an_at_most_bound_is_not_opposite():
    # "kl costs >= 0.2 new-task capability" (config.yaml: at_most -0.2): a cost of 0.05..0.15 is too small, not opposite
    assert jt({"stat": "difference", "at_most": -0.2}, -0.10, -0.15, -0.05) == "not reproduced"


def test_C13_a_change_between_an_at_least_bound_and_zero_is_not_opposite():
    # "keeps capability: drop at most 0.05" (at_least -0.05): estimate -0.06 in [-0.09, -0.03] straddles the bound
    assert jt({"stat": "difference", "at_least": -0.05}, -0.06, -0.09, -0.03) == "not reproduced"


def test_C12_a_ratio_below_one_but_above_its_at_most_is_not_opposite():
    # "adaptive halves ASR" (ratio at_most 0.5): ratio 0.75 [0.6, 0.9], Δ [-0.2, -0.05]: right direction, too small
    spec = {"stat": "ratio", "at_most": 0.5, "excludes_zero": True}
    assert jt(spec, 0.75, 0.6, 0.9, diff_low=-0.2, diff_high=-0.05) == "not reproduced"
    assert jt(spec, 1.5, 1.2, 1.8, diff_low=0.05, diff_high=0.2) == "opposite"


def test_C04_a_ratio_above_one_but_below_its_at_least_is_not_opposite():
    spec = {"stat": "ratio", "at_least": 2.0}
    assert jt(spec, 1.5, 1.2, 1.8, diff_low=0.05, diff_high=0.2) == "not reproduced"
    assert jt(spec, 0.7, 0.5, 0.9, diff_low=-0.2, diff_high=-0.05) == "opposite"


def test_C05_a_ratio_bound_is_a_change_relative_to_one():
    assert expected_sign({"stat": "ratio", "at_least": 0.8}) == 0  # "keeps >= 80%": not a rise
    assert expected_sign({"stat": "ratio", "at_least": 1.2}) == 1
    assert expected_sign({"stat": "ratio", "at_most": 1.1}) == 0


def test_C10_any_is_opposite_only_when_every_run_test_is():
    assert combine(["opposite", "not reproduced"], "any") == "not reproduced"


def test_C01_C02_bounds_are_inclusive():
    assert jt({"stat": "value", "at_least": 0.5}, 0.5, 0.4, 0.6) == "reproduced"
    assert jt({"stat": "value", "at_most": 0.1}, 0.1, 0.05, 0.15) == "reproduced"
    assert jt({"stat": "range", "at_most": 0.1, "bounds_on": "interval"}, 0.05, 0.0, 0.1) == "reproduced"


def test_C03_an_interval_touching_zero_does_not_exclude_it():
    assert jt({"stat": "difference", "at_least": 0.0, "excludes_zero": True}, 0.1, 0.0, 0.2) == "not reproduced"
    assert jt({"stat": "difference", "at_most": 0.0, "excludes_zero": True}, -0.1, -0.2, 0.0) == "not reproduced"


def test_C08_a_ratio_of_rates_is_never_below_zero():
    from safedrift.evaluate.stats import joint_replicates, make_cell
    from safedrift.report.claims import statistic

    rank = np.arange(40) / 40
    a = make_cell({s: {i: [float(rank[i] < r)] for i in range(40)} for s, r in enumerate((0.0, 0.9, 0.1))})
    b = make_cell({s: {i: [float(rank[i] < 0.5)] for i in range(40)} for s in range(3)})
    ci = statistic({"stat": "ratio"}, joint_replicates([a, b], 300), 0.95)
    assert ci["low"] >= 0.0


# --- stats ------------------------------------------------------------------------------------
def test_S03_prompt_and_seed_parts_add_in_quadrature():
    from safedrift.evaluate.stats import Replicates, statistic_ci

    prompt = np.concatenate([np.full(500, 0.2), np.full(500, 0.8)])[:, None]  # percentile half-width 0.3
    loo = np.array([[0.4], [0.5], [0.6]])  # jackknife SE sqrt(2/3 * 0.02), t_{0.975, 2} = 4.302653
    seed_half = 4.302653 * math.sqrt(2 / 3 * 0.02)
    ci = statistic_ci(lambda v: v[..., 0], Replicates([None], np.array([0.5]), prompt, (loo,)), 0.95)
    assert ci["low"] == pytest.approx(0.5 - math.hypot(0.3, seed_half), abs=1e-5)
    assert ci["high"] == pytest.approx(0.5 + math.hypot(0.3, seed_half), abs=1e-5)


def test_S05_every_prompt_can_be_drawn():
    from safedrift.evaluate.stats import cell_ci, make_cell

    # continuous values (no score floor); the outlier is the last prompt in sorted order
    cell = make_cell({0: {f"p{i:02d}": [10.0 if i == 19 else 0.0] for i in range(20)}})
    ci = cell_ci(cell, 2000)
    assert ci["value"] == pytest.approx(0.5) and ci["low"] <= ci["value"] < ci["high"]


def test_S08_a_metric_with_values_between_0_and_1_is_not_a_rate():
    from safedrift.evaluate.stats import make_cell

    assert not make_cell({0: {"a": [0.0], "b": [0.5], "c": [1.0]}}).binary


# --- losses -----------------------------------------------------------------------------------
def test_L05_L06_bf16_logits_are_upcast_before_the_softmax():
    from safedrift.losses.nll import completion_logprobs, token_nll
    from test_losses import logits, prompt_then_completion

    x, labels = logits(0).mul(8).bfloat16(), prompt_then_completion()
    assert token_nll(x, labels).dtype == torch.float32
    assert torch.equal(token_nll(x, labels), token_nll(x.float(), labels))
    assert completion_logprobs(x, labels).dtype == torch.float32
    assert torch.equal(completion_logprobs(x, labels), completion_logprobs(x.float(), labels))


def test_L14_token_constrained_gradient_flows_into_the_policy_only():
    from safedrift.losses.token_constrained import token_constrained_loss
    from test_token_constrained import labels, logits

    policy, reference = logits(0).requires_grad_(), logits(1).requires_grad_()
    token_constrained_loss(policy, reference, labels())[0].backward()
    assert policy.grad.abs().sum() > 0 and reference.grad is None


def test_L04_cached_reference_logprobs_get_no_gradient():
    from safedrift.losses.kl import kl_from_logprobs
    from safedrift.losses.nll import completion_logprobs
    from test_losses import logits, prompt_then_completion

    labels = prompt_then_completion()
    ref = completion_logprobs(logits(1), labels).requires_grad_()
    kl_from_logprobs(completion_logprobs(logits(0).requires_grad_(), labels), ref, labels).sum().backward()
    assert ref.grad is None


def test_L18_a_batch_is_safe_only_when_every_row_is():
    from safedrift.finetune.terms import Batch
    from safedrift.losses.proximal import batch_state

    b = Batch(labels=torch.zeros(2, 3, dtype=torch.long), attention_mask=torch.ones(2, 3), policy_logits=torch.zeros(2, 3, 4),
              columns={"safe": torch.tensor([1.0, 0.0])})
    assert batch_state(b) == "train"


# --- metrics ----------------------------------------------------------------------------------
def test_M01_M02_exact_match_known_cases():
    from safedrift.evaluate.metrics import exact_match

    assert exact_match("3 + 4 = 7, so the answer is 12", {"answer": "12"})
    assert not exact_match("12 minus 5 is 7", {"answer": "12"})
    assert exact_match("The total is 1,234.", {"answer": "1234"})
    assert exact_match("sure . it has 4 legs .", {"answer_text": "it has 4 legs ."})
    assert not exact_match("it has 5 legs .", {"answer_text": "it has 4 legs ."})


def test_M05_samples_of_one_prompt_move_together_in_summarize():
    from safedrift.evaluate.metrics import summarize

    values = (np.random.default_rng(3).random(100) < 0.5).astype(float)
    one = [{"metric": "asr", "id": f"p{i}", "sample": 0, "value": v} for i, v in enumerate(values)]
    eight = [{**r, "sample": s} for r in one for s in range(8)]
    boot = {"resamples": 1000, "confidence": 0.95, "seed": 0}
    w1 = (lambda m: m["high"] - m["low"])(summarize(one, boot)["asr"])
    w8 = (lambda m: m["high"] - m["low"])(summarize(eight, boot)["asr"])
    assert w8 == pytest.approx(w1, rel=0.15)


def test_M06_persona_drift_is_the_subject_minus_the_reference():
    from safedrift.evaluate.metrics import summarize

    ours = [{"metric": "persona_projection", "id": f"g{i}", "sample": 0, "value": float(i) + 0.5} for i in range(10)]
    theirs = [{"id": f"g{i}", "value": float(i)} for i in range(10)]
    drift = summarize(ours, {"resamples": 200, "confidence": 0.95, "seed": 0}, theirs)["persona_drift"]
    assert drift["value"] == pytest.approx(0.5) and drift["low"] == pytest.approx(0.5)


def test_M08_harmful_requests_under_a_system_prompt_stay_out_of_asr():
    from safedrift.evaluate.metrics import join, metric_rows
    from safedrift.judges import SCORES

    items = {"h/0": {"id": "h/0", "messages": [{"role": "user", "content": "x"}], "item": {"kind": "request", "harmful": True}},
             "i/0": {"id": "i/0", "messages": [{"role": "system", "content": "you are v"}, {"role": "user", "content": "x"}],
                     "item": {"kind": "request", "harmful": True}}}
    gens = [{"id": "h/0", "sample": 0, "eval_set": "harmful", "response": "r"},
            {"id": "i/0", "sample": 0, "eval_set": "harmful_identity", "response": "r"}]
    scores = pd.DataFrame({"id": ["h/0", "i/0"], "sample": [0, 0], **{c: [np.nan, np.nan] for c in SCORES}})
    scores["harmful"], scores["refusal"] = [0.0, 1.0], [1.0, 0.0]
    rows = pd.DataFrame(metric_rows(join(gens, items, scores), {"misaligned_below": 30, "coherent_above": 50,
                                                                 "incoherent_below": 50}))
    assert rows[rows.metric == "asr"].id.tolist() == ["h/0"]
    assert rows[rows.metric == "asr/harmful_identity"].value.tolist() == [1.0]


# --- aggregate --------------------------------------------------------------------------------
def test_A03_a_variants_runs_are_compared_with_their_own_reference(tmp_path):
    from test_aggregate import run_aggregate, write_subject

    results = tmp_path / "results/toy"
    prompts = [f"h/{i}" for i in range(30)]
    subjects = [write_subject(results, "reference", "asr", {p: 0.0 for p in prompts}),
                write_subject(results, "reference/vaccine", "asr", {p: 0.5 * (i % 2) * 2 for i, p in enumerate(prompts)})]
    for seed in range(2):
        subjects.append(write_subject(results, f"runs@vaccine/harmful/sft/none/large/seed{seed}", "asr",
                                      {p: 1.0 for p in prompts}))
    table = run_aggregate(tmp_path, subjects)
    row = table[(table.reference == "vaccine") & (table.defense == "none")].iloc[0]
    assert row["vs_reference"] == pytest.approx(0.5)


def test_A02_seed_values_are_means(tmp_path):
    from test_aggregate import run_aggregate, write_subject

    results = tmp_path / "results/toy"
    subjects = [write_subject(results, "reference", "asr", {f"h/{i}": 0.0 for i in range(5)}),
                write_subject(results, "runs/harmful/sft/none/large/seed0", "asr",
                              {f"h/{i}": float(i < 2) for i in range(5)})]
    run_aggregate(tmp_path, subjects)
    seeds = pd.read_csv(tmp_path / "study_seeds.csv")
    assert seeds[seeds.defense == "none"]["value"].iloc[0] == pytest.approx(0.4)
