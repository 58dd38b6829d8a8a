"""KL divergence between the policy and the safe reference, token-level over completion tokens.

Used by the `kl_sft` objective, the `kl` defense and the `adaptive` defense.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from safedrift.finetune.terms import Batch, LossTerm
from safedrift.losses.nll import at_least_fp32, shift


def kl_to_reference(policy_logits: torch.Tensor, reference_logits: torch.Tensor | None, labels: torch.Tensor,
                    direction: str = "forward", reference_logprobs: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example mean token KL over completion tokens.

    forward: KL(ref || policy) = sum_v p_ref (log p_ref - log p_policy)   (mass-covering: keep what ref does)
    reverse: KL(policy || ref) = sum_v p_policy (log p_policy - log p_ref) (mode-seeking)

    policy_logits, reference_logits [B,T,V], labels [B,T] -> [B] (0 for an example without
    completion tokens). reference_logprobs [N,V] (the reference's log-probs at the N completion
    positions, finetune.reference_logprobs) replaces reference_logits when given. Gradient flows into
    policy_logits only."""
    policy, _, mask = shift(policy_logits, labels)
    # Only completion positions enter the softmaxes: prompts and padding are often half the tokens.
    logp = F.log_softmax(at_least_fp32(policy[mask]), dim=-1)  # [N,V], N completion tokens in the batch
    if reference_logprobs is not None:
        logq = reference_logprobs.detach().to(logp.dtype)
    else:
        logq = F.log_softmax(at_least_fp32(reference_logits[:, :-1].detach()[mask]), dim=-1)
    if direction == "forward":
        per_token = (logq.exp() * (logq - logp)).sum(-1)
    elif direction == "reverse":
        per_token = (logp.exp() * (logp - logq)).sum(-1)
    else:
        raise ValueError(f"KL direction must be 'forward' or 'reverse', got {direction!r}")
    example = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)[mask]  # [N]
    totals = per_token.new_zeros(mask.shape[0]).index_add(0, example, per_token)
    return totals / mask.sum(-1).clamp(min=1)

class KLTerm(LossTerm):
    """beta * mean_i KL_i, or with per-example weights: mean_i lambda_i * KL_i."""

    needs_reference = True
    reference_logprobs_suffice = True

    def __init__(self, beta: float | None, direction: str, name: str = "kl"):
        self.beta, self.direction, self.name = beta, direction, name

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        kl = kl_to_reference(batch.policy_logits, batch.reference_logits, batch.labels, self.direction,
                             batch.reference_logprobs)
        if self.beta is None:  # adaptive: weights come with the batch
            weights = batch.kl_weight
            return (weights * kl).mean(), {f"{self.name}_raw": kl.mean().item(), "lambda_mean": weights.mean().item()}
        return self.beta * kl.mean(), {f"{self.name}_raw": kl.mean().item()}
