"""Risk-adaptive regularisation strength ("Learning to Stay Safe", Goel et al. 2026).

Two rules (the `adaptive` defense's `rule`):

- per_example (ours): the KL is added to the NLL with a weight per example,
  lambda_i = clip(a * r_i + b, lambda_min, lambda_max) (`risk_weights`; the term is losses.kl.KLTerm).
- per_batch (the paper's): a judge scores each training batch on a 1..5 harm scale, r; the loss
  interpolates between NLL and KL with w = clamp((r - 2) / 3, 0.1, 0.9):
  loss = (1 - w) * NLL + w * KL (`batch_judge_score`, `batch_kl_weight`, `nll_kl_mixture`).
"""

from __future__ import annotations

import torch

from safedrift.finetune.terms import Batch, LossTerm
from safedrift.losses.kl import batch_kl

# The paper's clamp of the per-batch KL weight: even a harmless batch keeps some KL, even the most
# harmful one keeps some NLL.
W_MIN, W_MAX = 0.1, 0.9


def risk_weights(risk: torch.Tensor, a: float, b: float, lambda_min: float, lambda_max: float) -> torch.Tensor:
    """lambda_i = clip(a * r_i + b, lambda_min, lambda_max). risk [B] in [0, 1] -> [B]."""
    return (a * risk + b).clamp(lambda_min, lambda_max)


def batch_judge_score(risk: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """The batch's judge score on the paper's 1..5 harm scale from our critic's per-example risks.

    risk [N] in [0, 1] (P(harmful compliance) of each example of one optimizer step) -> scalar in
    [1, 5]: r = 1 + 4 * mean_i risk_i (reduce="mean", the paper's released code: the batch mean of
    its judge's scores) or 1 + 4 * max_i risk_i (reduce="max": one harmful example makes a harmful
    batch)."""
    if reduce == "max":
        pooled = risk.max()
    elif reduce == "mean":
        pooled = risk.mean()
    else:
        raise ValueError(f"batch risk reduce must be 'max' or 'mean', got {reduce!r}")
    return 1 + 4 * pooled


def batch_kl_weight(score: torch.Tensor) -> torch.Tensor:
    """w = clamp((r - 2) / 3, 0.1, 0.9). score [...] on the 1..5 scale -> [...] in [0.1, 0.9]."""
    return ((score - 2) / 3).clamp(W_MIN, W_MAX)


def nll_kl_mixture(nll: torch.Tensor, kl: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """loss = (1 - w) * NLL + w * mean_i KL_i.

    nll: scalar (mean token NLL of the batch), kl [B] (per-example KL, losses.kl.kl_to_reference),
    w: scalar in [0, 1] (batch_kl_weight) -> scalar. Gradient flows through nll and kl; w is a
    constant of the batch (it comes from the judge, not from the model)."""
    w = w.detach().to(nll.dtype)
    return (1 - w) * nll + w * kl.mean()


class BatchMixtureTerm(LossTerm):
    """The paper's per-batch rule: replaces the trainer's plain NLL by nll_kl_mixture. The batch's w
    arrives as `kl_weight` (every row of one optimizer step carries the same w)."""

    needs_reference = True
    reference_logprobs_suffice = True
    replaces_nll = True

    def __init__(self, direction: str, name: str = "kl_adaptive"):
        self.direction, self.name = direction, name

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        kl = batch_kl(batch, self.direction)
        w = batch.kl_weight[0]
        return nll_kl_mixture(batch.nll, kl, w), {f"{self.name}_raw": kl.mean().item(), "lambda_mean": w.item()}
