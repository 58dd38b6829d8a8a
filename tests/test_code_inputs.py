"""Which code a job lists among its inputs (pipeline.source_closure): editing a file reruns every
job whose closure holds it. The config validation (config.py, config_inputs.py) decides what runs,
not what a job computes, so no job that trains, generates, scores or loads a model may hold it:
otherwise a new config check retrains and rescores everything (it did: every judge_score job,
train_classifier, the critic, and the interleave and lisa fine-tunes held it)."""

from __future__ import annotations

import pytest

from safedrift.defenses import DEFENSES
from safedrift.judges import JUDGES, judge_module
from safedrift.objectives import OBJECTIVES
from safedrift.pipeline import finetune_modules, source_closure

VALIDATION = {"src/safedrift/config.py", "src/safedrift/config_inputs.py"}

# The stages of every rule that loads, trains or scores (workflow/rules/*.smk; judges below).
MODEL_STAGES = ["world.tokenizer", "world.pretrain", "world.align", "world.card", "data.reference_responses",
                "finetune.reference_logprobs", "evaluate.generate", "evaluate.metrics", "evaluate.labelled_validation",
                "judges.train_classifier", "risk.persona", "risk.probe", "risk.probe_test", "risk.probe_scores",
                "risk.critic"]


def jobs():
    for stage in MODEL_STAGES:
        yield stage, (f"safedrift.{stage}",)
    for objective in OBJECTIVES:
        for defense in DEFENSES:
            yield f"finetune {objective}/{defense}", finetune_modules(objective, defense)
    for judge in JUDGES:
        yield f"judge_score {judge}", ("safedrift.judges.score", judge_module(judge))


@pytest.mark.parametrize("job,modules", list(jobs()), ids=[job for job, _ in jobs()])
def test_jobs_that_compute_do_not_hold_the_config_validation(job, modules):
    held = VALIDATION & set(source_closure(*modules))
    assert not held, f"{job}: its code inputs hold {sorted(held)}; editing a config check would rerun it"
