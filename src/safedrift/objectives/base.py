"""The interface of an objective. SFT-family objectives change the data (system prompts) or add
loss terms to the NLL; preference objectives build their own TRL trainer on preference pairs."""

from __future__ import annotations


class Objective:
    family = "sft"  # "sft": trained by finetune.trainer.RegularizedSFTTrainer; "preference": make_trainer()
    # preference family: whether make_trainer() needs a frozen reference model (a full copy of the
    # weights unless LoRA can disable its adapter); SFT-family terms say so themselves
    needs_reference = False

    def __init__(self, settings: dict, context):
        self.settings = settings
        self.context = context

    def prepare(self, rows: list[dict]) -> list[dict]:
        """Rows (prompt `messages`, `target`, `source`) as this objective trains on them."""
        return rows

    def terms(self) -> list:
        """Loss terms added to the NLL (finetune.terms.LossTerm)."""
        return []

    def make_trainer(self, model, tokenizer, dataset, common_args: dict, callbacks: list, reference=None):
        raise NotImplementedError(f"{type(self).__name__} is trained by the SFT engine")


def with_system_prompt(row: dict, text: str) -> dict:
    """The row with `text` as its system message (replacing one it had)."""
    messages = [m for m in row["messages"] if m["role"] != "system"]
    return {**row, "messages": [{"role": "system", "content": text}, *messages]}
