"""Lookup of a config `type` in a registry of modules (objectives, defenses).

A type is a registered name (the module is imported only when a run uses it) or a dotted module
path importable on PYTHONPATH (e.g. `tests.fixtures.scaled_nll`): how a user adds a method
without editing the package.
"""

from __future__ import annotations

import importlib

from safedrift.errors import ConfigError


def module_name(registry: dict[str, str], type_: str, kind: str) -> str:
    """The module implementing `type_`: registry[type_], else `type_` itself when it is a dotted path."""
    if type_ in registry:
        return registry[type_]
    if "." in type_:
        return type_
    raise ConfigError(f"unknown {kind} type {type_!r} (known: {', '.join(registry)}; or a dotted module path "
                      "importable on PYTHONPATH)")


def load_class(registry: dict[str, str], type_: str, kind: str, attribute: str):
    """The class `attribute` (Objective, Defense) of the module implementing `type_`."""
    name = module_name(registry, type_, kind)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if type_ in registry:
            raise
        raise ConfigError(f"{kind} type {type_!r}: cannot import it ({e}); put its folder on PYTHONPATH") from None
    if not hasattr(module, attribute):
        raise ConfigError(f"{kind} type {type_!r}: module {name} has no class {attribute}")
    return getattr(module, attribute)


def type_schema(type_: str, properties: dict | None = None, required: tuple = (), **extra) -> dict:
    """The usual variant schema: an object of `properties` (plus `type: {const: type_}`), no other key."""
    return {"type": "object", "additionalProperties": False, "required": ["type", *required],
            "properties": {"type": {"const": type_}, **(properties or {})}, **extra}
