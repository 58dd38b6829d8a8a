"""`kl_sft`: NLL + beta * token-level KL between the reference and the policy on completion tokens;
`direction` picks forward KL(ref || policy) or reverse KL(policy || ref)."""

from safedrift.layout import reference_logprobs_input
from safedrift.objectives.base import Objective as Base
from safedrift.registry import type_schema


class Objective(Base):
    schema = type_schema("kl_sft", {"beta": {"type": "number", "minimum": 0},
                                    "direction": {"$ref": "#/$defs/kl_direction"}}, ("beta", "direction"))

    @classmethod
    def inputs(cls, settings, run, config):
        return reference_logprobs_input(config, run)

    def terms(self):
        from safedrift.losses.kl import KLTerm

        return [KLTerm(self.settings["beta"], self.settings["direction"], name="kl_objective")]
