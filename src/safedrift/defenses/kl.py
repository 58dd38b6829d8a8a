"""`kl`: beta * KL to the safe reference over completion tokens (the kl_sft term, as a defense).

The reference is the same weights with the adapter disabled under LoRA, or one frozen copy
under full fine-tuning (finetune.run builds it)."""

from safedrift.defenses.base import Defense as Base
from safedrift.layout import reference_logprobs_input
from safedrift.registry import type_schema


class Defense(Base):
    schema = type_schema("kl", {"beta": {"type": "number", "minimum": 0},
                                "direction": {"$ref": "#/$defs/kl_direction"}}, ("beta", "direction"))
    composes_with = ("sft",)

    @classmethod
    def inputs(cls, settings, run, config):
        return reference_logprobs_input(config, run)

    def terms(self):
        from safedrift.losses.kl import KLTerm

        return [KLTerm(self.settings["beta"], self.settings["direction"], name="kl")]
