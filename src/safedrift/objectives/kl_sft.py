"""`kl_sft`: NLL + beta * token-level KL between the reference and the policy on completion tokens;
`direction` picks forward KL(ref || policy) or reverse KL(policy || ref)."""

from safedrift.losses.kl import KLTerm
from safedrift.objectives.base import Objective as Base
from safedrift.registry import type_schema


class Objective(Base):
    schema = type_schema("kl_sft", {"beta": {"type": "number", "minimum": 0},
                                    "direction": {"$ref": "#/$defs/kl_direction"}}, ("beta", "direction"))

    def terms(self):
        return [KLTerm(self.settings["beta"], self.settings["direction"], name="kl_objective")]
