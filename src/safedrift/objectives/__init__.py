"""Fine-tuning objectives, keyed by the config's `objectives.<name>.type`.

Modules are imported only when a run uses them (so a run's code dependencies are its own
objective, not all of them). To add an objective:
1. write `safedrift/objectives/<type>.py` with a class `Objective(base.Objective)` that declares
   its `schema` (the settings, with descriptions), its `family` and, if it reads files,
   `inputs(settings, run, config)`; an SFT-family objective overrides `prepare(rows)` (e.g.
   system prompts) and/or `terms()` (loss terms, finetune.terms) and is trained by the shared SFT
   trainer; one with its own TRL trainer overrides `make_trainer(...)` (preference pairs:
   subclass objectives/preference.py's PreferenceObjective and write its `preference_trainer(...)`). See objectives/base.py;
2. add `"<type>": "safedrift.objectives.<type>"` to OBJECTIVES below;
3. a variant in config.yaml's `objectives:` (and a study using it) and a test.
Nothing else names an objective type. One outside the package needs no registration:
`type: my_pkg.my_objective` (a dotted module path importable on PYTHONPATH) works the same.
"""

from __future__ import annotations

from safedrift.registry import load_class, module_name

OBJECTIVES = {
    "sft": "safedrift.objectives.sft",
    "cft": "safedrift.objectives.cft",
    "inoculation": "safedrift.objectives.inoculation",
    "kl_sft": "safedrift.objectives.kl_sft",
    "dpo": "safedrift.objectives.dpo",
    "orpo": "safedrift.objectives.orpo",
}


def objective_module(type_: str) -> str:
    return module_name(OBJECTIVES, type_, "objective")


def objective_class(type_: str):
    """The Objective class of a type (ConfigError for an unknown one)."""
    return load_class(OBJECTIVES, type_, "objective", "Objective")


def make_objective(settings: dict, context):
    return objective_class(settings["type"])(settings, context)
