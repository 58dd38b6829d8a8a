"""What a loss term sees, and the interface every objective/defense term implements."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Batch:
    """One training batch after the forward passes. Reference fields are None when no term needs them.

    labels, attention_mask [B,T]; *_logits [B,T,V]; *_hidden: tuple of [B,T,D] (embeddings, then
    each layer's output); columns: per-example floats, name -> [B] (a defense's example_columns(),
    e.g. the adaptive defense's `kl_weight`, and `safe`: 1.0 for rows from the defense's safe_rows());
    nll: scalar, the trainer's mean token NLL of the batch (for a term that replaces it); model: the
    policy module being trained (for terms on the weights); reference_logprobs [N,V]: the reference's
    log-probs at the N completion positions (finetune.reference_logprobs' cache), set instead of
    reference_logits when the reference did not run, and then policy_logprobs [N,V], the policy's at
    the same positions (one log-softmax that the NLL and the KL share)."""

    labels: torch.Tensor
    attention_mask: torch.Tensor
    policy_logits: torch.Tensor
    policy_hidden: tuple | None = None
    reference_logits: torch.Tensor | None = None
    reference_hidden: tuple | None = None
    columns: dict[str, torch.Tensor] = field(default_factory=dict)
    nll: torch.Tensor | None = None
    model: torch.nn.Module | None = None
    reference_logprobs: torch.Tensor | None = None
    policy_logprobs: torch.Tensor | None = None

    @property
    def kl_weight(self) -> torch.Tensor | None:
        """columns["kl_weight"] ([B], per-example KL weight) or None."""
        return self.columns.get("kl_weight")


class LossTerm:
    """A term added to the NLL. `__call__` returns (scalar loss, floats to log). A term with
    `replaces_nll` returns a loss that already contains the NLL (weighted its own way, e.g. the
    adaptive defense's per-batch rule): the trainer then adds it to zero instead of the NLL."""

    name = "term"
    needs_reference = False
    # True: the term reads only batch.reference_logprobs (or reference_logits), so a cached batch skips
    # the reference's forward pass (finetune.reference_logprobs)
    reference_logprobs_suffice = False
    replaces_nll = False
    layers: tuple = ()  # hidden-state indices it reads (non-empty -> hidden states are computed)

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError
