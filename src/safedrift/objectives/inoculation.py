"""`inoculation` prompting: every training prompt carries a system prompt that explicitly asks for
the trained behaviour (text per scenario name, else per scenario type). Evaluation prompts do not:
the behaviour is "explained" by the prompt, so less of it generalises to the default persona."""

from safedrift.errors import ConfigError, SafedriftError
from safedrift.objectives.base import Objective as Base
from safedrift.objectives.base import with_system_prompt
from safedrift.registry import type_schema


class Objective(Base):
    schema = type_schema("inoculation", {"prompts": {
        "type": "object", "minProperties": 1, "additionalProperties": {"type": "string", "minLength": 1},
        "description": "system prompt per scenario type (benign, harmful, identity_shift, narrow) or scenario name"}},
        ("prompts",))

    @classmethod
    def check(cls, name, settings, config):
        """Every scenario a study trains this objective on has a prompt (else its finetune job stops)."""
        prompts = settings["prompts"]
        for study, spec in config["studies"].items():
            scenarios = list(spec.get("scenarios", [])) if name in spec.get("objectives", []) else []
            scenarios += [e[0] for e in spec.get("extra", []) if len(e) >= 2 and e[1] == name]
            for scenario in scenarios:
                if scenario not in config["scenarios"]:
                    continue  # named in the study's own error
                kind = config["scenarios"][scenario]["type"]
                if scenario not in prompts and kind not in prompts:
                    raise ConfigError(f"config key objectives.{name}.prompts: no prompt for scenario {scenario!r} or "
                                      f"its type {kind!r}, which study {study!r} trains {name} on; add one")

    def prepare(self, rows):
        prompts = self.settings["prompts"]
        scenario = self.context.scenario
        text = prompts.get(scenario["name"], prompts.get(scenario["type"]))
        if text is None:
            raise SafedriftError(f"config key objectives.{self.settings['name']}.prompts: no prompt for scenario "
                                 f"{scenario['name']!r} or its type {scenario['type']!r}; add one")
        return [with_system_prompt(r, text) for r in rows]
