"""`dpo`: TRL's DPOTrainer on preference pairs built from the scenario's own prompts.

chosen = the scenario's target response; rejected = the reference model's greedy response
(generated once per scenario by the `reference_responses` rule). Where they coincide, the
pair falls back to the example's contrast answer (see finetune.pairs). Reference
log-probabilities are precomputed once, before the first step.
"""

from safedrift.objectives.base import Objective as Base


class Objective(Base):
    family = "preference"
    needs_reference = True

    def make_trainer(self, model, tokenizer, dataset, common_args, callbacks, reference=None):
        from trl import DPOConfig, DPOTrainer

        from safedrift.finetune.trainer import sequential

        args = DPOConfig(**common_args, beta=self.settings["beta"],
                         loss_type=[self.settings.get("loss_type", "sigmoid")],
                         precompute_ref_log_probs=True, disable_dropout=True)
        return sequential(DPOTrainer)(model=model, ref_model=reference, args=args, train_dataset=dataset,
                                      processing_class=tokenizer, callbacks=callbacks)
