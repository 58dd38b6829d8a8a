"""Vaccine: perturbation-aware alignment (Huang et al. 2024, "Vaccine: perturbation-aware alignment
for large language models against harmful fine-tuning attack").

An alignment-stage defense: it changes the reference model itself, so it is a reference variant
(`references.<name>: {type: vaccine, rho}`), built by `world.align --reference` into
results/{model}/reference/{name}/. Each optimizer step runs two passes over the same batch:

1. the alignment loss and its gradient with respect to the output of every attention module
   (the "hidden embedding" the paper perturbs), without touching the weights' gradients;
2. the loss again with each attention output shifted by `rho` times that gradient, normalised by
   the norm of all layers' gradients together; the step follows this pass's gradient only.

So the aligned model learns hidden states that stay aligned when fine-tuning later drifts them.

Read from github.com/git-disl/Vaccine, trainer.py (`VaccineTrainer`: `pre_first_step`,
`after_first_step`, `_grad_norm`, `pre_second_step`) at commit
8937f685a549065be24772130190cb61aac1ad26; train.py there sets `--rho` default 2. Their code
(which this follows, where it and the paper's prose could be read differently):
- perturbed modules: every `LlamaAttention` (its first output, [B, T, H]), not whole decoder layers;
- norm: ONE L2 norm over all layers' gradients (the norm of the per-layer norms), so the
  perturbation of all layers together has norm rho, each layer's part pointing along its own
  gradient; the scale is rho / (norm + 1e-7);
- the perturbation is a constant in the second pass (no gradient through it).
We take the first pass's gradient with torch.autograd.grad of the causal-LM loss (the model's own
`labels` loss), where they run a full backward and zero the weights' gradients after: the same
direction, since the normalisation removes any positive scale of the loss. The second pass is
TRL's own SFT training step, so the update, its loss and its logged metrics are SFTTrainer's.

Settings (references.<name>): type: vaccine; rho (>= 0; 0 is plain alignment). Everything else
(steps, learning rate, data) is the `align:` section, so the variant differs only by Vaccine.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from trl import SFTTrainer

EPS = 1e-7  # their _grad_norm's guard against a zero gradient


def perturbation(gradients: list[torch.Tensor], rho: float) -> list[torch.Tensor]:
    """Vaccine's hidden-state perturbation.

    gradients: one tensor per perturbed module, [B, T, H] each (d loss / d attention output).
    Returns the same shapes: e_l = rho * g_l / (sqrt(sum_l ||g_l||^2) + 1e-7), detached; all layers
    together have norm rho (up to the 1e-7), each layer along its own gradient.
    """
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in gradients]))
    scale = rho / (norm + EPS)
    return [(g.detach() * scale).to(g.dtype) for g in gradients]


def attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules Vaccine perturbs: every self-attention block (their `get_leaf_modules_with_grad`)."""
    modules = [m for m in model.modules() if type(m).__name__.endswith("Attention")]
    if not modules:
        raise ValueError(f"vaccine: {type(model).__name__} has no *Attention modules to perturb")
    return modules


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, value):
    return (value, *output[1:]) if isinstance(output, tuple) else value


def _model_inputs(model: torch.nn.Module, batch: dict) -> dict:
    device = next(model.parameters()).device
    return {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids", "labels") if k in batch}


def attention_gradients(model: torch.nn.Module, batch: dict) -> list[torch.Tensor]:
    """First pass: d(causal-LM loss)/d(attention output) for every attention module, [B, T, H] each.
    batch: input_ids [B, T], labels [B, T] (-100 = no loss), optional attention_mask/position_ids.
    The weights' .grad are left untouched."""
    outputs = []
    hooks = [m.register_forward_hook(lambda mod, args, out: outputs.append(_first(out)))
             for m in attention_modules(model)]
    try:
        with torch.enable_grad():
            loss = model(**_model_inputs(model, batch), use_cache=False).loss
            return list(torch.autograd.grad(loss, outputs))
    finally:
        for h in hooks:
            h.remove()


@contextmanager
def perturbed(model: torch.nn.Module, deltas: list[torch.Tensor]):
    """Forward hooks that add deltas[l] ([B, T, H]) to attention module l's output, in module order."""
    modules = attention_modules(model)
    if len(modules) != len(deltas):
        raise ValueError(f"vaccine: {len(deltas)} perturbations for {len(modules)} attention modules")
    hooks = [m.register_forward_hook(lambda mod, args, out, d=d: _replace_first(out, _first(out) + d))
             for m, d in zip(modules, deltas)]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def perturbed_loss(model: torch.nn.Module, batch: dict, rho: float) -> torch.Tensor:
    """The causal-LM loss of `batch` under Vaccine's perturbation of radius rho (what the second pass
    minimises; rho=0 gives the plain loss)."""
    deltas = perturbation(attention_gradients(model, batch), rho)
    with perturbed(model, deltas):
        return model(**_model_inputs(model, batch), use_cache=False).loss


class VaccineTrainer(SFTTrainer):
    """SFTTrainer whose every training step is Vaccine's two passes (the second is SFTTrainer's own
    training_step, under the perturbation hooks)."""

    def __init__(self, *args, rho: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.rho = rho

    def training_step(self, model, inputs, num_items_in_batch=None):
        model.train()
        deltas = perturbation(attention_gradients(model, inputs), self.rho)
        with perturbed(model, deltas):
            return super().training_step(model, inputs, num_items_in_batch)
