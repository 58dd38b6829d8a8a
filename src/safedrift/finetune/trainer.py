"""The SFT trainer every SFT-family objective builds: TRL's SFTTrainer with extra loss terms.

loss = NLL(completion tokens) + sum of the objective's and the defense's terms, each logged
per step (a term that `replaces_nll` weighs the NLL itself: loss = sum of the terms). Reference
forward passes (KL, LDIFS) run under no_grad, on the frozen reference copy (full fine-tuning)
or the same model with its LoRA adapter disabled; where every term needing the reference reads only
its completion log-probs (KL) and the run's cache holds the batch, the cache replaces that pass. Per-example floats of the dataset (a defense's
example_columns(), and `safe`) reach the terms as batch.columns.

The dataset is already in training order (finetune.schedule); `train_sampling_strategy:
sequential` (finetune.run) makes every trainer read it so, and a resumed run replays the same batches.

Why compute_loss is ours and not TRL's `compute_loss_func`: TRL 1.16's SFT loss runs the model with a
fused LM head that never builds the logits, and a `compute_loss_func` sees only (outputs, labels,
num_items_in_batch), not the reference's forward pass or the per-example columns the terms need
(and TRL then runs a second forward for its metrics).
"""

from __future__ import annotations

import torch

from safedrift.finetune.terms import Batch
from safedrift.losses.nll import completion_logprobs, completion_nll, token_nll

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")


class WithColumns:
    """Collator wrapper: adds per-example float columns (e.g. kl_weight, safe) as [B] tensors."""

    def __init__(self, collator, names):
        self.collator = collator
        self.names = tuple(names)

    def __call__(self, examples):
        batch = self.collator(examples)
        for key in self.names:
            batch[key] = torch.tensor([float(e[key]) for e in examples])
        return batch


def total_loss(nll: torch.Tensor, terms, batch: Batch) -> tuple[torch.Tensor, dict]:
    """(the loss of a batch, floats to log): NLL + each term's value, or, when a term `replaces_nll`
    (it weighs the NLL itself, batch.nll), the sum of the terms alone."""
    logs = {"nll": nll.item()}
    loss = nll.new_zeros(()) if any(t.replaces_nll for t in terms) else nll
    for term in terms:
        value, term_logs = term(batch)
        loss = loss + value
        logs[term.name] = value.item()
        logs.update(term_logs)
    return loss, logs


def sft_trainer(model, tokenizer, rows: list[dict], common_args: dict, callbacks: list, *, terms=(),
                columns: dict | None = None, reference=None, reference_logprobs=None):
    """RegularizedSFTTrainer on `rows` (prompt `messages` + `target`, in training order) with the
    per-example `columns` ({name: one float per row}); reference_logprobs: a ReferenceLogprobs cache
    (finetune.reference_logprobs) that replaces the reference's forward pass where it holds a batch."""
    from datasets import Dataset
    from trl import SFTConfig

    from safedrift.finetune.encode import chat_messages

    columns = columns or {}
    data = {"messages": [chat_messages(r) for r in rows], **columns}
    args = SFTConfig(**common_args, assistant_only_loss=True, loss_type="nll", packing=False, dataset_num_proc=None,
                     shuffle_dataset=False)
    return make_sft_trainer_class()(model=model, args=args, train_dataset=Dataset.from_dict(data),
                                    processing_class=tokenizer, callbacks=callbacks, terms=terms, reference=reference,
                                    column_names=list(columns), reference_logprobs=reference_logprobs)


def make_sft_trainer_class():
    from trl import SFTTrainer

    class RegularizedSFTTrainer(SFTTrainer):
        # compute_loss returns a per-batch mean: the Trainer divides it for gradient accumulation
        loss_is_scaled_for_ga = False

        def __init__(self, *args, terms=(), reference=None, column_names=(), reference_logprobs=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.terms = list(terms)
            self.reference = reference
            self.reference_logprobs = reference_logprobs
            self.reference_batches = {"cached": 0, "live": 0}  # training batches that needed the reference
            self.column_names = tuple(column_names)
            self.data_collator = WithColumns(self.data_collator, self.column_names)
            self.layers_needed = sorted({i for t in self.terms for i in t.layers})

        def _reference_outputs(self, model, inputs, hidden):
            with torch.no_grad():
                if self.reference is not None:
                    return self.reference(**inputs, output_hidden_states=hidden)
                with model.disable_adapter():  # LoRA: the reference is the base weights
                    return model(**inputs, output_hidden_states=hidden)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mode = "train" if model.training else "eval"
            labels = inputs.pop("labels")
            columns = {k: inputs.pop(k) for k in self.column_names}
            inputs = {k: v for k, v in inputs.items() if k in MODEL_INPUTS}
            hidden = bool(self.layers_needed)
            out = model(**inputs, output_hidden_states=hidden, use_cache=False)
            ref = cached = policy_logprobs = None
            needing = [t for t in self.terms if t.needs_reference]
            if needing and self.reference_logprobs is not None and all(t.reference_logprobs_suffice for t in needing):
                cached = self.reference_logprobs.lookup(inputs["input_ids"], inputs["attention_mask"], labels)
            if cached is not None:
                # the NLL and the KL share one log-softmax over the completion positions (not prompts, padding)
                policy_logprobs = completion_logprobs(out.logits, labels)
                nll = completion_nll(policy_logprobs, labels)
            else:
                nll = token_nll(out.logits, labels)
                if needing:
                    ref = self._reference_outputs(model, inputs, hidden)
            if needing and mode == "train":
                self.reference_batches["live" if cached is None else "cached"] += 1
            batch = Batch(labels=labels, attention_mask=inputs["attention_mask"], policy_logits=out.logits,
                          policy_hidden=out.hidden_states if hidden else None,
                          reference_logits=ref.logits if ref is not None else None,
                          reference_hidden=ref.hidden_states if (ref is not None and hidden) else None,
                          columns={k: v.to(out.logits.device) for k, v in columns.items()}, nll=nll, model=model,
                          reference_logprobs=cached, policy_logprobs=policy_logprobs)
            loss, logs = total_loss(nll, self.terms, batch)
            # TRL has no public way to add per-step metrics: SFTTrainer.log() averages and clears
            # self._metrics[mode], and counts `num_tokens` in self._total_train_tokens inside the
            # compute_loss this method replaces; we keep both exactly as TRL's own compute_loss does.
            if mode == "train":
                self._total_train_tokens += int(inputs["attention_mask"].sum())
                self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            for k, v in logs.items():
                self._metrics[mode][k].append(v)
            return (loss, out) if return_outputs else loss

    return RegularizedSFTTrainer
