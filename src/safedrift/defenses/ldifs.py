"""`ldifs`: weight * ||features_policy - features_reference||^2 on residual-stream features at
`layers` (default: `n_layers` evenly spaced decoder layers), normalised as configured."""

from safedrift.defenses.base import Defense as Base
from safedrift.registry import type_schema


def evenly_spaced(num_layers: int, n: int) -> list[int]:
    """n hidden-state indices spread over 1..num_layers (index 0 is the embeddings, left out)."""
    n = min(n, num_layers)
    return sorted({round(1 + i * (num_layers - 1) / max(n - 1, 1)) for i in range(n)})


class Defense(Base):
    schema = type_schema("ldifs", {
        "weight": {"type": "number", "minimum": 0},
        "layers": {"type": ["array", "null"], "items": {"type": "integer", "minimum": 0},
                   "description": "null: evenly spaced"},
        "n_layers": {"$ref": "#/$defs/positive_int"},
        "normalize": {"enum": ["none", "reference_norm"],
                      "description": "reference_norm divides by the reference features' mean square"},
    }, ("weight",))
    composes_with = ("sft",)

    def terms(self):
        from safedrift.losses.features import FeatureDistanceTerm

        layers = self.settings.get("layers") or evenly_spaced(self.context.num_layers, self.settings.get("n_layers", 3))
        return [FeatureDistanceTerm(self.settings["weight"], layers, self.settings.get("normalize", "reference_norm"))]
