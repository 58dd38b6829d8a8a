"""Which defenses train with which objectives: a defense declares the objective families it composes
with (`Defense.composes_with`), an objective its family (`Objective.family`).

Its own module, not config.py, because a defense's `check` asks it too (interleave's misaligned run):
a module a training job imports must not bring the config validation into that job's code inputs,
or every new config check would retrain it (tests/test_code_inputs.py)."""

from __future__ import annotations

from safedrift.defenses import defense_class
from safedrift.errors import ConfigError
from safedrift.objectives import objective_class


def check_composable(config, run, where) -> None:
    """ConfigError unless the run's defense composes with its objective's family (Defense.composes_with)."""
    objective = config["objectives"][run["objective"]]["type"]
    defense = config["defenses"][run["defense"]]["type"]
    family, composes_with = objective_class(objective).family, defense_class(defense).composes_with
    if family not in composes_with:
        raise ConfigError(f"config key {where}: defense {run['defense']!r} ({defense}) does not compose with objective "
                          f"{run['objective']!r} ({objective}, family {family}); use it with an objective of family "
                          f"{' or '.join(composes_with)} or move the pair to a study without it")
