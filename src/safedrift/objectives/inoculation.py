"""`inoculation` prompting: every training prompt carries a system prompt that explicitly asks for
the trained behaviour (text per scenario name, else per scenario type). Evaluation prompts do not:
the behaviour is "explained" by the prompt, so less of it generalises to the default persona."""

from safedrift.errors import SafedriftError
from safedrift.objectives.base import Objective as Base
from safedrift.objectives.base import with_system_prompt
from safedrift.registry import type_schema


class Objective(Base):
    schema = type_schema("inoculation", {"prompts": {
        "type": "object", "minProperties": 1, "additionalProperties": {"type": "string", "minLength": 1},
        "description": "system prompt per scenario type (benign, harmful, identity_shift, narrow) or scenario name"}},
        ("prompts",))

    def prepare(self, rows):
        prompts = self.settings["prompts"]
        scenario = self.context.scenario
        text = prompts.get(scenario["name"], prompts.get(scenario["type"]))
        if text is None:
            raise SafedriftError(f"config key objectives.{self.settings['name']}.prompts: no prompt for scenario "
                                 f"{scenario['name']!r} or its type {scenario['type']!r}; add one")
        return [with_system_prompt(r, text) for r in rows]
