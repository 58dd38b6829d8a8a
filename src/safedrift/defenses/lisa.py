"""`lisa`: Lazy safety alignment (Huang et al. 2024, "Lisa: Lazy Safety Alignment for Large
Language Models against Harmful Fine-tuning Attack"): bi-state optimisation. Training alternates
`align_steps` optimizer steps on alignment (safe) data with `user_steps` steps on the user's data,
starting with alignment, and every step adds rho/2 * ||theta - theta_anchor||^2, theta_anchor the
weights at the last switch between the states (losses.proximal), left out for the first
`proximal_after` share of the run's steps.

Safe data: harmful prompts with refusals and benign tasks with their answers (`refusal_share` of
them refusals) from the world's pools, as the interleave defense takes them; the paper's alignment
data are BeaverTails prompts with safe answers (refusal_share 1.0 is the closest).

Settings (defaults from github.com/git-disl/Lisa, commit 68e36595d3643ae5b18e955ee385bad71851d021:
script/finetune/lisa_poison_ratio.sh runs RHO=1, align_step=100, finetune_step=900; trainer.py
`training_step` skips the proximal term while steps <= 0.1 * the run's steps):
- rho (1.0): weight of the proximal term
- align_steps (100), user_steps (900): optimizer steps per alignment / user state
- proximal_after (0.1): share of the run's steps, from the start, without the proximal term
- refusal_share (0.5): share of the safe examples that are refusals

Stateful: the anchor lives in the loss term, outside the trainer's checkpoint.
"""

import random

from safedrift.defenses.base import Defense as Base
from safedrift.defenses.interleave import mixed, safe_pools
from safedrift.io import read_jsonl
from safedrift.registry import type_schema

DEFAULTS = {"rho": 1.0, "align_steps": 100, "user_steps": 900, "proximal_after": 0.1, "refusal_share": 0.5}
POOLS = ("refusals", "tasks")


def step_plan(steps: int, align_steps: int, user_steps: int) -> list[str]:
    """'safe' for each alignment step, 'train' for each user step: align_steps, then user_steps,
    repeated, the first `steps` of them (so a plan of N steps begins with the plan of any M < N)."""
    cycle = ["safe"] * align_steps + ["train"] * user_steps
    return [cycle[k % len(cycle)] for k in range(steps)]


def proximal_on(n_rows: int, batch_size: int, proximal_after: float) -> list[float]:
    """Per example (rows in training order, batch_size per optimizer step): 1.0 where its step k
    (from 0) is past the first proximal_after share of the run's steps (k > proximal_after * steps,
    as Lisa's trainer), else 0.0."""
    steps = n_rows // batch_size
    return [float(i // batch_size > proximal_after * steps) for i in range(n_rows)]


def pool_rows(refusals: list[dict], tasks: list[dict], refusal_share: float, seed: int) -> list[dict]:
    """Safe examples: as many as both pools allow at refusal_share, shuffled with the run's seed.
    Benign tasks whose target is a refusal are left out (no over-refusal training)."""
    rng = random.Random(f"lisa/{seed}")
    refusals, tasks = safe_pools(refusals, tasks)
    rng.shuffle(refusals)
    rng.shuffle(tasks)
    return mixed(refusals, tasks, refusal_share, rng)


class Defense(Base):
    schema = type_schema("lisa", {
        "rho": {"type": "number", "minimum": 0, "description": "weight of rho/2 ||theta - theta_anchor||^2 (default 1.0)"},
        "align_steps": {"type": "integer", "minimum": 1,
                        "description": "optimizer steps on safe data per alignment state (default 100)"},
        "user_steps": {"type": "integer", "minimum": 1,
                       "description": "optimizer steps on the user's data per user state (default 900)"},
        "proximal_after": {"type": "number", "minimum": 0, "maximum": 1,
                           "description": "share of the run's first steps without the proximal term (default 0.1)"},
        "refusal_share": {"type": "number", "minimum": 0, "maximum": 1,
                          "description": "share of safe examples that are refusals, the rest benign tasks (default 0.5)"},
    })
    composes_with = ("sft",)
    stateful = True

    def setting(self, key):
        return self.settings.get(key, DEFAULTS[key])

    @classmethod
    def inputs(cls, settings, run, config):
        return {pool: f"results/{run['model']}/world/pools/{pool}.jsonl" for pool in POOLS}

    def terms(self):
        from safedrift.losses.proximal import ProximalTerm

        return [ProximalTerm(self.setting("rho"), name="proximal")]

    def safe_rows(self, model, tokenizer, train_rows):
        """The safe pool, and the long-run share of steps that train on it (the step plan, not
        per-batch mixing, decides which batches do)."""
        paths = self.context.inputs
        rows = pool_rows(read_jsonl(paths["refusals"]), read_jsonl(paths["tasks"]), self.setting("refusal_share"),
                         self.context.seed)
        align, user = self.setting("align_steps"), self.setting("user_steps")
        return rows, align / (align + user)

    def step_sources(self, steps):
        return step_plan(steps, self.setting("align_steps"), self.setting("user_steps"))

    def example_columns(self, rows):
        return {"proximal": proximal_on(len(rows), self.context.batch_size, self.setting("proximal_after"))}
