"""Tokenise chat rows for forward passes outside a training run (ranking safe examples, the reference
log-prob cache) exactly as the SFT trainer a run builds encodes them.

The encoding is the trainer's own (finetune.trainer.sft_trainer: its dataset and collator), not a
second one: the chat template it trains with (TRL swaps in a training variant with `{% generation %}`
markers where the model's own has none, e.g. Qwen2.5's), its truncation to max_length and its
completion mask. Encoding with the model's own template instead gives a template without markers
an empty completion mask, and every example silently no loss tokens.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROW = "row"  # the column with each example's index among the rows encode_chats was given


def chat_messages(row: dict) -> list[dict]:
    """Prompt messages plus the target as the assistant turn."""
    return [*row["messages"], {"role": "assistant", "content": row["target"]}]


class Encoded:
    """A trainer's examples as its collator batches them: input_ids, attention_mask and labels [B,T]
    (-100 outside the completion tokens), right-padded, what the trainer trains on."""

    def __init__(self, trainer=None):  # None: no examples
        self.dataset = trainer.train_dataset if trainer is not None else None
        self.collate = trainer.data_collator if trainer is not None else None
        # the index among the given rows of each example: the trainer drops a row whose completion
        # tokens truncation removed (it has no loss)
        if self.dataset is None:
            self.rows = []
        elif ROW in self.dataset.column_names:
            self.rows = [int(i) for i in self.dataset[ROW]]
        else:
            self.rows = list(range(len(self.dataset)))

    def batches(self, batch_size: int, rows: Iterable[int] | None = None) -> Iterator[dict]:
        """Collated batches of up to `batch_size` examples, in order: of the rows with the given indices
        that the trainer kept (default: all). A batch of encode_chats also holds `row` [B] (long)."""
        at = {r: p for p, r in enumerate(self.rows)}
        positions = [at[r] for r in (self.rows if rows is None else rows) if r in at]
        batch_size = max(batch_size, 1)
        for start in range(0, len(positions), batch_size):
            batch = self.collate([self.dataset[p] for p in positions[start:start + batch_size]])
            if ROW in batch:
                batch[ROW] = batch[ROW].long()
            yield batch


def encode_chats(model, tokenizer, rows: list[dict], max_length: int, seed: int = 0, key: str | None = None) -> Encoded:
    """`rows` (prompt `messages` + `target`) encoded by the SFT trainer a run builds on `model` and
    `tokenizer` (the run's, with its chat template), truncated to `max_length`, leaving `model` as it was
    (forwards_kept). Building the trainer seeds the global RNGs with `seed`, as every Trainer does. key:
    the config key whose setting asked for the encoding, named (with what to do) where the trainer cannot
    find the completion tokens, e.g. under a chat template without `{% generation %}` markers that TRL has
    no training variant of."""
    from safedrift.errors import DataError
    from safedrift.finetune.run import common_args
    from safedrift.finetune.trainer import sft_trainer

    if not rows:
        return Encoded()
    with tempfile.TemporaryDirectory() as tmp, forwards_kept(model):  # nothing is written to tmp: no step is taken
        common = common_args(Path(tmp), 1, {"batch_size": 1, "learning_rate": 0.0, "max_length": max_length}, seed)
        try:
            return Encoded(sft_trainer(model, tokenizer, rows, common, [], columns={ROW: list(range(len(rows)))}))
        except (ValueError, RuntimeError) as e:
            if key is None:
                raise
            raise DataError(f"config key {key}: the SFT trainer cannot find the completion tokens to score "
                            f"(TRL: {str(e).strip().splitlines()[0]}); where the model's chat template has no "
                            "{% generation %} markers and TRL has no training variant of it, set "
                            "models.<model>.finetune.chat_template to one with them") from e


@contextmanager
def forwards_kept(model):
    """Restores every module's instance `forward` on exit. Building TRL's SFT trainer on a model sets an
    instance `forward` (its fused LM head) bound to that model, and a deep copy keeps the binding: a copy
    made after an encoding (interleave's ranked probe, finetune.run's frozen KL reference once a defense
    picked its data) would run the original's weights (the probe never trained; the reference followed
    the policy, KL 0)."""
    absent = object()
    before = {m: m.__dict__.get("forward", absent) for m in model.modules()}
    try:
        yield model
    finally:
        for module, forward in before.items():
            if module.__dict__.get("forward", absent) is not forward:
                if forward is absent:
                    del module.__dict__["forward"]
                else:
                    module.__dict__["forward"] = forward


def training_tokens(tokenizer, rows: list[dict], max_length: int) -> list[int]:
    """Tokens of each row as the SFT trainer trains on it: the chat (prompt turns and target) with the
    template, truncated to max_length; prompt and completion tokens both count (the trainer's
    `num_tokens`, non-padding tokens of its batches)."""
    out = []
    for i in range(0, len(rows), 256):
        ids = tokenizer.apply_chat_template([chat_messages(r) for r in rows[i:i + 256]], tokenize=True,
                                            return_dict=True)["input_ids"]
        out += [min(len(x), max_length) for x in ids]
    return out
