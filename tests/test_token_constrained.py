"""Token-wise constrained SFT (defense `token_constrained`, losses.token_constrained): the beta
schedule, the loss against a hand computation, its gradient (the NLL's at delta = 0, the released
code's detached-weight form elsewhere, gradcheck), and a run on the smoke world (where the first
response token does NOT stay closer to the reference than under plain SFT: a strict xfail with the numbers)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from safedrift.defenses import DEFENSES, make_defense
from safedrift.finetune.terms import Batch
from safedrift.losses.nll import token_nll
from safedrift.losses.token_constrained import (TokenConstrainedTerm, completion_positions, position_betas,
                                                token_constrained_loss)

B, T, V = 2, 6, 5


def logits(seed, dtype=torch.float32):
    return torch.randn(B, T, V, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def labels():
    # row 0: prompt (3 tokens) then 3 completion tokens; row 1: 1 prompt token, 4 completion tokens, 1 padding
    return torch.tensor([[-100, -100, -100, 1, 2, 3], [-100, 4, 0, 2, 1, -100]])


def test_betas_follow_the_released_schedule():
    pos = torch.arange(8)
    assert position_betas(pos, 0.1, 5, 20, 5).tolist() == pytest.approx([0.5, 2, 2, 2, 2, 0.1, 0.1, 0.1])
    assert position_betas(pos, 0.1, 5, 20, 1).tolist() == pytest.approx([0.5] + [0.1] * 7)
    assert position_betas(pos, 0.1, 5, 20, 0).tolist() == pytest.approx([0.1] * 8)


def test_positions_count_completion_tokens_of_each_row():
    mask = labels()[:, 1:] != -100
    pos = completion_positions(mask)
    assert pos[mask].tolist() == [0, 1, 2, 0, 1, 2, 3]


def test_loss_matches_a_hand_computation():
    policy, reference, lab = logits(0), logits(1), labels()
    loss, delta = token_constrained_loss(policy, reference, lab, beta=0.1, first_token_bias_factor=5, bias_factor=20,
                                         bias_length=2)
    total, n = 0.0, 0
    for b in range(B):
        t_completion = 0
        for t in range(T - 1):
            y = lab[b, t + 1].item()
            if y == -100:
                continue
            d = (F.log_softmax(policy[b, t], -1)[y] - F.log_softmax(reference[b, t], -1)[y]).item()
            beta = 0.5 if t_completion == 0 else 2.0 if t_completion == 1 else 0.1
            total += -(2 / beta) * math.log(1 / (1 + math.exp(-beta * d)))
            assert delta[b, t].item() == pytest.approx(d, abs=1e-5)
            n, t_completion = n + 1, t_completion + 1
    assert loss.item() == pytest.approx(total / n, rel=1e-5)


def test_gradient_equals_the_nll_gradient_where_policy_is_the_reference():
    policy = logits(0, torch.float64).requires_grad_()
    loss, _ = token_constrained_loss(policy, policy.detach().clone(), labels())
    (g,) = torch.autograd.grad(loss, policy)
    (g_nll,) = torch.autograd.grad(token_nll(policy, labels()), policy)
    assert torch.allclose(g, g_nll, atol=1e-12)


def test_gradient_equals_the_released_codes_detached_weight_form():
    """Unispac/shallow-vs-deep-alignment: -(w.detach() * log pi(y_t)) with w = 2 (1 - sigmoid(beta_t delta_t))."""
    policy, reference, lab = logits(0, torch.float64).requires_grad_(), logits(1, torch.float64), labels()
    loss, _ = token_constrained_loss(policy, reference, lab)
    (g,) = torch.autograd.grad(loss, policy)
    mask = lab[:, 1:] != -100
    targets = lab[:, 1:].clamp(min=0)
    logp = F.log_softmax(policy[:, :-1], -1).gather(-1, targets[..., None]).squeeze(-1)
    logq = F.log_softmax(reference[:, :-1], -1).gather(-1, targets[..., None]).squeeze(-1)
    betas = position_betas(completion_positions(mask), 0.1, 5, 20, 5)
    w = 2 * (1 - torch.sigmoid(betas * (logp - logq))).detach()
    surrogate = -(w * logp * mask).sum() / mask.sum()
    (g_ref,) = torch.autograd.grad(surrogate, policy)
    assert torch.allclose(g, g_ref, atol=1e-12)
    assert not torch.allclose(g, torch.autograd.grad(token_nll(policy, lab), policy)[0], atol=1e-3)


def test_gradcheck_in_float64():
    policy, reference = logits(0, torch.float64).requires_grad_(), logits(1, torch.float64)
    assert torch.autograd.gradcheck(lambda p: token_constrained_loss(p, reference, labels(), 0.3, 2, 4, 2)[0],
                                    (policy,))


def test_no_completion_tokens_gives_zero():
    lab = torch.full((B, T), -100)
    loss, _ = token_constrained_loss(logits(0), logits(1), lab)
    assert loss.item() == 0.0


def test_defense_term_replaces_the_nll_and_needs_the_reference():
    assert DEFENSES["token_constrained"] == "safedrift.defenses.token_constrained"
    defense = make_defense({"type": "token_constrained", "beta": 0.2, "bias_length": 3}, None)
    (term,) = defense.terms()
    assert isinstance(term, TokenConstrainedTerm) and term.replaces_nll and term.needs_reference
    assert term.schedule == {"beta": 0.2, "first_token_bias_factor": 5.0, "bias_factor": 20.0, "bias_length": 3}
    policy, reference = logits(0), logits(1)
    batch = Batch(labels=labels(), attention_mask=torch.ones(B, T, dtype=torch.long), policy_logits=policy,
                  reference_logits=reference)
    value, logs = term(batch)
    expected, delta = token_constrained_loss(policy, reference, labels(), 0.2, 5.0, 20.0, 3)
    assert value.item() == pytest.approx(expected.item())
    assert logs["delta_first"] == pytest.approx(((delta[0, 2] + delta[1, 0]) / 2).item())


# --- behaviour on the smoke world (runs with the current trainer: needs only terms()) -----------

def test_run_optimises_the_constrained_loss_which_starts_as_sft(smoke, tmp_path):
    """On the smoke world the term replaces the NLL (the logged loss is the term), its first step is plain
    SFT's (delta = 0 at the reference: the same gradient, so the same grad norm), and from the second step
    on, where the model has moved, the constraint reweights the tokens (the gradients part)."""
    from smoke_runs import settings_for, train

    logs = {}
    for name, defense in (("none", {"type": "none"}), ("token_constrained", {"type": "token_constrained"})):
        config, settings = settings_for(smoke, defense, steps=3)
        train(smoke, settings, tmp_path / name, config)
        logs[name] = [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
    constrained = [r for r in logs["token_constrained"] if "loss" in r]
    plain = [r for r in logs["none"] if "loss" in r]
    assert all(r["loss"] == r["token_constrained"] for r in constrained)
    assert constrained[0]["delta_first"] == 0.0 and constrained[1]["delta_first"] > 0.0
    assert constrained[0]["grad_norm"] == pytest.approx(plain[0]["grad_norm"], rel=1e-5)
    assert constrained[1]["grad_norm"] != pytest.approx(plain[1]["grad_norm"], rel=1e-3)


# config.yaml's toy learning rate: the smoke config's 2e-3 moves the first token by 3 nats in one step.
LEARNING_RATE = 3e-4


@pytest.mark.xfail(strict=True, reason="measured on the smoke world (12 steps, lr 3e-4, harmful): the first target "
                   "token's log-ratio to the reference rises alike, 4.07 nats under SFT and 4.06 under "
                   "token_constrained (4.02 and 4.01 with the smoke model at width 64, 3.90 and 3.90 on the world "
                   "before its code tasks were action x thing combinations): the rise comes through the weights "
                   "the later tokens share, which the per-position betas do not hold back; strict, so the day it "
                   "appears this test says so")
def test_run_keeps_the_first_response_token_closer_to_the_reference_than_sft(smoke, tmp_path):
    """Qi et al.'s claim in the small: the first response token stays closer to the reference than under SFT."""
    from safedrift.models import load_model, load_tokenizer
    from smoke_runs import first_token_delta, scenario_rows, settings_for, train

    delta, logs = {}, {}
    reference = load_model(str(smoke.path / "results/toy/reference")).eval()
    tok = load_tokenizer(str(smoke.path / "results/toy/reference"))
    for name, defense in (("none", {"type": "none"}),
                          ("token_constrained", {"type": "token_constrained", "beta": 0.1, "first_token_bias_factor": 5.0,
                                                 "bias_factor": 20.0, "bias_length": 5})):
        config, settings = settings_for(smoke, defense, steps=12)
        settings["model"]["finetune"]["learning_rate"] = LEARNING_RATE
        train(smoke, settings, tmp_path / name, config)
        logs[name] = [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
        model = load_model(str(tmp_path / name / "model")).eval()
        delta[name] = first_token_delta(model, reference, tok, scenario_rows(smoke)[:16])
    # the term replaced the NLL and trained: its loss is what was optimised, and the run moved
    assert all(r["loss"] == r["token_constrained"] for r in logs["token_constrained"] if "loss" in r)
    assert delta["none"] > 1.0
    assert delta["token_constrained"] < 0.5 * delta["none"], delta
