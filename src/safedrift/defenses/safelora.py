"""`safelora`: Safe LoRA (Hsu et al. 2024, "Safe LoRA: the Silver Lining of Reducing Safety Risks
when Fine-tuning Large Language Models"). After LoRA fine-tuning, each adapted weight's update
dW = B A * scale is compared with its projection onto the alignment subspace of that weight,
C dW with C = V V^T / ||V||_F and V = W_aligned - W_unaligned; where their cosine similarity is low
(the update leaves the aligned subspace), B is replaced by C B, i.e. dW by C dW. Training itself is
unchanged; the saved adapter carries the projected updates.

Which updates are projected (`select`): `threshold` projects those with cosine <= `threshold`;
`number` projects the `projected_layers` least similar ones (all with cosine <= the
projected_layers-th smallest). A weight whose V is zero has no aligned subspace and is left alone.

Reference: github.com/IBM/SafeLoRA, commit d81fda12719844d74b1fad98a5f00d692f6ab607, model.py
(`get_aligned_matrix`: C = V V^T / ||V||_F per target-module weight; `projected_weighted`: cosine of
the flattened C B A and B A, lora_B <- C lora_B where cosine <= threshold) and config.py (defaults
select_layers_type number, num_proj_layers 10, threshold 0.5). They round the cosine to 5 decimals
and pair weights by parameter order; here the cosine is exact and weights are paired by name.

Weights: for a toy model, aligned = results/{model}/reference/model.safetensors (the model
fine-tuned from) and unaligned = results/{model}/pretrained/model.safetensors; for a real model
`aligned_model` (default: the model's own path) and `unaligned_model` (required: its base model
before safety tuning), folders or hub ids.

Full fine-tuning (our extension; the paper projects LoRA updates only): the update of each weight
named by `target_modules` (default the q/k/v/o projections, LoRA's targets) is
dW = W_trained - W_start (W_start: the weights the run started from) and a projected one becomes
W_start + C dW; selection as above. So the toy model, which fine-tunes all weights, runs it too.

Settings: select (number | threshold), threshold (0.5), projected_layers (10), aligned_model,
unaligned_model.

Torch is imported inside the functions: config validation imports this module (for its schema and
inputs) at every Snakemake start.
"""

from __future__ import annotations

import math
import os

from safedrift.defenses.base import Defense as Base
from safedrift.errors import ConfigError, DataError
from safedrift.layout import DEFAULT_REFERENCE, reference_model
from safedrift.registry import type_schema

DEFAULTS = {"select": "number", "threshold": 0.5, "projected_layers": 10}
PEFT_PREFIX = "base_model.model."
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]  # full fine-tuning: the weights projected (LoRA's defaults)


def aligned_projection(v: torch.Tensor) -> torch.Tensor:
    """V [out, in] (W_aligned - W_unaligned) -> C = V V^T / ||V||_F [out, out]."""
    import torch

    return v @ v.T / torch.linalg.matrix_norm(v)


def update_cosine(c: torch.Tensor, delta: torch.Tensor) -> float:
    """Cosine similarity of the flattened C dW and dW; c [out, out], delta [out, in]."""
    import torch

    return torch.nn.functional.cosine_similarity((c @ delta).flatten(), delta.flatten(), dim=0).item()


def to_project(cosines: dict[str, float], select: str, threshold: float, projected_layers: int) -> set[str]:
    """Names of the updates to project (NaN cosines, weights without a subspace, never are)."""
    known = {name: cos for name, cos in cosines.items() if not math.isnan(cos)}
    if select == "number":
        if not known or projected_layers < 1:
            return set()
        threshold = sorted(known.values())[:projected_layers][-1]
    return {name for name, cos in known.items() if cos <= threshold}


def lora_modules(model) -> dict[str, torch.nn.Module]:
    """The model's LoRA-adapted modules (default adapter) by their name in the base model."""
    from peft.tuners.lora import LoraLayer

    return {name.removeprefix(PEFT_PREFIX): m for name, m in model.named_modules()
            if isinstance(m, LoraLayer) and "default" in m.lora_A}


def load_weights(path: str, names: list[str], key: str) -> dict[str, torch.Tensor]:
    """The named tensors of a model: a .safetensors file, a model folder or a hub id (`key`: the
    config key the path came from, named in errors)."""
    from safetensors import safe_open

    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors")) if os.path.isdir(path) else []
    found = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            for name in set(names) & set(f.keys()):
                found[name] = f.get_tensor(name)
    if not files:  # a hub id, or a folder without safetensors: load the model itself
        from safedrift.models import load_model

        state = load_model(path, key=key).state_dict()
        found = {name: state[name] for name in names if name in state}
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{path}: no weight {missing[0]!r} ({len(missing)} of the LoRA-adapted weights missing); "
                        f"{key} must name a model of the same architecture as the one fine-tuned")
    return found


def project_lora(model, aligned: dict[str, torch.Tensor], unaligned: dict[str, torch.Tensor], select: str,
                 threshold: float, projected_layers: int) -> dict:
    """Project the LoRA updates of `model` in place; aligned/unaligned: '<module>.weight' -> weight.
    Returns {module: {"cosine": c, "projected": bool}}."""
    import torch

    modules, projections, cosines = lora_modules(model), {}, {}
    with torch.no_grad():
        for name, m in modules.items():
            b, a = m.lora_B["default"].weight, m.lora_A["default"].weight  # [out, r], [r, in]
            v = (aligned[f"{name}.weight"].double() - unaligned[f"{name}.weight"].double()).to(b.device)
            if getattr(m, "fan_in_fan_out", False):  # GPT-2 Conv1D stores weights as [in, out]
                v = v.T
            if not v.any():
                cosines[name] = math.nan
                continue
            projections[name] = aligned_projection(v)
            cosines[name] = update_cosine(projections[name], b.double() @ a.double())
        chosen = to_project(cosines, select, threshold, projected_layers)
        for name in chosen:
            b = modules[name].lora_B["default"].weight
            b.copy_((projections[name] @ b.double()).to(b.dtype))
    return {name: {"cosine": cosines[name], "projected": name in chosen} for name in modules}


def target_modules(model, names: list[str]) -> dict[str, torch.nn.Module]:
    """Full fine-tuning: the linear modules whose last name part is in `names` (as LoRA targets them)."""
    import torch

    return {name: m for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in names}


def project_full(model, start: dict[str, torch.Tensor], aligned: dict[str, torch.Tensor],
                 unaligned: dict[str, torch.Tensor], names: list[str], select: str, threshold: float,
                 projected_layers: int) -> dict:
    """Project the full fine-tuning updates dW = W - W_start of the `names` modules in place (W <- W_start
    + C dW where selected); start/aligned/unaligned: '<module>.weight' -> weight. Returns as project_lora."""
    import torch

    modules, projections, cosines = target_modules(model, names), {}, {}
    with torch.no_grad():
        for name, m in modules.items():
            v = (aligned[f"{name}.weight"].double() - unaligned[f"{name}.weight"].double()).to(m.weight.device)
            if not v.any():
                cosines[name] = math.nan
                continue
            projections[name] = aligned_projection(v)
            cosines[name] = update_cosine(projections[name], m.weight.double() - start[f"{name}.weight"].double())
        chosen = to_project(cosines, select, threshold, projected_layers)
        for name in chosen:
            w, w0 = modules[name].weight, start[f"{name}.weight"].double().to(modules[name].weight.device)
            w.copy_((w0 + projections[name] @ (w.double() - w0)).to(w.dtype))
    return {name: {"cosine": cosines[name], "projected": name in chosen} for name in modules}


class Defense(Base):
    schema = type_schema("safelora", {
        "select": {"enum": ["number", "threshold"],
                   "description": "number (default): project the projected_layers LoRA updates least similar to "
                                  "their aligned-subspace projection; threshold: those with cosine <= threshold"},
        "threshold": {"type": "number", "minimum": -1, "maximum": 1,
                      "description": "select threshold: cosine similarity at or below which an update is projected "
                                     "(default 0.5)"},
        "projected_layers": {"type": "integer", "minimum": 1,
                             "description": "select number: how many LoRA updates are projected (default 10)"},
        "target_modules": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                           "description": "full fine-tuning only: names of the linear modules whose updates may be "
                                          "projected (default q_proj, k_proj, v_proj, o_proj; LoRA projects its adapters)"},
        "aligned_model": {"type": "string", "minLength": 1,
                          "description": "real models: the safety-aligned model, a folder or hub id "
                                         "(default: the model's path)"},
        "unaligned_model": {"type": "string", "minLength": 1,
                            "description": "real models (required): the same model before safety tuning (its base), "
                                           "a folder or hub id"},
    })
    composes_with = ("sft",)

    @classmethod
    def inputs(cls, settings, run, config):
        model = config["models"][run["model"]]
        if model["source"] == "toy":  # aligned: the run's own reference (a variant's, for runs on one)
            _, files = reference_model(config, run["model"], run.get("reference", DEFAULT_REFERENCE))
            return {"aligned": files[0], "unaligned": f"results/{run['model']}/pretrained/model.safetensors"}
        if "unaligned_model" not in settings:
            raise ConfigError(f"config key defenses.{run['defense']}.unaligned_model: safelora on a real model needs "
                              "the model before safety tuning (a folder or hub id)")
        return {}

    @classmethod
    def model_paths(cls, settings):
        return {k: settings[k] for k in ("aligned_model", "unaligned_model") if k in settings}

    def weight_paths(self) -> dict[str, tuple[str, str]]:
        """role -> (path, config key it comes from)."""
        name = self.settings.get("name", "<safelora>")
        inputs = getattr(self.context, "inputs", None) or {}
        return {"aligned": (inputs.get("aligned") or self.settings.get("aligned_model") or self.context.reference_path,
                            f"defenses.{name}.aligned_model"),
                "unaligned": (inputs.get("unaligned") or self.settings.get("unaligned_model"),
                              f"defenses.{name}.unaligned_model")}

    def after_training(self, model):
        s = {k: self.settings.get(k, v) for k, v in DEFAULTS.items()}
        lora = lora_modules(model)
        if lora:
            names = [f"{name}.weight" for name in lora]
        else:  # full fine-tuning: the modules LoRA would target, relative to the run's starting weights
            targets = self.settings.get("target_modules", TARGETS)
            names = [f"{name}.weight" for name in target_modules(model, targets)]
        weights = {role: load_weights(path, names, key) for role, (path, key) in self.weight_paths().items()}
        if lora:
            self.report = project_lora(model, weights["aligned"], weights["unaligned"], **s)
        else:
            start = load_weights(self.context.reference_path, names, "the run's reference")
            self.report = project_full(model, start, weights["aligned"], weights["unaligned"], targets, **s)
        projected = sorted(n for n, r in self.report.items() if r["projected"])
        print(f"safelora: projected {len(projected)} of {len(self.report)} updates: {', '.join(projected)}")
