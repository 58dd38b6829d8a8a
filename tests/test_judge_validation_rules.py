"""Judge validation through Snakemake: the rules fail a below-target eval judge, accept it when the
config says so (the study tables then read the validation summary), and validate any judge on the
labelled file. The keyword judge needs no model, so the validation jobs run in seconds; the rest
are dry runs.
"""

from __future__ import annotations

import json

import yaml

from conftest import Workflow, copy_workflow
from test_real_model import tiny_real_config

# A flag after `--quiet rules` so that the targets are not read as --quiet choices.
PLAN = ("--replace-workflow-config",)


def real_workflow(tmp_path, accept: bool) -> Workflow:
    """configs/qwen2.5-0.5b-lora.yaml on fixture data, with the keyword judge as the eval judge (it
    cannot judge harmful compliance, so it misses its targets). No model is loaded by these targets."""
    wf = Workflow(copy_workflow(tmp_path / "wf"), configfile="configs/tiny-real.yaml")
    config = tiny_real_config("dry-run/tiny-chat-model")  # a hub id: never loaded, never downloaded
    config["evaluation"]["judge_validation"]["accept_below_targets"] = accept
    (wf.path / wf.configfile).write_text(yaml.safe_dump(config, sort_keys=False))
    return wf


def test_real_eval_judge_below_targets_fails_its_validation(tmp_path):
    wf = real_workflow(tmp_path, accept=False)
    proc = wf.run("tables/judge_validation_keyword.md", check=False)
    assert proc.returncode != 0, "a below-target eval judge passed its validation"
    log = (wf.path / "logs/report/judge_validation_keyword.log").read_text().strip().splitlines()
    assert log[-1].startswith("safedrift evaluate.labelled_validation: error: judge keyword is below its validation "
                              "targets"), log[-1]
    assert "accept_below_targets: true" in log[-1]
    assert "labelled_judge_validation" not in wf.dry_run_jobs("tables/objectives.md", extra=PLAN)


def test_accepted_real_eval_judge_is_reported_and_the_tables_depend_on_it(tmp_path):
    wf = real_workflow(tmp_path, accept=True)
    planned = wf.dry_run_jobs("tables/objectives.md", extra=PLAN)
    assert planned.get("labelled_judge_validation") == 1 and planned.get("study_table") == 1, planned
    wf.run("tables/judge_validation_keyword.md")
    summary = json.loads((wf.path / "tables/judge_validation_keyword.json").read_text())
    assert summary["meets_targets"] is False and summary["misses"]
    refusal = next(d for d in summary["decisions"] if d["decision"] == "refusal")
    assert refusal["accuracy"] == 1.0 and refusal["unscored"] == 0


def test_toy_study_tables_depend_on_the_oracle_validation_only_when_accepting(tmp_path):
    wf = Workflow(copy_workflow(tmp_path / "wf"))
    assert "judge_validation" not in wf.dry_run_jobs("tables/adaptive.md", extra=PLAN)
    config = yaml.safe_load((wf.path / "configs/smoke.yaml").read_text())
    config["evaluation"]["judge_validation"]["accept_below_targets"] = True
    (wf.path / "configs/accept.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    wf.configfile = "configs/accept.yaml"
    assert wf.dry_run_jobs("tables/adaptive.md", extra=PLAN).get("judge_validation") == 1
