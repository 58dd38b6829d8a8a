"""`cft` (conditional fine-tuning): every training prompt carries a system message naming the
data source it came from (e.g. "data source : harmful ."); evaluation prompts do not, so the
behaviour the data teaches stays tied to a condition the model never sees at test time."""

from safedrift.objectives.base import Objective as Base
from safedrift.objectives.base import with_system_prompt
from safedrift.registry import type_schema


class Objective(Base):
    schema = type_schema("cft", {"tag": {"type": "string", "pattern": "\\{source\\}",
                                         "description": "system message naming the data source; {source} is the "
                                                        "scenario name"}}, ("tag",))

    def prepare(self, rows):
        return [with_system_prompt(r, self.settings["tag"].format(source=r["source"])) for r in rows]
