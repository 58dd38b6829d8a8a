"""`orpo`: TRL's ORPOTrainer (trl.experimental.orpo) on the same preference pairs as `dpo`.

ORPO needs no reference model: NLL on chosen + beta * odds-ratio penalty on rejected. Settings: beta."""

from safedrift.registry import type_schema
from safedrift.objectives.preference import PreferenceObjective


class Objective(PreferenceObjective):
    schema = type_schema("orpo", {"beta": {"$ref": "#/$defs/positive_number"}}, ("beta",))

    def preference_trainer(self, model, tokenizer, rows, common_args, callbacks, reference=None):
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        args = ORPOConfig(**common_args, beta=self.settings["beta"], disable_dropout=True)
        return ORPOTrainer(model=model, args=args, train_dataset=self.dataset(rows), processing_class=tokenizer,
                           callbacks=callbacks)
