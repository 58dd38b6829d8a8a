"""Which study a figure or a table draws: chosen by the cells it needs, never by the study's name.

A figure or table declares, per role, the cells it compares (`Cells`): the axis its bars or lines
compare (objectives or defenses: a study whose grid lists more than one), whether its scenarios
are narrow (EMA) ones or attacks (benign, harmful, identity-shift fine-tuning), and whether they are
distinct kinds of data (a panel each) or one kind swept along a setting (`sweep`, e.g. the poison
ratio of harmful fine-tuning: an x axis), and whether its defenses are one kind at several strengths
(`strengths`: a dose-response study, e.g. fixed and adaptive KL at several weights). The study of a role
is the first study in the config's order whose grid matches, so renaming a study keeps every figure
and table it feeds; a figure whose role no study matches is not a target of `all`.
"""

from __future__ import annotations

from dataclasses import dataclass


# Three or more defenses of one type make a dose-response study (two are a comparison, as fixed KL
# beside the adaptive variants' lambda_max, or probe beside critic).
STRENGTH_LADDER = 3


@dataclass(frozen=True)
class Cells:
    """compares: "objective" | "defense", the axis the panels compare; narrow: True for a study with
    narrow (EMA) scenarios, False for one without, None for either; sweep: None for a study whose
    scenarios are distinct kinds (type and domain), or a scenario setting (e.g. "poison_ratio") for a
    study whose scenarios (two or more) are one kind with distinct values of that setting; strengths: True
    for a study in which some defense type occurs STRENGTH_LADDER times or more (one kind of defense at
    several settings), False for one without."""

    compares: str
    narrow: bool | None = None
    sweep: str | None = None
    strengths: bool = False

    def matches(self, study: dict, config: dict) -> bool:
        if len(study[f"{self.compares}s"]) < 2:
            return False
        scenarios = [config["scenarios"][s] for s in study["scenarios"]]
        narrow = any(s["type"] == "narrow" for s in scenarios)
        kinds = [(s["type"], s.get("domain")) for s in scenarios]
        if self.sweep is None:
            swept = len(set(kinds)) < len(kinds)
        else:
            values = [s.get(self.sweep) for s in scenarios]
            swept = (len(scenarios) >= 2 and len(set(kinds)) == 1 and None not in values
                     and len(set(values)) == len(values))
        types = [config["defenses"][d]["type"] for d in study["defenses"]]
        ladder = any(types.count(t) >= STRENGTH_LADDER for t in set(types))
        return ((self.narrow is None or narrow == self.narrow) and swept == (self.sweep is not None)
                and ladder == self.strengths)


# The roles of the paper figures and tables.
OBJECTIVE_GRID = Cells("objective", narrow=False)  # objectives x budgets on attack scenarios (no defense)
DEFENSE_GRID = Cells("defense", narrow=False)  # defenses on benign / harmful / identity-shift fine-tuning
EMA_GRID = Cells("defense", narrow=True)  # defenses (and inoculation) against emergent misalignment
POISON_SWEEP = Cells("defense", narrow=False, sweep="poison_ratio")  # defenses on harmful data at several poison ratios
STRENGTH_SWEEP = Cells("defense", narrow=False, strengths=True)  # defenses at several strengths (configs/sensitivity/)


def select_study(config: dict, cells: Cells) -> str | None:
    """The first study (config order) whose grid has `cells`, or None."""
    return next((name for name, study in config["studies"].items() if cells.matches(study, config)), None)


def select_studies(config: dict, roles: dict[str, Cells]) -> dict[str, str] | None:
    """{role: study} for every role, or None when some role finds no study."""
    chosen = {role: select_study(config, cells) for role, cells in roles.items()}
    return None if None in chosen.values() else chosen
