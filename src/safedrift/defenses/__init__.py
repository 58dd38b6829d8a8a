"""In-training defenses, keyed by the config's `defenses.<name>.type`.

Modules are imported only when a run uses them. To add a defense:
1. write `safedrift/defenses/<type>.py` with a class `Defense(base.Defense)` that declares its
   `schema` (the settings, with descriptions), `composes_with`, `stateful` and, if it reads files,
   `inputs(settings, run, config)` (their paths; the finetune rule depends on them and the run gets
   them as `self.context.inputs[name]`), and overrides what it changes in training: `terms()` (loss
   terms, finetune.terms), `safe_rows()` / `step_sources()` (data), `example_columns()`
   (per-example floats the terms read), `during_training()` (hooks), `after_training()` (edit the
   weights before they are saved). See defenses/base.py;
2. add `"<type>": "safedrift.defenses.<type>"` to DEFENSES below;
3. a variant in config.yaml's `defenses:` (and a study using it) and a test.
No code names a defense type elsewhere: config validation, the Snakemake rules and finetune.run ask
this registry (the README's config-keys table and the schema's `defenses` description list the
built-in types for readers). A defense outside the package needs no registration: `type: my_pkg.my_defense`
(a dotted module path importable on PYTHONPATH) works the same.
"""

from __future__ import annotations

from safedrift.registry import load_class, module_name

DEFENSES = {
    "none": "safedrift.defenses.base",
    "kl": "safedrift.defenses.kl",
    "ldifs": "safedrift.defenses.ldifs",
    "steering": "safedrift.defenses.steering",
    "interleave": "safedrift.defenses.interleave",
    "adaptive": "safedrift.defenses.adaptive",
    "token_constrained": "safedrift.defenses.token_constrained",
    "lisa": "safedrift.defenses.lisa",
    "safelora": "safedrift.defenses.safelora",
}


def defense_module(type_: str) -> str:
    return module_name(DEFENSES, type_, "defense")


def defense_class(type_: str):
    """The Defense class of a type (ConfigError for an unknown one)."""
    return load_class(DEFENSES, type_, "defense", "Defense")


def make_defense(settings: dict, context):
    return defense_class(settings["type"])(settings, context)
