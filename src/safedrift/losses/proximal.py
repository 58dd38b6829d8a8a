"""Lisa's proximal term (Huang et al. 2024, "Lisa: Lazy Safety Alignment for Large Language Models
against Harmful Fine-tuning Attack", NeurIPS 2024): rho/2 * ||theta - theta_anchor||^2 over the
trainable parameters, theta_anchor the weights at the last switch between the alignment state
(steps on safe data) and the user state (steps on the user's data), so neither state drifts far
from where the other left the weights.

Reference: github.com/git-disl/Lisa, commit 68e36595d3643ae5b18e955ee385bad71851d021, trainer.py
(`LisaTrainer.switch_model`, `training_step`): the anchor of the alignment state is the weights the
user state ended with and vice versa; the term is left out for the first 10% of the run's steps
(here the per-example column `proximal`, 0 or 1, that the `lisa` defense sends with each batch).
"""

from __future__ import annotations

import torch

from safedrift.finetune.terms import Batch, LossTerm
from safedrift.losses.nll import at_least_fp32


def proximal(params: list[torch.Tensor], anchors: list[torch.Tensor]) -> torch.Tensor:
    """sum_i ||params_i - anchors_i||^2 over paired tensors of equal shapes (any) -> scalar.
    Gradient flows into params only (anchors are constants)."""
    total = params[0].new_zeros((), dtype=at_least_fp32(params[0]).dtype)
    for p, a in zip(params, anchors, strict=True):
        total = total + (at_least_fp32(p) - at_least_fp32(a.detach())).pow(2).sum()
    return total


def batch_state(batch: Batch) -> str:
    """'safe' when the batch's examples come from the safe pool (columns["safe"] all 1), else 'train'."""
    safe = batch.columns.get("safe") if batch.columns else None
    return "safe" if safe is not None and bool((safe > 0.5).all()) else "train"


class ProximalTerm(LossTerm):
    """rho/2 * ||theta - theta_anchor||^2 over batch.model's trainable parameters. Stateful: the
    anchor is copied from the weights whenever the batch's state (safe/train) differs from the
    previous batch's (and at the first batch), so the term is 0 right after a switch. Logs the
    squared distance (`proximal_drift`) and the state (`safe_state`: 1 alignment, 0 user)."""

    def __init__(self, rho: float, name: str = "proximal"):
        self.rho, self.name = rho, name
        self.state: str | None = None
        self.anchor: list[torch.Tensor] = []

    def trainable(self, model) -> list[torch.Tensor]:
        return [p for p in model.parameters() if p.requires_grad]

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        params = self.trainable(batch.model)
        state = batch_state(batch)
        if state != self.state:
            self.state = state
            self.anchor = [p.detach().clone() for p in params]
        drift = proximal(params, self.anchor)
        on = batch.columns.get("proximal") if batch.columns else None
        weight = float(on[0]) if on is not None else 1.0
        value = (self.rho / 2 * weight) * drift
        return value, {"proximal_drift": drift.item(), "safe_state": float(state == "safe")}
