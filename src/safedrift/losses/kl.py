"""KL divergence between the policy and the safe reference, token-level over completion tokens.

Used by the `kl_sft` objective, the `kl` defense and the `adaptive` defense.
"""

from __future__ import annotations

import torch

from safedrift.finetune.terms import Batch, LossTerm
from safedrift.losses.nll import completion_logprobs, completion_targets


def kl_to_reference(policy_logits: torch.Tensor, reference_logits: torch.Tensor, labels: torch.Tensor,
                    direction: str = "forward") -> torch.Tensor:
    """Per-example mean token KL over completion tokens.

    forward: KL(ref || policy) = sum_v p_ref (log p_ref - log p_policy)   (mass-covering: keep what ref does)
    reverse: KL(policy || ref) = sum_v p_policy (log p_policy - log p_ref) (mode-seeking)

    policy_logits, reference_logits [B,T,V], labels [B,T] -> [B] (0 for an example without
    completion tokens). Gradient flows into policy_logits only."""
    # Only completion positions enter the softmaxes: prompts and padding are often half the tokens.
    return kl_from_logprobs(completion_logprobs(policy_logits, labels),
                            completion_logprobs(reference_logits.detach(), labels), labels, direction)


def kl_from_logprobs(policy_logprobs: torch.Tensor, reference_logprobs: torch.Tensor, labels: torch.Tensor,
                     direction: str = "forward") -> torch.Tensor:
    """kl_to_reference from the log-probs at the completion positions (the reference's from its cache).

    policy_logprobs, reference_logprobs [N,V] (completion positions in batch order), labels [B,T] -> [B].
    Gradient flows into policy_logprobs only."""
    _, mask = completion_targets(labels)
    return per_example_mean(token_kl(policy_logprobs, reference_logprobs.detach().to(policy_logprobs.dtype),
                                     direction), mask)


def token_kl(logp: torch.Tensor, logq: torch.Tensor, direction: str) -> torch.Tensor:
    """KL per token. logp (policy), logq (reference) [N,V] log-probs -> [N]."""
    if direction == "forward":
        return (logq.exp() * (logq - logp)).sum(-1)
    if direction == "reverse":
        return (logp.exp() * (logp - logq)).sum(-1)
    raise ValueError(f"KL direction must be 'forward' or 'reverse', got {direction!r}")


def per_example_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each example's completion tokens. per_token [N], mask [B,T-1] (N true entries) -> [B]."""
    example = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)[mask]  # [N]
    totals = per_token.new_zeros(mask.shape[0]).index_add(0, example, per_token)
    return totals / mask.sum(-1).clamp(min=1)


def batch_kl(batch: Batch, direction: str) -> torch.Tensor:
    """Per-example KL of a training batch [B]: from the cached reference log-probs where the trainer has
    them (batch.reference_logprobs, with the policy's batch.policy_logprobs), else from both models' logits."""
    if batch.reference_logprobs is not None:
        return kl_from_logprobs(batch.policy_logprobs, batch.reference_logprobs, batch.labels, direction)
    return kl_to_reference(batch.policy_logits, batch.reference_logits, batch.labels, direction)


class KLTerm(LossTerm):
    """beta * mean_i KL_i, or with per-example weights: mean_i lambda_i * KL_i."""

    needs_reference = True
    reference_logprobs_suffice = True

    def __init__(self, beta: float | None, direction: str, name: str = "kl"):
        self.beta, self.direction, self.name = beta, direction, name

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        kl = batch_kl(batch, self.direction)
        if self.beta is None:  # adaptive: weights come with the batch
            weights = batch.kl_weight
            return (weights * kl).mean(), {f"{self.name}_raw": kl.mean().item(), "lambda_mean": weights.mean().item()}
        return self.beta * kl.mean(), {f"{self.name}_raw": kl.mean().item()}
