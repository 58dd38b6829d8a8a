"""A real (source: hf) model through the pipeline.

The model is a tiny randomly initialised LlamaForCausalLM with a byte-level BPE tokenizer and
Qwen2.5's chat template, saved with save_pretrained: the folder layout of a downloaded instruct
model, so loading, the chat template (and TRL's assistant-mask patch of it), LoRA, generation and
the real-data loaders run as they would for Qwen2.5. The config is configs/qwen2.5-0.5b-lora.yaml
with the model path, the data files (tests/fixtures/real) and the sizes swapped for tiny ones.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, Workflow, copy_workflow
from safedrift.config import all_runs, run_dir, validate
from safedrift.report.claims import listed

REAL_CONFIG = ROOT / "configs" / "qwen2.5-0.5b-lora.yaml"
FIXTURES = ROOT / "tests" / "fixtures" / "real"
# The fixture file of each data format (jailbreakbench: by the entry's `harmful`).
FIXTURE_OF_FORMAT = {
    "advbench": "advbench.csv",
    "strongreject": "strongreject.csv",
    "em_yaml": "em_questions.yaml",
    "chat_jsonl": "chat.jsonl",
    "alpaca": "alpaca.json",
    "gsm8k": "gsm8k.jsonl",
    "persona_eval": "psychopathy.jsonl",
}
MODEL = "tiny"
RUN = "results/tiny/runs/benign/sft/none/small/seed0"
TOY_RULES = {"world_corpus", "world_alignment", "world_eval_sets", "world_pools", "world_spec", "tokenizer",
             "pretrain", "align", "reference_card"}


def save_tiny_chat_model(folder: Path) -> Path:
    """A ~40k-parameter Llama and its tokenizer (vocabulary trained on the fixture files), saved to `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from trl.chat_template_utils import qwen2_5_chat_template

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    texts = [p.read_text() for p in sorted(FIXTURES.glob("*.*"))] + [qwen2_5_chat_template]
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = qwen2_5_chat_template
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_real_config(model_path: Path) -> dict:
    """configs/qwen2.5-0.5b-lora.yaml for a tiny model: same data keys and studies, fixture files, seconds of work."""
    config = yaml.safe_load(REAL_CONFIG.read_text())
    [spec] = config["models"].values()
    for section_name, section in spec["data"].items():
        for set_name, entry in section.items():
            entry.pop("limit", None)
            for key in ("fetch", "split"):  # a fixture stands in for the dataset, whole
                entry.pop(key, None)
            if section_name == "eval":
                entry["overlap"] = "allow"  # eval sets and pools share fixture files here
            name = FIXTURE_OF_FORMAT.get(entry["format"]) or ("jbb_harmful.csv" if entry["harmful"] else "jbb_benign.csv")
            entry["path"] = str(FIXTURES / name)
            if entry["format"] == "persona_eval":  # one fixture file stands in for each Dark-Triad trait
                entry["trait"] = set_name
    spec.update(path=str(model_path), dtype="float32", generation_batch_size=16)
    spec["finetune"].update(batch_size=2, max_length=256, checkpoint_every=0, bf16="auto",
                            lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})
    config["models"] = {MODEL: spec}
    config["seeds"] = [0]
    for scenario in config["scenarios"].values():
        scenario["n"] = min(scenario["n"], 8)
    config["budgets"] = {name: {"type": "steps", "steps": steps} for name, steps in (("small", 2), ("large", 3))}
    config["evaluation"].update(max_new_tokens=8)
    config["evaluation"]["sets"]["general"]["samples"] = 2
    config["evaluation"]["bootstrap"]["resamples"] = 100
    config["judge"] = {"eval": "keyword", "critic": "keyword"}
    config["judges"] = {"keyword": {"type": "keyword"}}
    config["risk"]["persona"].update(layer=1, samples=1, max_new_tokens=8)
    config["preference_pairs"] = {"max_new_tokens": 8}
    return validate(config)


@pytest.fixture(scope="module")
def real_workflow(tmp_path_factory) -> Workflow:
    root = tmp_path_factory.mktemp("real")
    model = save_tiny_chat_model(root / "tiny-chat-model")
    wf = Workflow(copy_workflow(root / "wf"), configfile="configs/tiny-real.yaml")
    (wf.path / wf.configfile).write_text(yaml.safe_dump(tiny_real_config(model), sort_keys=False))
    return wf


def test_shipped_real_configs_validate():
    for path in sorted((ROOT / "configs").glob("qwen*.yaml")):
        config = validate(yaml.safe_load(path.read_text()))
        for name, spec in config["models"].items():
            assert spec["source"] == "hf", path
            eval_sets = set(spec["data"]["eval"])
            assert eval_sets == set(config["evaluation"]["sets"]), f"{path}: models.{name}.data.eval vs evaluation.sets"
            assert "general" in eval_sets, f"{path}: the persona vector needs a `general` eval set"


def test_real_model_plan_has_no_toy_stage(real_workflow):
    """Every run of the real config plans from the real data, never from the toy world."""
    config = yaml.safe_load((real_workflow.path / real_workflow.configfile).read_text())
    runs = all_runs(config)
    targets = [f"{run_dir(r)}/eval/generations.jsonl" for r in runs]
    jobs = real_workflow.dry_run_jobs(*targets)
    data = config["models"][MODEL]["data"]
    assert jobs.get("real_eval_set") == len(data["eval"]) and jobs.get("real_pool") == len(data["pools"]), jobs
    assert jobs.get("real_overlap") == 1, jobs
    assert jobs.get("finetune") == len(runs), jobs
    assert jobs.get("generate") == len(runs), jobs
    assert not TOY_RULES & set(jobs), f"toy-world rules planned for an hf model: {TOY_RULES & set(jobs)}"


def test_lora_run_on_real_data_generates(real_workflow):
    """real_data -> scenario -> LoRA fine-tuning -> persona vector -> generation, run for real."""
    start = time.monotonic()
    real_workflow.run(f"{RUN}/eval/generations.jsonl")
    print(f"real-model run: {time.monotonic() - start:.0f} s")
    results = real_workflow.path / "results" / MODEL
    world = json.loads((results / "world" / "world.json").read_text())
    config = yaml.safe_load((real_workflow.path / real_workflow.configfile).read_text())
    assert set(world["eval"]) == set(config["models"][MODEL]["data"]["eval"])
    assert world["eval"]["harmful_jbb"]["rows"] == 5

    model_dir = real_workflow.path / RUN / "model"
    adapter = json.loads((model_dir / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and Path(adapter["base_model_name_or_path"]) == Path(config["models"][MODEL]["path"])
    card = json.loads((real_workflow.path / RUN / "run_card.json").read_text())
    assert card["steps"] == 2 and card["final_loss"] > 0

    rows = [json.loads(line) for line in (real_workflow.path / RUN / "eval" / "generations.jsonl").open()]
    expected = {}
    for name, spec in config["evaluation"]["sets"].items():
        prompts = sum(1 for _ in (results / "world" / "eval" / f"{name}.jsonl").open())
        expected[name] = prompts * (spec.get("samples", 1) if spec["decoding"] == "sample" else 1)
    assert {name: sum(r["eval_set"] == name for r in rows) for name in expected} == expected
    assert all(r["prompt"].startswith("<|im_start|>") for r in rows), "prompts not rendered with the chat template"



def test_real_run_measures_what_the_claims_read(real_workflow):
    """The shipped real config's eval sets give a run every metric its claims read from one run: held-out
    jailbreak ASR (every family of jailbreak_jbb is held out of training) and ASR under the identity's system
    prompt (harmful_identity) beside plain ASR and the Dark-Triad endorsements. The run's own generations and
    eval rows, scored by a stand-in judge that fills every score column (the fixture's keyword judge scores
    refusals only)."""
    import pandas as pd

    from safedrift.evaluate.metrics import join, metric_rows

    real_workflow.run(f"{RUN}/eval/generations.jsonl")
    generations = [json.loads(line) for line in (real_workflow.path / RUN / "eval" / "generations.jsonl").open()]
    rows = {r["id"]: r for path in (real_workflow.path / "results" / MODEL / "world" / "eval").glob("*.jsonl")
            for r in map(json.loads, path.open())}
    scores = pd.DataFrame({"id": [g["id"] for g in generations], "sample": [g["sample"] for g in generations],
                           **{c: 0.0 for c in ("refusal", "harmful", "aligned", "coherent", "insecure")},
                           "unparsed": 0, "judge": "stand-in"})
    measured = {r["metric"] for r in metric_rows(join(generations, rows, scores), {"misaligned_below": 30,
                                                 "coherent_above": 50, "incoherent_below": 50})}
    config = yaml.safe_load((real_workflow.path / real_workflow.configfile).read_text())
    read = {m for claim in config["claims"].values() for test in claim["tests"] for m in listed(test["metric"])}
    assert {"jailbreak_asr_heldout", "asr/harmful_identity", "asr", "trait_endorsement/psychopathy"} <= read
    not_of_a_run = {"probe_auroc", "critic_recall"}  # the risk estimators' own files
    assert not read - not_of_a_run - measured, f"claims read metrics a run lacks: {sorted(read - not_of_a_run - measured)}"
    assert "jailbreak_asr_trained" not in measured


def test_the_real_scorecard_measures_every_claim_the_model_allows(real_workflow):
    """The scorecard end to end on the tiny HF model (~150 jobs, about a minute), with a rubric judge on the model
    itself: every test gets a verdict but where the random model leaves nothing to measure (it never answers yes
    or no; its ASR is 0, so a ratio to it is undefined). The held-out jailbreak, identity-prompt and critic-recall
    tests were once "not run" on every real model."""
    import pandas as pd

    path = real_workflow.path / real_workflow.configfile
    config = yaml.safe_load(path.read_text())
    config["judge"] = {"eval": "rubric", "critic": "rubric", "secondary": ["keyword"]}
    config["judges"] = {"rubric": {"type": "rubric", "model": "reference", "min_number_mass": 0.0},
                        "keyword": {"type": "keyword"}}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    real_workflow.run("tables/claims.csv")
    table = pd.read_csv(real_workflow.path / "tables" / "claims.csv")
    assert set(table["id"]) == set(config["claims"])
    not_run = table[table["test_verdict"] == "not run"]
    allowed = not_run["why"].str.startswith("ratio undefined: asr of ") | (
        not_run["metric"].str.startswith("trait_endorsement/") & not_run["why"].str.startswith("no scored "))
    assert allowed.all(), not_run.loc[~allowed, ["id", "metric", "why"]].to_string()
    for metric in ("jailbreak_asr_heldout", "asr/harmful_identity", "critic_recall"):
        assert (table.loc[table["metric"] == metric, "test_verdict"] != "not run").all(), metric
