"""Next-token negative log-likelihood on completion tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 logits are upcast for a stable softmax; fp64 stays fp64 (gradient checks)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Align predictions with targets.

    logits [B,T,V], labels [B,T] -> (logits [B,T-1,V], targets [B,T-1], mask [B,T-1] bool)."""
    return (logits[:, :-1], *completion_targets(labels))


def completion_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The token each position predicts, and where that is a completion token.

    labels [B,T] -> (targets [B,T-1] (-100 clamped to 0), mask [B,T-1] bool)."""
    targets = labels[:, 1:]
    return targets.clamp(min=0), targets != -100


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL over all completion tokens of the batch. logits [B,T,V], labels [B,T] -> scalar."""
    logits, targets, mask = shift(logits, labels)
    nll = F.cross_entropy(at_least_fp32(logits.flatten(0, 1)), targets.flatten(), reduction="none").view_as(targets)
    return (nll * mask).sum() / mask.sum().clamp(min=1)


def completion_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log softmax of the logits that predict completion tokens, in batch order.

    logits [B,T,V], labels [B,T] -> [N,V], N completion tokens (example 0's first, in position order)."""
    logits, _, mask = shift(logits, labels)
    return F.log_softmax(at_least_fp32(logits[mask]), dim=-1)


def completion_nll(logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """token_nll from the log-probs at the completion positions. logprobs [N,V], labels [B,T] -> scalar."""
    targets, mask = completion_targets(labels)
    return -logprobs.gather(-1, targets[mask][:, None]).mean()


def example_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL per example. logits [B,T,V], labels [B,T] -> [B]."""
    logits, targets, mask = shift(logits, labels)
    nll = F.cross_entropy(at_least_fp32(logits.flatten(0, 1)), targets.flatten(), reduction="none").view_as(targets)
    return (nll * mask).sum(-1) / mask.sum(-1).clamp(min=1)
