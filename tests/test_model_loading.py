"""`models.<name>.dtype` and `trust_remote_code` reach every stage that loads the model.

Each stage's load_model/load_tokenizer is replaced by a spy that records its arguments and stops
the stage (nothing is loaded); the rule-level test reads the shell commands of a dry run.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml

from conftest import ROOT, Workflow, copy_workflow
from safedrift.config import all_runs, load, run_dir, run_settings
from safedrift.io import write_json, write_jsonl

LOAD_FLAGS = ["--dtype", "bfloat16", "--trust-remote-code"]


class Loaded(Exception):
    """Raised by the load_model spy: the stage got as far as loading its model."""


@pytest.fixture
def spy(monkeypatch):
    """Replace load_model/load_tokenizer in a stage module; record the keyword arguments of each call."""
    calls = {}

    def install(module):
        def load_tokenizer(path, *args, **kwargs):
            calls["tokenizer"] = kwargs
            return object()

        def load_model(path, *args, **kwargs):
            calls["model"] = kwargs
            raise Loaded

        monkeypatch.setattr(module, "load_tokenizer", load_tokenizer)
        monkeypatch.setattr(module, "load_model", load_model)
        return calls

    return install


def stage_argv(tmp_path, stage: str) -> list[str]:
    """The command line of `stage`, with the files it reads before loading the model."""
    data = tmp_path / "data.jsonl"
    write_jsonl(data, [{"id": "a", "messages": [{"role": "user", "content": "hi"}]}])
    probe = tmp_path / "probe.json"
    write_json(probe, {"layer": 0, "pooling": "last", "probe": {}})
    settings = json.dumps({"sets": {}, "max_new_tokens": 4, "batch_size": 1})
    return {
        "evaluate.generate": ["--model", "m", "--eval-dir", str(tmp_path), "--settings", settings, "--out", "o"],
        "data.reference_responses": ["--model", "m", "--data", str(data), "--out", "o"],
        "risk.persona": ["--model", "m", "--questions", str(data), "--out", "o.safetensors", "--settings",
                         json.dumps({"trait": "t", "positive_prompts": ["p"], "negative_prompts": ["n"]})],
        "risk.probe": ["--model", "m", "--harmful", str(data), "--benign", str(data),
                       "--settings", "{}", "--out", "o.json", "--layers-out", "l.json"],
        "risk.probe_test": ["--model", "m", "--layers", str(probe), "--test", str(data), "--table", "t.csv",
                            "--out", "o.json"],
        "risk.probe_scores": ["--model", "m", "--probe", str(probe), "--data", str(data), "--out", "o"],
    }[stage]


STAGES = ["evaluate.generate", "data.reference_responses", "risk.persona", "risk.probe", "risk.probe_test",
          "risk.probe_scores"]


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_loads_its_model_with_the_configured_dtype(stage, spy, tmp_path):
    import importlib

    module = importlib.import_module(f"safedrift.{stage}")
    calls = spy(module)
    with pytest.raises(Loaded):
        module.main(stage_argv(tmp_path, stage) + LOAD_FLAGS)
    assert calls["model"].get("dtype") == "bfloat16", f"{stage}: load_model got {calls['model']}"
    assert calls["model"].get("trust_remote_code") is True, f"{stage}: load_model got {calls['model']}"
    assert calls["tokenizer"].get("trust_remote_code") is True, f"{stage}: load_tokenizer got {calls['tokenizer']}"
    # without the flags: float32 and no remote code
    calls.clear()
    with pytest.raises(Loaded):
        module.main(stage_argv(tmp_path, stage))
    assert calls["model"].get("dtype") == "float32" and not calls["model"].get("trust_remote_code")


def test_fine_tuning_loads_the_reference_with_the_model_settings(spy, tmp_path):
    import safedrift.finetune.run as run

    config = load(ROOT / "configs/smoke.yaml")
    config["models"]["toy"].update(dtype="bfloat16", trust_remote_code=True)
    settings = run_settings(config, "toy", "benign", "sft", "none", next(iter(config["budgets"])), 0)
    calls = spy(run)
    with pytest.raises(Loaded):
        run.finetune(settings, str(tmp_path / "data.jsonl"), "reference", str(tmp_path / "out"))
    assert calls["model"]["dtype"] == "bfloat16" and calls["model"]["trust_remote_code"] is True
    assert calls["tokenizer"].get("trust_remote_code") is True


def test_rubric_judge_loads_its_model_with_its_own_dtype(spy, monkeypatch):
    import safedrift.models as models
    from safedrift.judges import make_judge

    import safedrift.judges.rubric as rubric

    calls = spy(models)  # the rubric judge imports load_model from safedrift.models when it is built
    # The spy's tokenizer is no tokenizer: skip the scale check that runs before the model loads.
    monkeypatch.setattr(rubric, "number_paths", lambda *args: None)
    monkeypatch.setattr(rubric.RubricJudge, "chat_prompt", lambda self, text: text)
    settings = {"type": "rubric", "model": "judge-model", "dtype": "float16", "trust_remote_code": True}
    with pytest.raises(Loaded):
        make_judge("rubric", settings)
    assert calls["model"]["dtype"] == "float16" and calls["model"]["trust_remote_code"] is True
    assert calls["tokenizer"].get("trust_remote_code") is True
    calls.clear()
    with pytest.raises(Loaded):
        make_judge("rubric", {"type": "rubric", "model": "judge-model"})
    assert calls["model"]["dtype"] in ("float32", "bfloat16") and not calls["model"]["trust_remote_code"]


# --- the rules pass the model's settings -------------------------------------------------------

# Rule -> (stage, how its command carries the model's settings): the --dtype/--trust-remote-code flags,
# or the JSON --settings it passes (a run's, under "model"; a rubric judge's whose model is the reference).
LOADING_RULES = {"persona_vector": ("risk.persona", "flags"), "probe": ("risk.probe", "flags"),
                 "probe_test": ("risk.probe_test", "flags"),
                 "probe_scores": ("risk.probe_scores", "flags"), "generate": ("evaluate.generate", "flags"),
                 "reference_responses": ("data.reference_responses", "flags"), "finetune": ("finetune.run", "run"),
                 "judge_score": ("judges.score", "judge"), "critic": ("risk.critic", "judge"),
                 "labelled_judge_validation": ("evaluate.labelled_validation", "judge")}
# Stages of the toy world only: they load the pipeline's own float32 model.
TOY_LOADING_STAGES = {"world.align"}


def test_every_stage_that_loads_a_model_is_checked():
    """A new stage calling load_model (or a judge that does) must join LOADING_RULES."""
    src = ROOT / "src" / "safedrift"
    loaders = {".".join(f.relative_to(src).with_suffix("").parts) for f in src.rglob("*.py")
               if "load_model(" in f.read_text() and "def main(" in f.read_text()}
    judge_stages = {".".join(f.relative_to(src).with_suffix("").parts) for f in src.rglob("*.py")
                    if "make_judge(" in f.read_text() and "def main(" in f.read_text()}
    checked = {stage for stage, _ in LOADING_RULES.values()}
    assert loaders | judge_stages <= checked | TOY_LOADING_STAGES, (loaders | judge_stages) - checked


DRY_RUN_CHECKPOINT_EVERY = 7


@pytest.fixture(scope="module")
def dry_run_commands(tmp_path_factory) -> list[str]:
    """`snakemake -n -p` of a tiny real-model config with dtype bfloat16 and trust_remote_code, whose eval
    and critic judge is a rubric judge on the reference model: the shell commands of every job."""
    from test_real_model import MODEL, tiny_real_config

    # A hub id passes the path check without a download: a dry run never loads the model.
    config = tiny_real_config("dry-run/no-model-needed")
    config["models"][MODEL].update(dtype="bfloat16", trust_remote_code=True)
    config["models"][MODEL]["finetune"]["checkpoint_every"] = DRY_RUN_CHECKPOINT_EVERY
    config["judges"]["rubric_reference"] = {"type": "rubric", "model": "reference"}
    config["judge"] = {"eval": "rubric_reference", "critic": "rubric_reference"}
    config["evaluation"]["judge_validation"]["accept_below_targets"] = True
    wf = Workflow(copy_workflow(tmp_path_factory.mktemp("dry") / "wf"), configfile="configs/hf-bf16.yaml")
    (wf.path / wf.configfile).write_text(yaml.safe_dump(config, sort_keys=False))
    runs = [r for r in all_runs(config) if r["objective"] == "dpo" or r["defense"].startswith("adaptive")]
    assert {r["objective"] for r in runs} >= {"dpo"}
    assert {r["defense"] for r in runs} >= {"adaptive_probe", "adaptive_critic"}
    targets = [f"{run_dir(r)}/eval/scores/rubric_reference.parquet" for r in runs]
    proc = wf.snakemake("-n", "-p", *targets, "tables/judge_validation_rubric_reference.json",
                        f"results/{MODEL}/risk/probe_test.json")
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "python -m safedrift " in line]


@pytest.mark.parametrize("rule", LOADING_RULES)
def test_rule_passes_dtype_and_trust_remote_code_of_an_hf_model(rule, dry_run_commands):
    stage, how = LOADING_RULES[rule]
    lines = [c for c in dry_run_commands if re.search(rf"python -m safedrift {re.escape(stage)} ", c)]
    assert lines, f"rule {rule}: no {stage} command in the dry run"
    for line in lines:
        if how == "flags":
            assert "--dtype bfloat16 --trust-remote-code" in line, f"rule {rule} does not pass the model's dtype: {line}"
        else:
            settings = json.loads(shlex.split(line.split(" --settings ", 1)[1])[0])
            model = settings["model"] if how == "run" else settings
            assert model["dtype"] == "bfloat16" and model["trust_remote_code"] is True, f"rule {rule}: {line}"


def test_finetune_jobs_get_the_models_checkpoint_cadence(dry_run_commands):
    """checkpoint_every left the run settings; it reaches the job only as --checkpoint-every (a resource)."""
    lines = [c for c in dry_run_commands if "python -m safedrift finetune.run " in c]
    assert lines and all(f"--checkpoint-every {DRY_RUN_CHECKPOINT_EVERY} " in line for line in lines), lines[:1]


def test_rule_persona_vector_passes_the_trait_prompts(dry_run_commands):
    from safedrift.risk.traits import PACKAGED

    [line] = [c for c in dry_run_commands if "python -m safedrift risk.persona " in c]
    settings = json.loads(shlex.split(line.split(" --settings ", 1)[1])[0])
    assert settings == {"trait": "evil", **PACKAGED["evil"]}
    assert "--questions results/tiny/world/eval/general.jsonl" in line


@pytest.mark.parametrize("rslora", [False, True])
def test_lora_scaling_follows_rslora(rslora):
    """lora.rslora: rank-stabilised scaling alpha/sqrt(r) (Kaczér et al. 2025 train with it); default alpha/r."""
    import math

    from transformers import LlamaConfig, LlamaForCausalLM

    from safedrift.models import wrap_lora

    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    wrapped = wrap_lora(model, {"r": 4, "alpha": 8, "target_modules": ["q_proj"], "rslora": rslora})
    layer = wrapped.base_model.model.model.layers[0].self_attn.q_proj
    assert layer.scaling["default"] == pytest.approx(8 / math.sqrt(4) if rslora else 8 / 4)
