"""The interface of a defense; this base class is also the `none` defense (changes nothing).

A defense declares, as class attributes and classmethods (read without building it, by config
validation and the Snakemake rules):
- `schema`: JSON schema of `defenses.<name>` for this type (`type: {const: <type>}`); it may use the
  shared `#/$defs/...` of workflow/schemas/config.schema.yaml (fraction, kl_direction, name, ...);
- `composes_with`: the objective families it works with ("sft", "preference");
- `stateful`: True when it keeps state outside the trainer's checkpoint (an anchor copy of the
  weights, say), so a budget ladder cannot continue a smaller budget and a killed run cannot resume
  from its checkpoint: each trains afresh;
- `inputs(settings, run, config)`: the files it reads, by name (the finetune rule's inputs);
- `data_pools(settings, config)`: world pools it needs beyond those files ({pool: what for});
- `check(name, settings, config)`: cross-checks its schema cannot express (ConfigError);
- `model_paths(settings)`: the model folders or hub ids its settings name, by setting (checked on
  disk with the config's other paths, before any job, on runs of real models);
- `resolve(run_settings, config)`: the run's settings with what it takes from elsewhere in the config.

and, built for one run (`context.inputs` holds the declared files by the same names), how it
contributes to training: `terms()`, `safe_rows()`, `step_sources()`, `example_columns()`,
`during_training()`, `after_training()`.
"""

from __future__ import annotations

import contextlib

from safedrift.registry import type_schema


class Defense:
    schema = type_schema("none")
    composes_with = ("sft", "preference")
    stateful = False

    @classmethod
    def inputs(cls, settings: dict, run: dict, config: dict) -> dict[str, str | list[str]]:
        """Files this defense reads, by name, for `run` (keys model, reference, scenario, objective,
        defense, budget, seed); paths relative to the workflow root."""
        return {}

    @classmethod
    def data_pools(cls, settings: dict, config: dict) -> dict[str, str]:
        """World pools this defense needs beyond its inputs() (e.g. to train a probe that builds one of
        them), as {pool: what it does with it}; a real model must list each under models.<m>.data.pools."""
        return {}

    @classmethod
    def check(cls, name: str, settings: dict, config: dict) -> None:
        """Raise ConfigError (naming `defenses.<name>.<key>`) on settings the schema cannot rule out."""

    @classmethod
    def model_paths(cls, settings: dict) -> dict[str, str]:
        """{setting: model folder or hub id} of the models this defense loads on a real model."""
        return {}

    @classmethod
    def resolve(cls, run_settings: dict, config: dict) -> dict:
        """The run's settings (safedrift.config.run_settings) with what this defense reads from the rest
        of the config; they become the finetune rule's params, so a change there retrains."""
        return run_settings

    def __init__(self, settings: dict, context):
        self.settings = settings
        self.context = context

    def terms(self) -> list:
        """Loss terms added to the NLL (finetune.terms.LossTerm)."""
        return []

    def safe_rows(self, model, tokenizer, train_rows: list[dict]) -> tuple[list[dict], float]:
        """(safe examples, fraction of every batch they fill): data interleaved into training."""
        return [], 0.0

    def step_sources(self, steps: int) -> list[str] | None:
        """For each of `steps` optimizer steps, "train" or "safe": that step's examples all come from that
        pool (safe_rows()); None: every batch mixes safe rows at safe_rows()'s fraction. Step k's entry
        must depend on k only (a longer run's plan starts with a shorter one's: budget ladders)."""
        return None

    def example_columns(self, rows: list[dict]) -> dict[str, list[float]]:
        """Per-example floats for `rows` in training order (finetune.schedule: step k trains
        rows[k*B:(k+1)*B]); terms read them as batch.columns[name], [B] tensors."""
        return {}

    @contextlib.contextmanager
    def during_training(self, model):
        """Wraps trainer.train(): hooks that exist only while training."""
        yield

    def after_training(self, model) -> None:
        """Edits the trained model in place before it is saved."""
