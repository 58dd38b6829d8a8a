"""In-training defenses, keyed by the config's `defenses.<name>.type`.

Modules are imported only when a run uses them. To add a defense: write
`safedrift/defenses/<type>.py` with a class `Defense(base.Defense)` overriding what it needs
(extra loss terms, safe data to interleave, per-example KL weights, a training-time hook),
add it here, and add `defense_<type>` to workflow/schemas/config.schema.yaml.
"""

from __future__ import annotations

import importlib

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


def make_defense(settings: dict, context):
    try:
        module = DEFENSES[settings["type"]]
    except KeyError:
        raise ValueError(f"unknown defense type {settings['type']!r}; known: {', '.join(DEFENSES)}") from None
    return importlib.import_module(module).Defense(settings, context)
