"""`steering` (preventative): add alpha * v to the residual stream after decoder layer `layer`
during training only, v the unit persona ("villain") direction of the reference model.

Steering towards the persona while fine-tuning means the optimiser need not move the weights
towards it to fit the data; the hook is removed before the model is saved, so evaluation and the
saved weights never carry it (tested)."""

from __future__ import annotations

import contextlib

from safedrift.defenses.base import Defense as Base
from safedrift.registry import type_schema
from safedrift.errors import SafedriftError


def load_direction(path: str, layer: int) -> torch.Tensor:
    """Unit persona direction after decoder layer `layer` ([D]) from the persona-vector file."""
    from safetensors.torch import load_file

    vectors = load_file(path)["persona"]  # [L+1, D]: index 0 = embeddings, i = after layer i
    if not 1 <= layer < vectors.shape[0]:
        raise SafedriftError(f"steering layer {layer} is outside 1..{vectors.shape[0] - 1}; fix defenses.<name>.layer")
    v = vectors[layer]
    return v / v.norm().clamp(min=1e-8)


def add_to_residual(layer_module, vector: torch.Tensor):
    """Register a forward hook that adds `vector` [D] to the layer's output hidden states; returns the handle."""

    def hook(module, inputs, output):
        if isinstance(output, tuple):
            return (output[0] + vector.to(output[0].dtype), *output[1:])
        return output + vector.to(output.dtype)

    return layer_module.register_forward_hook(hook)


class Defense(Base):
    schema = type_schema("steering", {"alpha": {"type": "number"},
                                      "layer": {"type": "integer", "minimum": 0,
                                                "description": "default: risk.persona.layer"}}, ("alpha",))
    composes_with = ("sft",)

    @classmethod
    def inputs(cls, settings, run, config):
        return {"persona_vector": f"results/{run['model']}/risk/persona_vector.safetensors"}

    @classmethod
    def resolve(cls, run_settings, config):
        run_settings["defense"].setdefault("layer", config["risk"]["persona"]["layer"])
        return run_settings

    @contextlib.contextmanager
    def during_training(self, model):
        path = self.context.inputs.get("persona_vector")
        if not path:
            raise SafedriftError("the steering defense needs the persona vector (risk rule persona_vector)")
        from safedrift.models import residual_layers

        layer = self.settings["layer"]
        direction = load_direction(path, layer)
        device = next(model.parameters()).device
        handle = add_to_residual(residual_layers(model)[layer - 1], self.settings["alpha"] * direction.to(device))
        try:
            yield
        finally:
            handle.remove()
