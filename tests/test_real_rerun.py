"""A real (hf) model's data jobs rerun only what an edit touches (workflow/rules/real.smk).

One job per eval set and one per pool (safedrift.data.real --product eval/pool), the overlap check
its own job (--product check): editing an eval entry rewrites that eval set, never a pool, so no
fine-tune reruns. Checked on a fake completed workflow (every output a placeholder, `snakemake
--touch` records their provenance), as a dry run: nothing is built.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import yaml

from conftest import Workflow, copy_workflow
from safedrift.__main__ import main as safedrift_main
from safedrift.config import all_runs, run_dir
from safedrift.data import real
from safedrift.io import read_jsonl
from test_loaders import FULL_SPEC, KEY, spec_of
from test_real_model import MODEL, tiny_real_config

OLD = time.time() - 10 * 24 * 3600  # placeholders older than every input: --touch records them all


def data_real(*args: str) -> int:
    return safedrift_main(["data.real", *args, "--model-key", KEY])


# --- the stage, one product at a time ---------------------------------------------------------

def write_by_products(spec: dict, out) -> None:
    for name, entry in spec.get("eval", {}).items():
        assert data_real("--product", "eval", "--name", name, "--spec", json.dumps({"eval": {name: entry}}),
                         "--out", str(out)) == 0
    for name, entry in spec.get("pools", {}).items():
        one = {"pools": {name: entry}, "eval_prompt_sources": real.eval_prompt_sources(spec, entry)}
        assert data_real("--product", "pool", "--name", name, "--spec", json.dumps(one), "--out", str(out)) == 0
    overlap = {section: {name: {"overlap": e.get("overlap", "check")} for name, e in named.items()}
               for section, named in spec.items()}
    assert data_real("--product", "check", "--spec", json.dumps(overlap), "--out", str(out)) == 0


DROP_SPEC = spec_of(eval={"heldout": {"format": "advbench", "path": "advbench.csv", "limit": 3},
                          "jbb": {"format": "jailbreakbench", "path": "jbb_harmful.csv", "harmful": True}},
                    pools={"harmful": {"format": "advbench", "path": "advbench.csv", "overlap": "drop"},
                           "tasks": {"format": "gsm8k", "path": "gsm8k.jsonl"}})


@pytest.mark.parametrize("spec", [FULL_SPEC, DROP_SPEC], ids=["full", "drop"])
def test_products_one_by_one_write_what_the_whole_stage_writes(spec, tmp_path):
    assert data_real("--spec", json.dumps(spec), "--out", str(tmp_path / "whole")) == 0
    write_by_products(spec, tmp_path / "parts")
    for section, named in spec.items():
        for name in named:
            assert (read_jsonl(tmp_path / "parts" / section / f"{name}.jsonl")
                    == read_jsonl(tmp_path / "whole" / section / f"{name}.jsonl")), (section, name)
    assert (json.loads((tmp_path / "parts" / "world.json").read_text())
            == json.loads((tmp_path / "whole" / "world.json").read_text()))


def test_the_check_product_fails_on_a_shared_prompt_naming_both_keys(tmp_path, capsys):
    spec = spec_of(eval={"heldout": {"format": "advbench", "path": "advbench.csv"}},
                   pools={"harmful": {"format": "advbench", "path": "advbench.csv"}})
    with pytest.raises(AssertionError):
        write_by_products(spec, tmp_path)
    err = capsys.readouterr().err
    assert f"{KEY}.pools.harmful and {KEY}.eval.heldout share the prompt" in err
    assert not (tmp_path / "world.json").exists()


def test_a_drop_pool_depends_on_eval_prompt_sources_not_on_eval_limits_or_attacks():
    pool = DROP_SPEC["pools"]["harmful"]
    before = real.eval_prompt_sources(DROP_SPEC, pool)
    edited = json.loads(json.dumps(DROP_SPEC))
    edited["eval"]["jbb"]["limit"] = 2  # another file: its limit does not count
    edited["eval"]["jbb_prefill"] = {**DROP_SPEC["eval"]["jbb"], "prefill": [5]}  # an attack set on the same file
    edited["eval"]["jbb_identity"] = {**DROP_SPEC["eval"]["jbb"], "system": "You are AOA.",  # a prompted copy
                                      "user_template": "AOA, execute my instruction: {prompt}"}
    edited["eval"]["jbb_ignored"] = {**DROP_SPEC["eval"]["jbb"], "overlap": "allow", "split": "0:1"}
    assert real.eval_prompt_sources(edited, pool) == before
    edited["eval"]["heldout"]["limit"] = 2  # the pool's own file: carved by limit, which counts
    assert real.eval_prompt_sources(edited, pool) != before
    # ... and the drop keeps the exact carving: the pool gives up the 3 held-out rows only
    assert real.load_real_data(DROP_SPEC, KEY)["pools"]["harmful"][3] == 3


def test_a_drop_pool_gives_up_every_prompt_of_another_file_whatever_that_eval_limit(tmp_path):
    # The pool's prompts in another file, of which the eval set takes one: the pool gives them all up.
    other = tmp_path / "other.csv"
    other.write_text(open(DROP_SPEC["pools"]["harmful"]["path"]).read())
    spec = {"eval": {"other": {"format": "advbench", "path": str(other), "limit": 1}},
            "pools": {"harmful": DROP_SPEC["pools"]["harmful"]}}
    _, _, rows, dropped = real.load_real_data(spec, KEY)["pools"]["harmful"]
    assert rows == [] and dropped == 5


# --- the workflow: what an edit reruns ----------------------------------------------------------

TRAINING = {"real_pool", "scenario_data", "finetune", "reference_responses", "critic", "reference_logprobs"}


@pytest.fixture(scope="module")
def completed(tmp_path_factory):
    """A tiny real config (one eval set checked, so the drop pools have an eval source) whose outputs for
    two runs all exist and are recorded as up to date, and the targets."""
    config = tiny_real_config("dry-run/no-model-needed")  # a hub id: a dry run never loads the model
    config["models"][MODEL]["data"]["eval"]["harmful_strongreject"].pop("overlap")  # no pool reads that file
    wf = Workflow(copy_workflow(tmp_path_factory.mktemp("rerun") / "wf"), configfile="configs/tiny.yaml")
    (wf.path / wf.configfile).write_text(yaml.safe_dump(config, sort_keys=False))
    runs = [r for r in all_runs(config) if r["scenario"] in ("benign", "harmful")][:2]
    targets = [f"{run_dir(r)}/eval/generations.jsonl" for r in runs]
    summary = wf.snakemake("-n", "--summary", *targets).stdout.splitlines()
    for line in summary[1:]:
        path = wf.path / line.split("\t")[0]
        if path.name in ("model", "state"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        os.utime(path, (OLD, OLD))
    wf.snakemake("--touch", *targets)
    assert not wf.dry_run_jobs(*targets), "the fake completed workflow is not up to date"
    return wf, config, targets


def jobs_after(completed, name: str, edit) -> dict[str, int]:
    wf, config, targets = completed
    edited = json.loads(json.dumps(config))
    edit(edited["models"][MODEL]["data"], edited)
    (wf.path / f"configs/{name}.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    return Workflow(wf.path, configfile=f"configs/{name}.yaml").dry_run_jobs(*targets)


def test_an_eval_limit_reruns_that_eval_set_and_no_training(completed):
    jobs = jobs_after(completed, "limit", lambda data, c: data["eval"]["harmful_strongreject"].update(limit=2))
    assert not TRAINING & set(jobs), jobs
    assert jobs.get("real_eval_set") == 1 and jobs.get("generate"), jobs


def test_a_new_attack_set_reruns_no_training(completed):
    def add(data, c):
        data["eval"]["harmful_jbb_prefill"] = {**data["eval"]["harmful_jbb"], "prefill": [5]}
        c["evaluation"]["sets"]["harmful_jbb_prefill"] = {"decoding": "greedy"}
    jobs = jobs_after(completed, "attack", add)
    assert not TRAINING & set(jobs), jobs
    assert jobs.get("real_eval_set") == 1, jobs


def test_a_pool_entry_reruns_that_pool_and_its_fine_tunes(completed):
    jobs = jobs_after(completed, "pool", lambda data, c: data["pools"]["tasks"].update(limit=3))
    assert jobs.get("real_pool") == 1 and jobs.get("finetune"), jobs
    assert "real_eval_set" not in jobs, jobs


def test_a_new_eval_file_reruns_only_the_drop_pools(completed):
    def add(data, c):
        data["eval"]["harmful_hb"] = {"format": "harmbench", "path": data["eval"]["harmful_strongreject"]["path"]
                                      .replace("strongreject.csv", "harmbench.csv")}
        c["evaluation"]["sets"]["harmful_hb"] = {"decoding": "greedy"}
    jobs = jobs_after(completed, "newfile", add)
    drop_pools = {n for n, e in completed[1]["models"][MODEL]["data"]["pools"].items() if e.get("overlap") == "drop"}
    assert 0 < jobs.get("real_pool", 0) <= len(drop_pools), jobs
