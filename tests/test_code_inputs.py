"""Which code a job lists among its inputs (pipeline.source_closure): editing a file reruns every
job whose closure holds it. The config validation (config.py, config_inputs.py) decides what runs,
not what a job computes, so no job that trains, generates, scores or loads a model may hold it:
otherwise a new config check retrains and rescores everything (it did: every judge_score job,
train_classifier, the critic, and the interleave and lisa fine-tunes held it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safedrift.defenses import DEFENSES
from safedrift.judges import JUDGES, judge_module
from safedrift.objectives import OBJECTIVES
from safedrift.pipeline import finetune_modules, source_closure

VALIDATION = {"src/safedrift/config.py", "src/safedrift/config_inputs.py"}

WORKFLOW = Path(__file__).resolve().parents[1] / "workflow"
# Report stages lay out tables from the config (study cells, claim specs): they hold the validation, and
# rerunning them costs seconds.
LAYOUT_STAGES = ("report.",)


def workflow_stages() -> list[str]:
    """The stage of every rule that names its code inputs (`sources("<stage>")` in workflow/rules/*.smk)."""
    text = "".join(p.read_text() for p in sorted((WORKFLOW / "rules").glob("*.smk")))
    return sorted(set(re.findall(r'sources\("([a-z_.]+)"\)', text)))


# Every rule's stage but the report's: each loads, trains, scores or draws data (judges below).
MODEL_STAGES = [s for s in workflow_stages() if not s.startswith(LAYOUT_STAGES)]


def test_the_stages_are_read_from_the_workflow():
    # a parse that found nothing would pass every test below
    assert {"world.pretrain", "finetune.reference_logprobs", "evaluate.generate", "evaluate.metrics",
            "risk.critic", "data.scenarios"} <= set(MODEL_STAGES)
    assert "report.scorecard" in workflow_stages() and "report.scorecard" not in MODEL_STAGES


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
