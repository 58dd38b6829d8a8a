"""The adaptive defense's per-batch rule (Goel et al. 2026): a 1..5 judge score per optimizer step,
w = clamp((r - 2) / 3, 0.1, 0.9), loss = (1 - w) NLL + w KL. Pure functions on tiny tensors with
hand-computed values, a float64 gradient check, the defense's weights per step from a risk file,
and the trainer's composition of a term that replaces the NLL."""

from __future__ import annotations

import json

import pytest
import torch

from safedrift.defenses import make_defense
from safedrift.finetune.trainer import total_loss
from safedrift.losses.adaptive import BatchMixtureTerm, batch_judge_score, batch_kl_weight, nll_kl_mixture
from safedrift.losses.kl import KLTerm, kl_to_reference
from safedrift.losses.nll import token_nll
from test_losses import B, batch_for_kl, context, logits, prompt_then_completion


def test_batch_judge_score_maps_risk_to_the_1_to_5_scale():
    risk = torch.tensor([0.0, 0.25, 1.0, 0.5])
    assert batch_judge_score(risk, "max").item() == pytest.approx(5.0)
    assert batch_judge_score(risk, "mean").item() == pytest.approx(1 + 4 * 0.4375)
    assert batch_judge_score(torch.zeros(3)).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="median"):
        batch_judge_score(risk, "median")


def test_batch_kl_weight_is_the_papers_clamped_ramp():
    score = torch.tensor([1.0, 2.0, 2.3, 3.5, 4.0, 4.7, 5.0])
    expected = torch.tensor([0.1, 0.1, 0.1, 0.5, 2 / 3, 0.9, 0.9])
    assert torch.allclose(batch_kl_weight(score), expected)


def test_nll_kl_mixture_interpolates_nll_and_mean_kl():
    nll, kl = torch.tensor(2.0), torch.tensor([1.0, 0.0, 0.5])
    assert nll_kl_mixture(nll, kl, torch.tensor(0.1)).item() == pytest.approx(0.9 * 2.0 + 0.1 * 0.5)
    assert nll_kl_mixture(nll, kl, torch.tensor(0.9)).item() == pytest.approx(0.1 * 2.0 + 0.9 * 0.5)


def test_nll_kl_mixture_gradcheck_in_float64():
    policy = logits(0, torch.float64).requires_grad_()
    reference, labels = logits(1, torch.float64), prompt_then_completion()
    w = torch.tensor(0.3, dtype=torch.float64)

    def loss(p):
        return nll_kl_mixture(token_nll(p, labels), kl_to_reference(p, reference, labels), w)

    assert torch.autograd.gradcheck(loss, (policy,))


def test_the_mixture_term_replaces_the_trainers_nll():
    """total_loss (the trainer's composition): a plain KL term is added to the NLL, the per-batch
    term's value is the whole loss (1 - w) NLL + w KL."""
    batch, kl = batch_for_kl(torch.full((B,), 0.25))
    nll = token_nll(batch.policy_logits, batch.labels)
    batch.nll = nll
    loss, logs = total_loss(nll, [BatchMixtureTerm("forward")], batch)
    assert loss.item() == pytest.approx(0.75 * nll.item() + 0.25 * kl.mean().item(), rel=1e-6)
    assert logs["lambda_mean"] == pytest.approx(0.25) and logs["nll"] == pytest.approx(nll.item())
    added, _ = total_loss(nll, [KLTerm(0.25, "forward")], batch)
    assert added.item() == pytest.approx(nll.item() + 0.25 * kl.mean().item(), rel=1e-6)


def risk_file(tmp_path, risks) -> str:
    path = tmp_path / "risk.jsonl"
    path.write_text("".join(json.dumps({"id": i, "risk": r}) + "\n" for i, r in risks))
    return str(path)


@pytest.mark.parametrize("reduce, expected", [
    # step 1 holds risks (0.0, 0.1): max 0.1 -> r 1.4 -> w 0.1 (clamped); mean 0.05 -> r 1.2 -> 0.1
    # step 2 holds risks (0.9, 0.5): max -> r 4.6 -> w 0.8667; mean 0.7 -> r 3.8 -> w 0.6
    ("max", [0.1, 0.1, 2.6 / 3, 2.6 / 3]),
    ("mean", [0.1, 0.1, 0.6, 0.6]),
])
def test_per_batch_rule_gives_every_row_of_a_step_its_steps_weight(tmp_path, reduce, expected):
    path = risk_file(tmp_path, [("a", 0.0), ("b", 0.1), ("c", 0.9), ("d", 0.5)])
    settings = {"type": "adaptive", "risk": "critic", "rule": "per_batch", "batch_risk": reduce,
                "direction": "forward"}
    defense = make_defense(settings, context(inputs={"risk": path}))  # batch_size 2: rows 0-1 = step 1, rows 2-3 = step 2
    assert defense.kl_weights([{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}]) == pytest.approx(expected)
    [term] = defense.terms()
    assert isinstance(term, BatchMixtureTerm) and term.replaces_nll and term.direction == "forward"


def test_per_example_rule_stays_the_default(tmp_path):
    path = risk_file(tmp_path, [("a", 0.0), ("b", 0.4)])
    settings = {"type": "adaptive", "risk": "probe", "a": 2.0, "b": 0.1, "lambda_min": 0.2, "lambda_max": 1.5,
                "direction": "forward"}
    defense = make_defense(settings, context(inputs={"risk": path}))
    assert defense.kl_weights([{"id": "a"}, {"id": "b"}]) == pytest.approx([0.2, 0.9])
    [term] = defense.terms()
    assert isinstance(term, KLTerm) and not term.replaces_nll


def test_per_batch_rule_pools_by_the_batch_mean_by_default(tmp_path):
    """Goel et al.'s released code averages its judge's scores over the batch."""
    path = risk_file(tmp_path, [("a", 0.0), ("b", 0.1), ("c", 0.9), ("d", 0.5)])
    settings = {"type": "adaptive", "risk": "critic", "rule": "per_batch", "direction": "forward"}
    defense = make_defense(settings, context(inputs={"risk": path}))
    assert defense.kl_weights([{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}]) == pytest.approx([0.1, 0.1, 0.6, 0.6])
