"""`dpo`: TRL's DPOTrainer on preference pairs built from the scenario's own prompts.

chosen = the scenario's target response; rejected = the reference model's greedy response
(generated once per scenario by the `reference_responses` rule). Where they coincide, the
pair falls back to the example's contrast answer (see finetune.pairs). Reference
log-probabilities are precomputed once, before the first step.

Settings: beta, loss_type (sigmoid | ipo | hinge; default sigmoid).
"""

from safedrift.registry import type_schema
from safedrift.objectives.preference import PreferenceObjective


class Objective(PreferenceObjective):
    schema = type_schema("dpo", {"beta": {"$ref": "#/$defs/positive_number"},
                                 "loss_type": {"enum": ["sigmoid", "ipo", "hinge"]}}, ("beta",))
    needs_reference = True

    def preference_trainer(self, model, tokenizer, rows, common_args, callbacks, reference=None):
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common_args, beta=self.settings["beta"],
                         loss_type=[self.settings.get("loss_type", "sigmoid")],
                         precompute_ref_log_probs=True, disable_dropout=True)
        return DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=self.dataset(rows),
                          processing_class=tokenizer, callbacks=callbacks)
