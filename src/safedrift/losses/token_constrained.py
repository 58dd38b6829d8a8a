"""Token-wise constrained SFT (Qi et al. 2024, "Safety Alignment Should Be Made More Than Just a
Few Tokens Deep", ICLR 2025): the NLL replaced by, per completion token t,

    l_t = -(2 / beta_t) * log sigmoid(beta_t * (log pi_theta(y_t) - log pi_ref(y_t)))

so a token whose log-probability already rose above the reference's stops being pushed (the
gradient is the NLL's scaled by 2 * (1 - sigmoid(beta_t * delta_t)); at delta = 0 it equals the
NLL's). beta_t is large for the first response tokens, where shallow safety alignment lives, so
those stay close to the reference: beta_0 = beta * first_token_bias_factor, beta_1..beta_{L-1} =
beta * bias_factor (L = bias_length), beta_t = beta after that; t counts completion tokens of each
example from 0.

Reference: github.com/Unispac/shallow-vs-deep-alignment, commit fb1749e3a9af3b90103574060b71c7daab1a4205,
finetuning_buckets/trainer/trainer.py (`get_beta_list`, `soft_sft_loss`) and finetune.py (defaults
beta 0.1, first_token_bias_factor 5, bias_factor 20, bias_length 5). Their code realises the same
gradient as the mean over the batch's completion tokens of -w_t.detach() * log pi_theta(y_t) with
w_t = max(2 * (1 - sigmoid(beta_t * delta_t)), 1e-3); here the loss itself is computed (its value is
the one the paper writes, its gradient theirs without the 1e-3 floor on w_t).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from safedrift.finetune.terms import Batch, LossTerm
from safedrift.losses.nll import at_least_fp32, shift

DEFAULTS = {"beta": 0.1, "first_token_bias_factor": 5.0, "bias_factor": 20.0, "bias_length": 5}


def position_betas(positions: torch.Tensor, beta: float, first_token_bias_factor: float, bias_factor: float,
                   bias_length: int) -> torch.Tensor:
    """beta_t of each token from its position among its example's completion tokens.

    positions [N] (0 = first completion token) -> [N] float: beta * first_token_bias_factor at 0
    (when bias_length > 0), beta * bias_factor at 1..bias_length-1, beta from bias_length on."""
    betas = torch.full(positions.shape, float(beta), dtype=torch.float64, device=positions.device)
    betas[positions < bias_length] = beta * bias_factor
    if bias_length > 0:
        betas[positions == 0] = beta * first_token_bias_factor
    return betas


def completion_positions(mask: torch.Tensor) -> torch.Tensor:
    """mask [B,T] bool (completion tokens) -> [B,T] long: each token's index among its row's
    completion tokens (meaningless where mask is False)."""
    return mask.long().cumsum(-1) - 1


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits [B,T,V], targets [B,T] -> [B,T]: log-probability of each target token."""
    return F.log_softmax(at_least_fp32(logits), dim=-1).gather(-1, targets[..., None]).squeeze(-1)


def token_constrained_loss(policy_logits: torch.Tensor, reference_logits: torch.Tensor, labels: torch.Tensor,
                           beta: float = DEFAULTS["beta"],
                           first_token_bias_factor: float = DEFAULTS["first_token_bias_factor"],
                           bias_factor: float = DEFAULTS["bias_factor"],
                           bias_length: int = DEFAULTS["bias_length"]) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, delta): mean over the batch's completion tokens of -(2/beta_t) log sigmoid(beta_t * delta_t).

    policy_logits, reference_logits [B,T,V], labels [B,T] (-100 = no loss) -> (scalar, delta [B,T-1]
    = log pi_theta(y_t) - log pi_ref(y_t), 0 off the completion). Gradient flows into policy_logits
    only. A batch without completion tokens gives 0."""
    policy, targets, mask = shift(policy_logits, labels)
    logp = target_logprobs(policy, targets)
    logq = target_logprobs(reference_logits[:, :-1].detach(), targets)
    delta = torch.where(mask, logp - logq, torch.zeros_like(logp))
    betas = position_betas(completion_positions(mask), beta, first_token_bias_factor, bias_factor,
                           bias_length).to(delta.dtype)
    per_token = -(2.0 / betas) * F.logsigmoid(betas * delta)
    loss = (per_token * mask).sum() / mask.sum().clamp(min=1)
    return loss, delta.detach()


class TokenConstrainedTerm(LossTerm):
    """Replaces the NLL by the token-wise constrained loss; logs the mean log-probability change
    of the first completion token (`delta_first`) and of all completion tokens (`delta_mean`)."""

    needs_reference = True
    replaces_nll = True

    def __init__(self, beta: float, first_token_bias_factor: float, bias_factor: float, bias_length: int,
                 name: str = "token_constrained"):
        self.schedule = {"beta": beta, "first_token_bias_factor": first_token_bias_factor,
                         "bias_factor": bias_factor, "bias_length": bias_length}
        self.name = name

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        loss, delta = token_constrained_loss(batch.policy_logits, batch.reference_logits, batch.labels, **self.schedule)
        mask = batch.labels[:, 1:] != -100
        first = mask & (completion_positions(mask) == 0)
        logs = {"delta_first": delta[first].mean().item() if first.any() else 0.0,
                "delta_mean": delta[mask].mean().item() if mask.any() else 0.0}
        return loss, logs
