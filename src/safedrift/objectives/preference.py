"""What DPO and ORPO share: training rows are preference pairs built from the scenario's own
prompts (finetune.pairs) and the reference model's responses (the `reference_responses` rule)."""

from __future__ import annotations

from collections import Counter

from safedrift.errors import ConfigError
from safedrift.finetune.pairs import build_pairs, to_preference
from safedrift.io import read_jsonl
from safedrift.objectives.base import Objective


class PreferenceObjective(Objective):
    family = "preference"
    rows_label = "preference pairs"

    @classmethod
    def inputs(cls, settings, run, config):
        return {"reference_responses": f"results/{run['model']}/data/{run['scenario']}.reference.jsonl"}

    @classmethod
    def check(cls, name, settings, config):
        if "preference_pairs" not in config:
            raise ConfigError(f"config key preference_pairs: required when an objective is trained on preference "
                              f"pairs (objectives.{name}); add preference_pairs: {{max_new_tokens: N}}")

    def __init__(self, settings, context):
        super().__init__(settings, context)
        self.pair_counts = Counter({"reference": 0, "contrast_fallback": 0, "dropped": 0})

    def prepare(self, rows):
        if not rows:
            return []
        responses = {r["id"]: r["response"] for r in read_jsonl(self.context.inputs["reference_responses"])}
        pairs, counts = build_pairs(rows, responses)
        self.pair_counts.update(counts)
        return pairs

    def card(self, rows):
        return {"pairs": dict(self.pair_counts)}

    def make_trainer(self, model, tokenizer, rows, common_args, callbacks, *, terms=(), columns=None, reference=None,
                     reference_logprobs=None):
        """The TRL preference trainer (`preference_trainer`). It runs no loss terms and mixes no safe data: a
        defense that brings either cannot train here (its `composes_with` must leave out "preference")."""
        if terms or any(v for name, values in (columns or {}).items() for v in values if name != "safe") or any(
                (columns or {}).get("safe", [])):
            raise ConfigError(f"objective {self.settings.get('name', self.settings['type'])!r} trains on preference pairs "
                              "with TRL's own loss: the run's defense adds loss terms or data it cannot use; declare "
                              "composes_with = ('sft',) on that defense (the config check then names the study)")
        return self.preference_trainer(model, tokenizer, rows, common_args, callbacks, reference=reference)

    @staticmethod
    def dataset(rows):
        """TRL's conversational preference dataset of `rows` (pairs in training order)."""
        from datasets import Dataset

        return Dataset.from_list([to_preference(r) for r in rows])
