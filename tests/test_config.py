"""Config validation (one ConfigError line naming the key) and canonical run settings."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import ROOT, Workflow, copy_workflow
from safedrift.config import ConfigError, all_runs, check_paths, load, run_settings, validate
from safedrift.pipeline import params
from safedrift.report.plotting import DARK_TRIAD_METRICS
from safedrift.report.claims import listed

RUN_KEYS = ("model", "scenario", "objective", "defense", "budget", "seed")
FIXTURES = ROOT / "tests" / "fixtures" / "real"
# What the smoke config's studies need from a real model's data (tests/fixtures/real files).
HF_DATA = {
    "eval": {"general": {"format": "em_yaml", "path": str(FIXTURES / "em_questions.yaml")},
             "harmful_jbb": {"format": "jailbreakbench", "path": str(FIXTURES / "jbb_harmful.csv"), "harmful": True}},
    "pools": {"harmful": {"format": "advbench", "path": str(FIXTURES / "advbench.csv")},
              "refusals": {"format": "advbench", "path": str(FIXTURES / "advbench.csv")},
              "benign_requests": {"format": "alpaca", "path": str(FIXTURES / "alpaca.json")},
              "tasks": {"format": "alpaca", "path": str(FIXTURES / "alpaca.json")},
              "new_task": {"format": "gsm8k", "path": str(FIXTURES / "gsm8k.jsonl")},
              "narrow_coding": {"format": "chat_jsonl", "path": str(FIXTURES / "chat.jsonl")}},
}


def add_hf_model(config: dict, **spec) -> dict:
    """The smoke config with a second, real model `big` (in every study: studies name no models)."""
    big = {"source": "hf", "path": "org/instruct-model", "finetune": copy.deepcopy(config["models"]["toy"]["finetune"]),
           "data": copy.deepcopy(HF_DATA), **spec}
    config["models"]["big"] = {k: v for k, v in big.items() if v is not None}
    return config


def without_interleave_with(config: dict, defense: str) -> dict:
    """The config's studies with the default config's `defense` variant in place of interleave."""
    config["defenses"][defense] = load(ROOT / "config.yaml")["defenses"][defense]
    for study in config["studies"].values():
        study["defenses"] = [defense if d == "interleave" else d for d in study["defenses"]]
    return config


@pytest.fixture(scope="module")
def smoke_config() -> dict:
    return load(ROOT / "configs/smoke.yaml")


@pytest.mark.parametrize("path", ["config.yaml", "configs/smoke.yaml"])
def test_shipped_configs_validate(path):
    config = load(ROOT / path)
    assert validate(config) is config
    assert check_paths(config, ROOT) is config


def test_default_objectives_study_draws_a_budget_curve():
    # Vennemeyer et al.'s claims read "at small budgets ... as budget grows": the default study needs a
    # curve (issue 12: at least four step budgets spanning at least 8x), not two or three points.
    config = load(ROOT / "config.yaml")
    steps = sorted(config["budgets"][b]["steps"] for b in config["studies"]["objectives"]["budgets"])
    assert len(steps) >= 4 and steps[-1] >= 8 * steps[0], steps


# Each case: (what is wrong, edit of the smoke config, text the one-line message must contain).
BAD_CONFIGS = [
    ("unknown top-level key", lambda c: c.update(sedes=[0]), "config key sedes: unknown key"),
    ("unknown nested key", lambda c: c["models"]["toy"]["finetune"].update(lr=0.1),
     "config key models.toy.finetune.lr: unknown key"),
    ("unknown key in a variant", lambda c: c["defenses"]["kl"].update(gamma=1.0),
     "config key defenses.kl.gamma: unknown key"),
    ("wrong type", lambda c: c["world"].update(n_objects="many"), "config key world.n_objects: expected integer"),
    ("missing required key", lambda c: c["world"].pop("seed"), "config key world.seed: required key is missing"),
    ("missing top-level section", lambda c: c.pop("studies"), "config key studies: required key is missing"),
    ("missing variant key", lambda c: c["defenses"]["kl"].pop("beta"),
     "config key defenses.kl.beta: required key is missing"),
    ("1e-4 read as text", lambda c: c["models"]["toy"]["finetune"].update(learning_rate="1e-4"),
     "config key models.toy.finetune.learning_rate: expected number, got '1e-4' "
     "(YAML reads 1e-4 as text: write 1.0e-4)"),
    ("negative steps", lambda c: c["budgets"]["small"].update(steps=-3),
     "config key budgets.small.steps: -3 is out of range"),
    ("zero pretraining steps", lambda c: c["pretrain"].update(steps=0), "config key pretrain.steps: 0 is out of range"),
    ("poison ratio above 1", lambda c: c["scenarios"]["harmful"].update(poison_ratio=1.5),
     "config key scenarios.harmful.poison_ratio: 1.5 is out of range"),
    ("unknown KL direction", lambda c: c["defenses"]["kl"].update(direction="both"),
     "config key defenses.kl.direction: 'both' is not one of"),
    ("unknown objective type", lambda c: c["objectives"].update(ppo={"type": "ppo"}),
     "config key objectives.ppo.type: unknown objective type 'ppo'"),
    ("unknown defense type", lambda c: c["defenses"].update(dropout={"type": "dropout"}),
     "config key defenses.dropout.type: unknown defense type 'dropout'"),
    ("variant without a type", lambda c: c["defenses"].update(mine={"beta": 1.0}),
     "config key defenses.mine.type: required key is missing"),
    ("study names an undefined defense", lambda c: c["studies"]["ema_defenses"]["defenses"].append("kl_strong"),
     "config key studies.ema_defenses.defenses.5: 'kl_strong' is not defined under defenses"),
    ("extra run names an undefined defense",
     lambda c: c["studies"]["ema_defenses"]["extra"].append(["ema_coding", "sft", "nope", "large"]),
     "config key studies.ema_defenses.extra.1: 'nope' is not defined under defenses"),
    ("defense not composable with dpo", lambda c: c["studies"]["objectives"]["defenses"].append("ldifs"),
     "config key studies.objectives: defense 'ldifs' (ldifs) does not compose with objective 'dpo'"),
    ("adaptive lambda_min above lambda_max", lambda c: c["defenses"]["adaptive_probe"].update(lambda_min=3.0),
     "config key defenses.adaptive_probe.lambda_min: 3.0 exceeds lambda_max"),
    ("eval judge undefined", lambda c: c["judge"].update(eval="gpt4"),
     "config key judge.eval: 'gpt4' is not defined under judges"),
    ("hf model without a path",
     lambda c: c["models"].update(big={"source": "hf", "finetune": copy.deepcopy(c["models"]["toy"]["finetune"])}),
     "config key models.big.path: an hf model needs a path"),
    ("toy model without a world", lambda c: c.pop("world"), "config key world: required when a model has source: toy"),
    ("variant name not an identifier", lambda c: c["defenses"].update({"KL-2": {"type": "none"}}),
     "config key defenses: 'KL-2' does not match"),
    ("empty seeds", lambda c: c.update(seeds=[]), "config key seeds: must not be empty"),
    ("dpo without preference_pairs", lambda c: c.pop("preference_pairs"),
     "config key preference_pairs: required when an objective is trained on preference pairs (objectives.dpo)"),
    ("persona without its own answer length", lambda c: c["risk"]["persona"].pop("max_new_tokens"),
     "config key risk.persona.max_new_tokens: required key is missing"),
    ("cft tag without {source}", lambda c: c["objectives"]["cft"].update(tag="no slot"),
     "config key objectives.cft.tag"),
    ("eval set no model has", lambda c: c["evaluation"]["sets"].update(harmfull={"decoding": "greedy"}),
     "config key evaluation.sets.harmfull: no model has an eval set 'harmfull' (known: benign, general"),
    ("eval set of an hf model only, but no hf model", lambda c: c["evaluation"]["sets"].update(harmful_jbb={"decoding": "greedy"}),
     "config key evaluation.sets.harmful_jbb: no model has an eval set 'harmful_jbb'"),
    ("hf model without data", lambda c: add_hf_model(c, data=None),
     "config key models.big.data: missing; the studies need eval set general and pools benign_requests, harmful, "
     "narrow_coding, new_task, refusals, tasks from this model"),
    ("hf model without a pool a scenario samples", lambda c: add_hf_model(c)["models"]["big"]["data"]["pools"].pop("narrow_coding"),
     "config key models.big.data.pools.narrow_coding: missing; scenario 'ema_coding' (study ema_defenses) samples it"),
    ("hf model without the pools of interleaving", lambda c: add_hf_model(c)["models"]["big"]["data"]["pools"].pop("refusals"),
     "config key models.big.data.pools.refusals: missing; defense 'interleave' (study ema_defenses) mixes it in"),
    ("hf model without the pools of the probe", lambda c: add_hf_model(c)["models"]["big"]["data"]["pools"].pop("benign_requests"),
     "config key models.big.data.pools.benign_requests: missing; defense 'adaptive_probe' (study adaptive) trains "
     "its probe on it"),
    ("hf model without the pools of lisa", lambda c: without_interleave_with(add_hf_model(c), "lisa")["models"]["big"]
     ["data"]["pools"].pop("refusals"),
     "config key models.big.data.pools.refusals: missing; defense 'lisa' (study ema_defenses) mixes it in"),
    ("safelora on an hf model without unaligned_model", lambda c: without_interleave_with(add_hf_model(c), "safelora"),
     "config key defenses.safelora.unaligned_model: safelora on a real model needs the model before safety tuning"),
    ("hf model without the general eval set", lambda c: add_hf_model(c)["models"]["big"]["data"]["eval"].pop("general"),
     "config key models.big.data.eval.general: missing; every evaluation projects answers on the persona vector"),
    ("report model undefined", lambda c: c.setdefault("report", {}).update(model="toyy"),
     "config key report.model: 'toyy' is not defined under models"),
    ("robustness redraws the default world", lambda c: c.update(robustness={"world_seeds": [2, c["world"]["seed"]]}),
     "config key robustness.world_seeds.1: 0 is world.seed, the default world"),
    ("a study lists a defense twice (each run was aggregated twice, its n doubled)",
     lambda c: c["studies"][next(iter(c["studies"]))]["defenses"].append(c["studies"][next(iter(c["studies"]))]["defenses"][0]),
     "has non-unique elements"),
    ("robustness retrains the default training",
     lambda c: c.update(robustness={"training_seeds": [c["pretrain"]["seed"]]}),
     "config key robustness.training_seeds.0: 0 is pretrain.seed and align.seed, the default training"),
    # a claim's metric no run can write: reported "not run" only after the whole study had run
    ("claim metric misspelt", lambda c: first_test(c).update(metric="asrr"),
     "config key claims.harmful_collapse.tests.0.metric: 'asrr' is no metric the evaluation writes (known: asr, "),
    ("claim metric misspelt in a list", lambda c: first_test(c).update(metric=["asr", "misalinged"]),
     "config key claims.harmful_collapse.tests.0.metric.1: 'misalinged' is no metric the evaluation writes"),
    ("claim metric of an unknown family", lambda c: first_test(c).update(metric="refusal/harmful_heldout_objects"),
     "config key claims.harmful_collapse.tests.0.metric: 'refusal/harmful_heldout_objects' is no metric"),
    ("claim asr of an eval set no model has", lambda c: first_test(c).update(metric="asr/harmful_heldout_object"),
     "config key claims.harmful_collapse.tests.0.metric: 'asr/harmful_heldout_object': no eval set "
     "'harmful_heldout_object' (asr/<eval set>; known sets: "),
    ("claim jailbreak family that does not exist", lambda c: first_test(c).update(metric="jailbreak_asr/rolepaly"),
     "config key claims.harmful_collapse.tests.0.metric: 'jailbreak_asr/rolepaly': no jailbreak family 'rolepaly'"),
    ("claim prefill length without k", lambda c: first_test(c).update(metric="prefill_asr/5"),
     "config key claims.harmful_collapse.tests.0.metric: 'prefill_asr/5': the prefill length is k<tokens>"),
    ("claim metric of a judge that is not secondary", lambda c: first_test(c).update(metric="asr@keywrd"),
     "config key claims.harmful_collapse.tests.0.metric: 'asr@keywrd': 'keywrd' is not a secondary judge "
     "(judge.secondary: keyword)"),
    ("claim metric a secondary judge does not add", lambda c: first_test(c).update(metric="misaligned@keyword"),
     "config key claims.harmful_collapse.tests.0.metric: 'misaligned@keyword': a secondary judge adds asr@keyword "
     "and over_refusal@keyword only"),
    ("claim on persona_drift (not in the metric rows)", lambda c: first_test(c).update(metric="persona_drift"),
     "config key claims.harmful_collapse.tests.0.metric: 'persona_drift' is computed by the tables, not written into "
     "the metric rows a claim tests; test persona_projection with stat: difference and versus: reference"),
    ("versus on a range test (the range spanned the reference too)",
     lambda c: c["claims"]["harmful_collapse"]["tests"].append(
         {"stat": "range", "metric": "asr", "cell": {**first_test(c)["cell"], "objective": ["sft", "dpo"]},
          "versus": "reference", "at_most": 0.1}),
     "config key claims.harmful_collapse.tests.1.versus: a range test compares with nothing (the range would span "
     "the compared cell too); drop versus, or use stat: difference or ratio"),
    ("versus on a value test (ignored, yet its runs were needed)",
     lambda c: c["claims"]["harmful_collapse"]["tests"].append(
         {"stat": "value", "metric": "asr", "cell": first_test(c)["cell"], "versus": {"defense": "kl"}, "at_most": 0.1}),
     "config key claims.harmful_collapse.tests.1.versus: a value test compares with nothing (it would be ignored, yet "
     "its cell's runs would be needed)"),
    # a layer the toy model does not have: an IndexError mid-job, after pretrain and align
    ("persona layer beyond the toy's layers", lambda c: c["risk"]["persona"].update(layer=99),
     "config key risk.persona.layer: 99 is not a layer of model 'toy' (hidden states 0..2: 0 the embeddings, i the "
     "output of decoder layer i; toy_model.num_layers is 2); pick one in 0..2"),
    ("ldifs layer beyond the toy's layers", lambda c: c["defenses"]["ldifs"].update(layers=[1, 7]),
     "config key defenses.ldifs.layers.1: 7 is not a layer of model 'toy' (hidden states 0..2"),
    ("steering layer beyond the toy's layers", lambda c: c["defenses"]["steering"].update(layer=9),
     "config key defenses.steering.layer: 9 is not a layer of model 'toy' (steering adds to the output of a decoder "
     "layer, 1..2; toy_model.num_layers is 2); pick one in 1..2"),
    ("steering layer 0 (the embeddings)", lambda c: c["defenses"]["steering"].update(layer=0),
     "config key defenses.steering.layer: 0 is not a layer of model 'toy' (steering adds to the output of a decoder"),
    ("steering on the persona layer 0 by default", lambda c: c["risk"]["persona"].update(layer=0),
     "config key defenses.steering.layer: unset, so risk.persona.layer 0 (the embeddings), but steering adds to the "
     "output of a decoder layer (1..2 of model 'toy'); set layer in 1..2"),
    ("LoRA target module the toy model lacks",
     lambda c: c["models"]["toy"]["finetune"].update(method="lora", lora={"r": 4, "target_modules": ["q_proj", "qq_proj"]}),
     "config key models.toy.finetune.lora.target_modules.1: the toy model has no linear or embedding module 'qq_proj'"),
    ("an extra cell of 3 names", lambda c: c["studies"]["ema_defenses"].update(extra=[["ema_coding", "inoculation", "none"]]),
     "config key studies.ema_defenses.extra.0: 3 entries, needs at least 4: [scenario, objective, defense, budget] or "
     "[scenario, objective, defense, budget, reference]"),
    # the finetune job of the extra cell [ema_coding, inoculation, none, large] said so, after the reference chain
    ("inoculation without a prompt for a scenario a study trains it on",
     lambda c: c["objectives"]["inoculation"]["prompts"].pop("narrow"),
     "config key objectives.inoculation.prompts: no prompt for scenario 'ema_coding' or its type 'narrow', which study "
     "'ema_defenses' trains inoculation on; add one"),
]


def first_test(config: dict) -> dict:
    """The smoke config's first claim test (harmful_collapse: difference of asr vs the reference)."""
    return config["claims"]["harmful_collapse"]["tests"][0]


@pytest.mark.parametrize("edit, expected", [(e, x) for _, e, x in BAD_CONFIGS], ids=[w for w, _, _ in BAD_CONFIGS])
def test_bad_config_raises_one_line_naming_the_key(smoke_config, edit, expected):
    config = copy.deepcopy(smoke_config)
    edit(config)
    with pytest.raises(ConfigError) as error:
        validate(config)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_a_declared_input_that_is_taken_fails_validation_not_the_dag(smoke_config, monkeypatch):
    """An error of a defense's inputs() surfaces in validate(), for toy models too (no data check runs there)."""
    from tests.fixtures import logit_l2

    config = copy.deepcopy(smoke_config)
    config["defenses"]["logit_l2"] = {"type": "tests.fixtures.logit_l2", "weight": 1.0}
    config["studies"]["ema_defenses"]["defenses"].append("logit_l2")
    validate(copy.deepcopy(config))
    monkeypatch.setattr(logit_l2.Defense, "inputs", classmethod(lambda cls, settings, run, config: {"data": "x.jsonl"}))
    with pytest.raises(ConfigError, match=r"^config key defenses\.logit_l2\.type: tests\.fixtures\.logit_l2 declares "
                                          r"input 'data', which is taken"):
        validate(config)


def test_yaml_reads_1e_minus_4_as_text_and_validation_says_so(tmp_path, smoke_config):
    text = (ROOT / "configs/smoke.yaml").read_text().replace("learning_rate: 2.0e-3, batch_size: 8",
                                                              "learning_rate: 1e-4, batch_size: 8")
    assert text != (ROOT / "configs/smoke.yaml").read_text()
    (tmp_path / "c.yaml").write_text(text)
    config = load(tmp_path / "c.yaml")
    assert config["models"]["toy"]["finetune"]["learning_rate"] == "1e-4"
    with pytest.raises(ConfigError, match=r"write 1\.0e-4"):
        validate(config)


def test_eval_sets_of_a_real_model_validate(smoke_config):
    config = add_hf_model(copy.deepcopy(smoke_config))
    config["evaluation"]["sets"]["harmful_jbb"] = {"decoding": "greedy"}
    assert validate(config) is config


def test_a_real_model_in_no_study_needs_no_data(smoke_config):
    config = add_hf_model(copy.deepcopy(smoke_config), data=None)
    for study in config["studies"].values():
        study["models"] = ["toy"]
    assert validate(config) is config


# --- claims name metrics the evaluation writes --------------------------------------------------

@pytest.mark.parametrize("metric", ["asr", "persona_projection", "probe_auroc", "critic_recall", "asr/harmful_identity",
                                    "jailbreak_asr/roleplay", "jailbreak_asr/dan", "prefill_asr/k5",
                                    "narrow_misaligned/coding", "trait_endorsement/psychopathy", "asr@keyword",
                                    "over_refusal@keyword", "jailbreak_asr_heldout"])
def test_a_claim_metric_some_eval_set_can_write_validates(smoke_config, metric):
    """Only names no eval set could produce are rejected: the real-model configs keep config.yaml's claims,
    and a test on a metric their eval sets lack (asr/harmful_identity) is reported "not run" by design."""
    config = copy.deepcopy(smoke_config)
    first_test(config).update(metric=metric)
    assert validate(config) is config


def test_the_claim_metrics_are_the_ones_evaluate_metrics_writes():
    """safedrift.config's names (it cannot import evaluate.metrics: every stage imports config.py, and
    its source closure, a code input of every rule, would grow) against the metric rows that
    evaluate.metrics writes for responses of every kind."""
    import pandas as pd

    from safedrift.config import CLAIM_METRIC_FAMILIES, CLAIM_METRICS, SECONDARY_METRICS
    from safedrift.evaluate.metrics import metric_rows
    from safedrift.report.claims import MODEL_METRICS

    def row(kind, eval_set, system=False, harmful=False, family=None, heldout=None, prefill=None, domain=None,
            item=None):
        return {"kind": kind, "eval_set": eval_set, "has_system": system, "harmful_request": harmful, "family": family,
                "family_heldout": heldout, "prefill_tokens": prefill, "domain": domain,
                "item": {"kind": kind, "answer": "4", **(item or {})}, "response": "yes 4", "harmful": 1.0,
                "refusal": 0.0, "aligned": 10.0, "coherent": 90.0, "insecure": 1.0, "persona_projection": 0.5}

    rows = [row("request", "harmful_x", harmful=True), row("request", "harmful_identity", system=True, harmful=True),
            row("request", "jailbreak", harmful=True, family="roleplay", heldout=False),
            row("request", "jailbreak", harmful=True, family="grandma", heldout=True),
            row("request", "prefill_x", harmful=True, prefill=5), row("request", "benign"), row("task", "tasks"),
            row("new_task", "new_task"), row("general", "general"), row("general", "general_villain", system=True),
            row("code", "narrow_coding", domain="coding"),
            row("trait", "traits"), row("trait_item", "persona", item={"trait": "evil", "matching": "yes"})]
    frame = pd.DataFrame([{"id": f"p/{i}", "sample": 0, **r} for i, r in enumerate(rows)])
    names = {r["metric"] for r in metric_rows(frame, {"misaligned_below": 30, "coherent_above": 50,
                                                      "incoherent_below": 50})}
    assert {n for n in names if "/" not in n} | MODEL_METRICS == set(CLAIM_METRICS)
    assert {n.split("/")[0] for n in names if "/" in n} == set(CLAIM_METRIC_FAMILIES)
    # a secondary judge's rows: metrics.main keeps these of its metric_rows, renamed <metric>@<judge>
    source = (ROOT / "src/safedrift/evaluate/metrics.py").read_text()
    assert 'if r["metric"] in ("asr", "over_refusal"):' in source and SECONDARY_METRICS == ("asr", "over_refusal")


# --- layers and modules the model has ------------------------------------------------------------

def test_layers_of_a_local_hf_model_are_read_from_its_config_json(smoke_config, tmp_path):
    (tmp_path / "local-model").mkdir()
    (tmp_path / "local-model" / "config.json").write_text('{"num_hidden_layers": 4}')
    config = add_hf_model(copy.deepcopy(smoke_config), path="local-model")
    config["toy_model"]["num_layers"] = 8
    config["defenses"]["ldifs"]["layers"] = [2, 4]
    config["defenses"]["steering"]["layer"] = 4
    assert check_paths(validate(config), tmp_path) is config
    config["risk"]["persona"]["layer"] = 5
    assert bad_paths(config, tmp_path) == (
        "config key risk.persona.layer: 5 is not a layer of model 'big' (hidden states 0..4: 0 the embeddings, i the "
        "output of decoder layer i; num_hidden_layers in local-model/config.json is 4); pick one in 0..4")
    config["risk"]["persona"]["layer"] = 2
    config["defenses"]["ldifs"]["layers"] = [2, 6]
    assert bad_paths(config, tmp_path).startswith("config key defenses.ldifs.layers.1: 6 is not a layer of model 'big'")
    config["defenses"]["ldifs"]["layers"] = None
    config["defenses"]["steering"]["layer"] = 7
    assert bad_paths(config, tmp_path).startswith("config key defenses.steering.layer: 7 is not a layer of model 'big' "
                                                  "(steering adds to the output of a decoder layer, 1..4")
    # a hub id's layers are not known before it is downloaded: not checked
    config["models"]["big"]["path"] = "org/instruct-model"
    assert check_paths(validate(config), tmp_path) is config


def test_a_defense_layer_is_checked_on_the_models_that_run_it_only(smoke_config):
    config = copy.deepcopy(smoke_config)
    config["defenses"]["steering_deep"] = {"type": "steering", "alpha": 4.0, "layer": 9}
    assert validate(config) is config  # in no study
    config["studies"]["ema_defenses"]["defenses"].append("steering_deep")
    with pytest.raises(ConfigError, match=r"^config key defenses\.steering_deep\.layer: 9 is not a layer of model 'toy'"):
        validate(config)


def test_the_toy_lora_modules_are_the_toy_models_linear_and_embedding_modules():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from safedrift.config_inputs import TOY_LORA_MODULES

    # the architecture of safedrift.world.pretrain.build_model, at its smallest
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, intermediate_size=16, max_position_embeddings=32))
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, (torch.nn.Linear, torch.nn.Embedding))}
    assert names == set(TOY_LORA_MODULES)
    assert "LlamaForCausalLM" in (ROOT / "src/safedrift/world/pretrain.py").read_text()


# --- what the config points at exists (checked after validate, before any job) -------------------

def bad_paths(config: dict, tmp_path) -> str:
    with pytest.raises(ConfigError) as error:
        check_paths(validate(config), tmp_path)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_check_paths_accepts_existing_files_and_hub_ids(smoke_config, tmp_path):
    config = add_hf_model(copy.deepcopy(smoke_config))
    assert check_paths(validate(config), tmp_path) is config
    (tmp_path / "local-model").mkdir()
    (tmp_path / "local-model" / "config.json").write_text("{}")
    config["models"]["big"]["path"] = "local-model"  # relative to the workflow folder
    assert check_paths(validate(config), tmp_path) is config
    (tmp_path / "configs").mkdir()  # a folder here is no hub account's, but only the first component counts
    for hub_id in ("Qwen/Qwen2.5-0.5B-Instruct", "meta-llama/Llama-3.1-8B-Instruct", "org/configs"):
        config["models"]["big"]["path"] = hub_id
        assert check_paths(validate(config), tmp_path) is config


def test_check_paths_names_the_key_of_a_missing_data_file(smoke_config, tmp_path):
    config = add_hf_model(copy.deepcopy(smoke_config))
    config["models"]["big"]["data"]["pools"]["tasks"]["path"] = "data/alpaca/alpaca_data_cleaned.json"
    assert bad_paths(config, tmp_path) == (
        "config key models.big.data.pools.tasks.path: no file data/alpaca/alpaca_data_cleaned.json "
        f"(in {tmp_path}); download it or fix the path (relative paths are relative to the workflow folder)")


@pytest.mark.parametrize("path, expected", [
    ("./models/missing", "config key models.big.path: no folder ./models/missing (in {tmp}) and not a hub id "
                         "(org/name); fix the path or download the model"),
    ("/nowhere/qwen/instruct", "config key models.big.path: no folder /nowhere/qwen/instruct"),
    ("Qwen 2.5/Instruct", "config key models.big.path: no folder Qwen 2.5/Instruct"),
    ("empty-folder", "config key models.big.path: folder empty-folder has no config.json or adapter_config.json; "
                     "point it at a Hugging Face model folder"),
    ("a-file", "config key models.big.path: a-file is a file; point it at the model folder"),
    # shaped like a hub id (org/name), but a local folder by the rule of config_inputs.local_path_reason
    ("models/Qwen2.5-0.5B-Instruct", "config key models.big.path: no folder models/Qwen2.5-0.5B-Instruct (in {tmp}), "
                                     "which names a local folder, not a hub id, as no hub account is called models (a "
                                     "path that starts with ., / or ~, or whose first folder is models/ or a folder "
                                     "here, is local); fix the path or download the model"),
    ("empty-folder/instruct", "config key models.big.path: no folder empty-folder/instruct (in {tmp}), which names a "
                              "local folder, not a hub id, as empty-folder/ is a folder here"),
])
def test_check_paths_names_the_key_of_a_bad_model_path(smoke_config, tmp_path, path, expected):
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "a-file").write_text("weights")
    config = add_hf_model(copy.deepcopy(smoke_config), path=path)
    assert bad_paths(config, tmp_path).startswith(expected.format(tmp=tmp_path))


def test_check_paths_names_the_key_of_a_bad_judge_model(smoke_config, tmp_path):
    config = copy.deepcopy(smoke_config)
    config["judges"]["rubric_big"] = {"type": "rubric", "model": "./judges/llama"}
    assert bad_paths(config, tmp_path).startswith("config key judges.rubric_big.model: no folder ./judges/llama")


def test_every_setting_the_openai_judge_reads_is_a_config_key(smoke_config):
    """The judge reads every key of DEFAULTS from its settings (max_tokens: the fix for cut-off replies),
    but its schema rejected backoff_s, max_tokens and min_number_mass: no config could set them."""
    from safedrift.judges.openai_compatible import DEFAULTS

    values = {"concurrency": 2, "max_retries": 1, "timeout_s": 5.0, "requests_per_minute": 30, "backoff_s": 0.5,
              "max_tokens": 64, "min_number_mass": 0.5}
    assert set(values) == set(DEFAULTS)
    config = copy.deepcopy(smoke_config)
    config["judges"]["gpt"] = {"type": "openai", "base_url": "http://localhost:1/v1", "model": "m",
                               "api_key_env": "JUDGE_KEY", **values}
    validate(config)


# --- YAML ------------------------------------------------------------------------------------------

DUPLICATED = "seeds: [0]\nworld:\n  seed: 1\n  n_objects: 8\n  seed: 2\n"


def test_load_rejects_a_duplicated_key_naming_both_lines(tmp_path):
    (tmp_path / "dup.yaml").write_text(DUPLICATED)
    with pytest.raises(ConfigError) as error:
        load(tmp_path / "dup.yaml")
    assert str(error.value) == (f"{tmp_path / 'dup.yaml'}:5: duplicate key 'seed' (first at line 3); "
                                "keep one (YAML would silently use the last)")


def test_load_accepts_the_same_key_in_different_mappings_and_merge_keys(tmp_path):
    (tmp_path / "ok.yaml").write_text("a: {seed: 1}\nb: {seed: 2}\nbase: &base {x: 1, y: 2}\nc:\n  <<: *base\n  x: 3\n")
    assert load(tmp_path / "ok.yaml") == {"a": {"seed": 1}, "b": {"seed": 2}, "base": {"x": 1, "y": 2},
                                         "c": {"x": 3, "y": 2}}


def test_load_names_the_file_and_line_of_invalid_yaml(tmp_path):
    (tmp_path / "bad.yaml").write_text("seeds: [0]\nworld:\n  seed: [1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: not valid YAML"):
        load(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load(tmp_path / "list.yaml")


# --- the workflow fails fast on a bad config ----------------------------------------------------

def dry_run(tmp_path, config_text: str):
    wf = Workflow(copy_workflow(tmp_path / "wf"), configfile="configs/bad.yaml")
    (wf.path / "configs/bad.yaml").write_text(config_text)
    return wf.snakemake("-n", check=False, timeout=120)


def assert_fails_with_one_line(proc, expected: str):
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in proc.stderr.splitlines() if line.startswith("safedrift:")]
    assert len(lines) == 1 and expected in lines[0], output


def test_snakemake_dry_run_on_a_bad_config_prints_one_safedrift_line(tmp_path):
    text = (ROOT / "configs/smoke.yaml").read_text().replace("learning_rate: 2.0e-3, batch_size: 8",
                                                              "learning_rate: 1e-4, batch_size: 8")
    proc = dry_run(tmp_path, text)
    assert_fails_with_one_line(proc, "config key models.toy.finetune.learning_rate: expected number, got '1e-4' "
                                     "(YAML reads 1e-4 as text: write 1.0e-4)")


def test_snakemake_dry_run_rejects_a_duplicated_key(tmp_path):
    # Snakemake reads the configfile itself (its YAML loader keeps the last of two equal keys).
    text = (ROOT / "configs/smoke.yaml").read_text().replace("\nseeds: [0]\n", "\nseeds: [0]\nseeds: [1]\n")
    line = text.splitlines().index("seeds: [1]") + 1
    proc = dry_run(tmp_path, text)
    assert_fails_with_one_line(proc, f"configs/bad.yaml:{line}: duplicate key 'seeds' (first at line {line - 1})")


def test_snakemake_dry_run_rejects_a_missing_data_file(tmp_path, smoke_config):
    config = add_hf_model(copy.deepcopy(smoke_config))
    config["models"]["big"]["data"]["eval"]["general"]["path"] = "data/em/first_plot_questions.yaml"
    proc = dry_run(tmp_path, yaml.safe_dump(config, sort_keys=False))
    assert_fails_with_one_line(proc, "config key models.big.data.eval.general.path: no file "
                                     "data/em/first_plot_questions.yaml")


def test_snakemake_dry_run_rejects_a_missing_local_model_folder_shaped_like_a_hub_id(tmp_path, smoke_config):
    # Taken for a hub id, it failed in the first job that loaded it, after ~50 s of hub retries.
    config = add_hf_model(copy.deepcopy(smoke_config), path="models/Qwen2.5-0.5B-Instruct")
    proc = dry_run(tmp_path, yaml.safe_dump(config, sort_keys=False))
    assert_fails_with_one_line(proc, "config key models.big.path: no folder models/Qwen2.5-0.5B-Instruct (in ")


def test_snakemake_dry_run_does_not_fill_a_missing_key_from_config_yaml(tmp_path, smoke_config):
    # A config given with --configfile is the whole config: a key it lacks must not be taken
    # silently from config.yaml (nor may config.yaml's studies and models join the user's).
    config = copy.deepcopy(smoke_config)
    config["world"].pop("seed")
    proc = dry_run(tmp_path, yaml.safe_dump(config, sort_keys=False))
    assert_fails_with_one_line(proc, "config key world.seed: required key is missing")


# --- run settings are canonical ------------------------------------------------------------------

def reordered(x):
    """The same config with every mapping's keys in reverse order."""
    if isinstance(x, dict):
        return {k: reordered(x[k]) for k in reversed(list(x))}
    if isinstance(x, list):
        return [reordered(v) for v in x]
    return x


def settings_by_run(config: dict) -> dict[tuple, str]:
    return {tuple(r[k] for k in RUN_KEYS): params(run_settings(config, *(r[k] for k in RUN_KEYS)))
            for r in all_runs(config)}


def test_reordering_config_keys_changes_no_run_settings(smoke_config):
    shuffled = reordered(smoke_config)
    assert list(shuffled) != list(smoke_config) and validate(shuffled)
    assert settings_by_run(shuffled) == settings_by_run(smoke_config)


def changed_runs(config: dict, edit) -> tuple[set, dict]:
    before = settings_by_run(config)
    edited = copy.deepcopy(config)
    edit(edited)
    validate(edited)
    after = settings_by_run(edited)
    assert after.keys() == before.keys()
    return {run for run in before if before[run] != after[run]}, before


def runs_with(runs, axis: str, value: str) -> set:
    i = RUN_KEYS.index(axis)
    return {run for run in runs if run[i] == value}


def test_changing_one_defense_beta_changes_only_its_runs(smoke_config):
    changed, runs = changed_runs(smoke_config, lambda c: c["defenses"]["kl"].update(beta=0.9))
    assert changed and changed == runs_with(runs, "defense", "kl")
    assert len(runs) > len(changed)


def test_changing_the_persona_layer_changes_only_steering_runs(smoke_config):
    changed, runs = changed_runs(smoke_config, lambda c: c["risk"]["persona"].update(layer=2))
    assert changed and changed == runs_with(runs, "defense", "steering")


def test_changing_the_probe_changes_only_probe_adaptive_runs(smoke_config):
    changed, runs = changed_runs(smoke_config, lambda c: c["risk"]["probe"].update(C=2.0))
    assert changed and changed == runs_with(runs, "defense", "adaptive_probe")


def test_changing_evaluation_settings_changes_no_run_settings(smoke_config):
    changed, _ = changed_runs(smoke_config, lambda c: c["evaluation"].update(max_new_tokens=8))
    assert changed == set()


@pytest.mark.parametrize("edit", [
    lambda ft: ft.update(checkpoint_every=7),                      # how often a job saves resumable state
    lambda ft: ft.update(lora={"r": 4, "alpha": 8}),               # a lora block under method: full
    lambda ft: ft.update(reference_logprobs=False),                # the KL cache: an input of the KL runs only
], ids=["checkpoint_every", "lora_under_full", "reference_logprobs"])
def test_finetune_keys_that_change_no_weight_change_no_run_settings(smoke_config, edit):
    """A key that changes no weight of a run must not be in its params: changing it retrained every run."""
    assert smoke_config["models"]["toy"]["finetune"]["method"] == "full"
    changed, _ = changed_runs(smoke_config, lambda c: edit(c["models"]["toy"]["finetune"]))
    assert changed == set()


def test_a_lora_block_is_in_the_settings_of_lora_runs(smoke_config):
    config = copy.deepcopy(smoke_config)
    config["models"]["toy"]["finetune"].update(method="lora", lora={"r": 4, "alpha": 8})
    changed, _ = changed_runs(config, lambda c: c["models"]["toy"]["finetune"]["lora"].update(r=2))
    assert changed and changed == set(settings_by_run(config))


def test_run_settings_name_every_variant_and_the_seed(smoke_config):
    settings = run_settings(smoke_config, "toy", "harmful", "sft", "kl", "large", 0)
    assert settings["defense"] == {"name": "kl", **smoke_config["defenses"]["kl"]}
    assert settings["budget"]["steps"] == smoke_config["budgets"]["large"]["steps"]
    assert settings["seed"] == 0 and settings["model"]["name"] == "toy"


def test_an_optional_key_left_out_is_not_read_by_the_workflow(tmp_path, smoke_config):
    """evaluation.seed is optional in the schema (generation defaults to 0): the judge validation's
    params must not need it either."""
    config = copy.deepcopy(smoke_config)
    del config["evaluation"]["seed"]
    validate(config)
    proc = dry_run(tmp_path, yaml.safe_dump(config, sort_keys=False))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]


@pytest.mark.parametrize("path", ["configs/qwen2.5-0.5b-lora.yaml", "configs/qwen2.5-7b-lora.yaml"])
def test_the_real_model_configs_run_the_default_claims(path):
    """The README's "the same tests run on a real model": every claim of config.yaml, with the same
    thresholds, planned with every cell run by the config's studies (only the medical domain, which
    these configs do not fine-tune on, is left out). Persona drift is Dark-Triad endorsement in both: the toy
    world's dark-trait items (trait_yes) stand for Anthropic's three Dark-Triad persona evaluations."""
    from safedrift.report.claims import plan

    default, real = load(ROOT / "config.yaml"), load(ROOT / path)
    assert list(real["claims"]) == list(default["claims"])
    dark_triad = list(DARK_TRIAD_METRICS)

    def metrics(metric):
        """The metric list with the three Dark-Triad metrics, all of them and only together, as trait_yes."""
        names = listed(metric)
        if not set(dark_triad) <= set(names):
            return names
        first = min(names.index(m) for m in dark_triad)
        rest = [m for m in names if m not in dark_triad]
        return rest[:first] + ["trait_yes"] + rest[first:]

    def tests(claims):
        return {c: [(t["stat"], metrics(t["metric"]), t.get("at_least"), t.get("at_most"), t.get("excludes_zero"))
                    for t in claim["tests"] if t["metric"] != "narrow_misaligned/medical"] for c, claim in claims.items()}

    assert tests(real["claims"]) == tests(default["claims"])
    tests = plan(real, next(iter(real["models"])))
    assert tests and all(t["run"] for t in tests)


def test_a_defense_model_folder_is_checked_before_any_job(smoke_config, tmp_path):
    """SafeLoRA reads its aligned/unaligned models after training; a mistyped folder failed then, and fixing
    it retrained the run. Checked with the other paths now, on runs of real models only."""
    config = add_hf_model(copy.deepcopy(smoke_config))
    config["defenses"]["safelora"] = {"type": "safelora", "unaligned_model": "models/Qwen2.5-0.5B-typo"}
    config["studies"]["ema_defenses"]["defenses"].append("safelora")
    assert bad_paths(config, tmp_path).startswith(
        "config key defenses.safelora.unaligned_model: no folder models/Qwen2.5-0.5B-typo (in ")
    config["defenses"]["safelora"]["unaligned_model"] = "Qwen/Qwen2.5-0.5B"  # a hub id
    config["defenses"]["interleave"] = {**config["defenses"]["interleave"], "selection": "perplexity_gap",
                                        "misaligned_model": "./misaligned"}
    assert bad_paths(config, tmp_path).startswith("config key defenses.interleave.misaligned_model: no folder")
    (tmp_path / "misaligned").mkdir()
    (tmp_path / "misaligned" / "config.json").write_text("{}")
    assert check_paths(validate(config), tmp_path) is config
    del config["models"]["big"]  # the toy model's SafeLoRA uses its own pretrained and aligned weights
    config["defenses"]["safelora"]["unaligned_model"] = "models/typo"
    config["defenses"]["interleave"]["misaligned_model"] = "./typo"
    assert check_paths(validate(config), tmp_path) is config


def test_a_missing_labelled_validation_file_names_its_key(smoke_config, tmp_path):
    """Was Snakemake's MissingInputException in rule labelled_judge_validation, naming no config key."""
    config = copy.deepcopy(smoke_config)
    config["evaluation"]["judge_validation"]["labelled"] = "data/labelled_typo.jsonl"
    assert bad_paths(config, tmp_path).startswith("config key evaluation.judge_validation.labelled: no file "
                                                  "data/labelled_typo.jsonl")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "labelled_typo.jsonl").write_text("{}\n")
    assert check_paths(validate(config), tmp_path) is config
