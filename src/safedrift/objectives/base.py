"""The interface of an objective; this base class is also `sft` (plain NLL on completion tokens).

An objective declares, as class attributes and classmethods (read without building it):
- `schema`: JSON schema of `objectives.<name>` for this type (`type: {const: <type>}`; it may use
  the shared `#/$defs/...` of workflow/schemas/config.schema.yaml);
- `family`: "sft" (it changes the data or adds loss terms; every defense of `composes_with` "sft"
  works with it) or "preference" (trained on preference pairs by its own TRL trainer);
- `needs_reference`: whether its trainer needs a frozen reference model (a full copy of the weights
  unless LoRA can disable its adapter); loss terms say so themselves;
- `inputs(settings, run, config)`, `check(name, settings, config)`: as for defenses.

and, built for one run: `prepare(rows)` (the rows as it trains on them), `terms()` (loss terms),
`card(rows)` (run-card entries) and `make_trainer(...)`, which for the SFT family is the shared
finetune.trainer.sft_trainer.
"""

from __future__ import annotations

from safedrift.registry import type_schema


class Objective:
    schema = type_schema("sft")
    family = "sft"
    needs_reference = False
    rows_label = None  # what its training rows are, in error messages ("preference pairs"); None: the data

    @classmethod
    def inputs(cls, settings: dict, run: dict, config: dict) -> dict[str, str | list[str]]:
        """Files this objective reads, by name, for `run`; paths relative to the workflow root."""
        return {}

    @classmethod
    def check(cls, name: str, settings: dict, config: dict) -> None:
        """Raise ConfigError (naming `objectives.<name>.<key>`) on what the schema cannot rule out."""

    def __init__(self, settings: dict, context):
        self.settings = settings
        self.context = context

    def prepare(self, rows: list[dict]) -> list[dict]:
        """Rows (prompt `messages`, `target`, `source`) as this objective trains on them."""
        return rows

    def terms(self) -> list:
        """Loss terms added to the NLL (finetune.terms.LossTerm)."""
        return []

    def card(self, rows: list[dict]) -> dict:
        """Entries for the run card, given the rows in training order: how many came from each source."""
        return {"sources": {s: sum(r["source"] == s for r in rows) for s in sorted({r["source"] for r in rows})}}

    def make_trainer(self, model, tokenizer, rows: list[dict], common_args: dict, callbacks: list, *, terms=(),
                     columns: dict | None = None, reference=None, reference_logprobs=None):
        """The trainer of `rows` (in training order): common_args are the keyword arguments every TRL
        config takes (finetune.run); terms are this objective's and the defense's; columns the
        per-example floats (name -> one per row); reference the frozen reference model or None;
        reference_logprobs the run's cache of the reference's completion log-probs or None."""
        from safedrift.finetune.trainer import sft_trainer

        return sft_trainer(model, tokenizer, rows, common_args, callbacks, terms=terms, columns=columns,
                           reference=reference, reference_logprobs=reference_logprobs)


def with_system_prompt(row: dict, text: str) -> dict:
    """The row with `text` as its system message (replacing one it had)."""
    messages = [m for m in row["messages"] if m["role"] != "system"]
    return {**row, "messages": [{"role": "system", "content": text}, *messages]}
