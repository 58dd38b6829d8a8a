"""What a config asks of its inputs: the eval sets and data files a real model's studies need,
and whether the files and model folders it names exist. Each failure is one ConfigError line
naming the key and what to do, raised before any job starts.

- `check_eval_sets`: every `evaluation.sets` name is an eval set some model has (the toy world's
  EVAL_SETS for toy models, `models.<m>.data.eval` for hf models); otherwise it would be skipped
  for every model without a word.
- `check_model_data`: an hf model has the `data` entries the runs of its studies read (pools
  that scenarios sample, world pools an objective or defense declares among its inputs(), pools
  a defense's data_pools() names, e.g. the adaptive probe's, the `general` questions of the
  persona vector); otherwise Snakemake stops with a MissingInputException on a results file.
- `check_data_entry_options`: attack options (`jailbreaks`, `trained_jailbreaks`, `prefill`) sit on eval
  entries of harmful requests (safedrift.data.attacks), and `system` / `user_template` on eval entries
  they apply to (safedrift.data.real); the data stage checks both again.
- `check_layers`: the layer indices a config sets (`risk.persona.layer`, an ldifs defense's
  `layers`, a steering defense's `layer`) are layers of every model they are used on: a toy model's
  `toy_model.num_layers` (checked by validate), an hf model's `num_hidden_layers` in its local
  folder's config.json (checked by check_paths; a hub id is not looked up). Likewise a toy model's
  LoRA `target_modules` name modules of the toy architecture (`check_toy_lora`).
- `check_paths`: the data files exist (or, for an entry with `fetch: <dataset>`, are files of that
  dataset of the registry, which rule fetch_data downloads), and model paths are model folders or
  hub ids (`model_path_problem` says which paths are read as local folders: those must exist).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from safedrift.data.attacks import check_attack_entry
from safedrift.data.fetch import entry_files, load_sources, source_files
from safedrift.data.loaders import FOLDER_FORMATS, PROMPT_ONLY
from safedrift.data.real import check_eval_options
from safedrift.data.scenarios import pools_needed
from safedrift.defenses import defense_class
from safedrift.errors import ConfigError, DataError
from safedrift.model_paths import HUB_ID, LOCAL_FOLDERS, MODEL_FILES, local_path_reason, model_path_problem, shown_path  # noqa: F401
from safedrift.world.corpus import EVAL_SETS

EXAMPLE = "configs/qwen2.5-0.5b-lora.yaml"
# Defense types whose settings index the model's hidden states: type -> (key, lowest valid index).
# ldifs `layers` index output_hidden_states (0 the embeddings, i the output of decoder layer i); steering
# adds to the output of decoder layer `layer` (1..num_layers; default risk.persona.layer).
LAYER_SETTINGS = {"ldifs": ("layers", 0), "steering": ("layer", 1)}
# What a toy model's LoRA can target: the last name of its nn.Linear and nn.Embedding modules (the
# LlamaForCausalLM of safedrift.world.pretrain.build_model; tests/test_config.py builds one to compare).
TOY_LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head",
                    "embed_tokens")
# What file each entry a study may need holds (the formats of safedrift.data.loaders).
HOLDS = {
    "general": "EM-style free-form questions (em_yaml)",
    "harmful": "harmful requests with compliant answers (advbench)",
    "refusals": "harmful requests, trained as refusals (advbench)",
    "benign_requests": "benign requests (alpaca)",
    "tasks": "tasks with reference answers (alpaca, gsm8k)",
    "new_task": "a benign task the model has not learned (gsm8k)",
    "identity_shift": "identity-shift chats (chat_jsonl)",
}


def _entries(needs: dict) -> str:
    """'eval set general and pools harmful, tasks' for {(section, name): why}."""
    evals, pools = (sorted(n for s, n in needs if s == section) for section in ("eval", "pools"))
    return " and ".join(f"{what}{'s' * (len(names) > 1)} {', '.join(names)}"
                        for what, names in (("eval set", evals), ("pool", pools)) if names)


def declared_pools(config: dict, run: dict) -> dict[str, str]:
    """{pool: "defense" or "objective" (the axis that declares it)} for the world pools
    (results/<model>/world/pools/<pool>.jsonl) among the files the run's objective and defense
    declare (their inputs())."""
    from safedrift.config import finetune_declared_inputs  # safedrift.config imports this module

    pattern = re.compile(rf"results/{re.escape(run['model'])}/world/pools/([^/]+)\.jsonl")
    defense = config["defenses"][run["defense"]]
    from_defense = set(defense_class(defense["type"]).inputs(defense, run, config))
    pools = {}
    for name, paths in finetune_declared_inputs(config, run).items():
        for path in paths if isinstance(paths, list) else [paths]:
            match = pattern.fullmatch(path)
            if match:
                pools.setdefault(match[1], "defense" if name in from_defense else "objective")
    return pools


def data_needs(config: dict, model: str, study_runs: dict[str, list[dict]]) -> dict[tuple[str, str], str]:
    """{(section, name): why} for the data entries the runs of `model` read, first reason first."""
    needs: dict[tuple[str, str], str] = {}
    for study, runs in study_runs.items():
        for run in runs:
            if run["model"] != model:
                continue
            needs.setdefault(("eval", "general"), "every evaluation projects answers on the persona vector, "
                                                  "which is extracted from these questions")
            scenario = {"name": run["scenario"], **config["scenarios"][run["scenario"]]}
            for pool in pools_needed(scenario):
                needs.setdefault(("pools", pool), f"scenario {run['scenario']!r} (study {study}) samples it")
            for pool, axis in declared_pools(config, run).items():
                what = "mixes it in" if axis == "defense" else "trains on it"
                needs.setdefault(("pools", pool), f"{axis} {run[axis]!r} (study {study}) {what}")
            defense = config["defenses"][run["defense"]]
            for pool, what in defense_class(defense["type"]).data_pools(defense, config).items():
                needs.setdefault(("pools", pool), f"defense {run['defense']!r} (study {study}) {what}")
    return needs


def check_model_data(config: dict, study_runs: dict[str, list[dict]]) -> None:
    for model, spec in config["models"].items():
        if spec["source"] != "hf":
            continue
        needs = data_needs(config, model, study_runs)
        data = spec.get("data")
        if needs and not data:
            raise ConfigError(f"config key models.{model}.data: missing; the studies need {_entries(needs)} from "
                              f"this model: add each as {{format, path}} (see {EXAMPLE})")
        for (section, name), why in needs.items():
            if name not in (data or {}).get(section, {}):
                holds = HOLDS.get(name, "narrow misaligned chats (chat_jsonl)")
                raise ConfigError(f"config key models.{model}.data.{section}.{name}: missing; {why}: add "
                                  f"{{format, path}} of a file of {holds} (see {EXAMPLE})")


def check_eval_sets(config: dict) -> None:
    models = config["models"]
    hf = [m for m, spec in models.items() if spec["source"] == "hf"]
    known = set(EVAL_SETS) if len(hf) < len(models) else set()
    for model in hf:
        known |= set(models[model].get("data", {}).get("eval", {}))
    fix = f"fix the name, or add its file under models.{hf[0]}.data.eval" if hf else \
        "fix the name (toy models have the toy world's eval sets only)"
    for name in config["evaluation"]["sets"]:
        if name not in known:
            raise ConfigError(f"config key evaluation.sets.{name}: no model has an eval set {name!r} "
                              f"(known: {', '.join(sorted(known)) or 'none'}); {fix}")


def check_data_entry_options(config: dict) -> None:
    """The data entries' attack (jailbreaks, trained_jailbreaks, prefill) and system-prompt options."""
    for model, spec in config["models"].items():
        for section, entries in (spec.get("data") or {}).items():
            for name, entry in entries.items():
                try:
                    check_attack_entry(section, entry, f"models.{model}.data.{section}.{name}", PROMPT_ONLY)
                    check_eval_options(section, entry, f"models.{model}.data.{section}.{name}")
                except DataError as e:
                    raise ConfigError(f"config key {e}") from None


# --- layers and modules of the models -----------------------------------------------------------

def toy_layers(config: dict) -> dict[str, tuple[int, str]]:
    """{model: (decoder layers, where the count comes from)} of the toy models."""
    return {m: (config["toy_model"]["num_layers"], "toy_model.num_layers")
            for m, spec in config["models"].items() if spec["source"] == "toy"}


def hf_layers(config: dict, root: Path | str = ".") -> dict[str, tuple[int, str]]:
    """{model: (decoder layers, where the count comes from)} of the hf models whose path is a local
    folder with a config.json that gives num_hidden_layers (a hub id or an adapter folder: not known)."""
    out = {}
    for m, spec in config["models"].items():
        if spec["source"] != "hf":
            continue
        file = Path(root).absolute() / Path(spec["path"]).expanduser() / "config.json"
        try:
            cfg = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        n = cfg.get("num_hidden_layers", (cfg.get("text_config") or {}).get("num_hidden_layers"))
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            out[m] = (n, f"num_hidden_layers in {spec['path']}/config.json")
    return out


def _layer_error(key: str, value: int, model: str, count: tuple[int, str], low: int) -> ConfigError:
    n, source = count
    what = (f"hidden states 0..{n}: 0 the embeddings, i the output of decoder layer i" if low == 0 else
            f"steering adds to the output of a decoder layer, 1..{n}")
    return ConfigError(f"config key {key}: {value} is not a layer of model {model!r} ({what}; {source} is {n}); "
                       f"pick one in {low}..{n}")


def models_of_defenses(config: dict) -> dict[str, tuple[str, ...]]:
    """{defense name: the models of the runs that use it, in run order}: the models a defense's
    settings (layers, model folders) must fit."""
    from safedrift.config import all_runs  # safedrift.config imports this module

    models_of: dict[str, dict] = {}
    for run in all_runs(config) if config.get("studies") else ():  # check_paths takes configs without studies
        models_of.setdefault(run["defense"], {})[run["model"]] = None
    return {name: tuple(models) for name, models in models_of.items()}


def check_layers(config: dict, layers: dict[str, tuple[int, str]]) -> None:
    """The layer indices the config sets lie within the layers of every model in `layers` that uses
    them: `risk.persona.layer` (every model: the persona vector and every evaluation's projection),
    a defense's LAYER_SETTINGS key (the models of the runs that use it). Otherwise generation fails
    with an IndexError, or the first training step does."""
    if not layers:  # no model whose layers are known (check_paths on a config of hub ids)
        return
    persona = config["risk"]["persona"]["layer"]
    for model, count in layers.items():
        if persona > count[0]:
            raise _layer_error("risk.persona.layer", persona, model, count, 0)
    models_of = models_of_defenses(config)
    for name, settings in config["defenses"].items():
        if settings["type"] not in LAYER_SETTINGS:
            continue
        key, low = LAYER_SETTINGS[settings["type"]]
        for model in models_of.get(name, ()):
            if model not in layers:
                continue
            n = layers[model][0]
            if settings["type"] == "ldifs":
                for i, layer in enumerate(settings.get(key) or []):
                    if not low <= layer <= n:
                        raise _layer_error(f"defenses.{name}.{key}.{i}", layer, model, layers[model], low)
            elif key in settings:
                if not low <= settings[key] <= n:
                    raise _layer_error(f"defenses.{name}.{key}", settings[key], model, layers[model], low)
            elif persona < low:  # steering's default layer is risk.persona.layer
                raise ConfigError(f"config key defenses.{name}.{key}: unset, so risk.persona.layer {persona} (the "
                                  f"embeddings), but steering adds to the output of a decoder layer ({low}..{n} of "
                                  f"model {model!r}); set {key} in {low}..{n}")


def check_toy_lora(config: dict) -> None:
    """A toy model's LoRA `target_modules` name modules of the toy architecture (TOY_LORA_MODULES, the
    last part of a dotted name); otherwise peft stops every finetune job (NoMatchingPeftModuleError).
    An hf model's module names are not known before it is loaded: not checked."""
    for model, spec in config["models"].items():
        finetune = spec.get("finetune", {})
        if spec["source"] != "toy" or finetune.get("method") != "lora":
            continue
        for i, name in enumerate(finetune.get("lora", {}).get("target_modules", [])):
            if name.rsplit(".", 1)[-1] not in TOY_LORA_MODULES:
                raise ConfigError(f"config key models.{model}.finetune.lora.target_modules.{i}: the toy model has no "
                                  f"linear or embedding module {name!r}; use some of {', '.join(TOY_LORA_MODULES)}")


# --- on disk ----------------------------------------------------------------------------------

def check_fetch(entry: dict, key: str) -> None:
    """An entry's `fetch` names a registry source that holds its path."""
    sources = load_sources()
    if entry["fetch"] not in sources:
        raise ConfigError(f"config key {key}.fetch: no dataset {entry['fetch']!r} in src/safedrift/data/sources.yaml "
                          f"(known: {', '.join(sorted(sources))}); fix the name or drop fetch and download the file")
    if not entry_files(entry, sources):
        raise ConfigError(f"config key {key}.path: {entry['path']} is not a file of dataset {entry['fetch']!r} "
                          f"({', '.join(source_files(entry['fetch'], sources))}); use one of those paths")


def check_defense_models(config: dict, root: Path) -> None:
    """The model folders a defense loads on a real model (SafeLoRA's aligned and unaligned models, the
    misaligned model of perplexity-gap interleaving) exist: SafeLoRA reads them after training, and
    fixing the path then retrains the run."""
    real = {m for m, spec in config["models"].items() if spec["source"] == "hf"}
    for name, models in models_of_defenses(config).items():
        if real.isdisjoint(models):
            continue
        settings = config["defenses"][name]
        for key, path in defense_class(settings["type"]).model_paths(settings).items():
            problem = model_path_problem(path, root)
            if problem:
                raise ConfigError(f"config key defenses.{name}.{key}: {problem}")


def check_paths(config: dict, root: Path | str = ".") -> dict:
    """Raise ConfigError if a data file or model folder the config names is not there, or a layer the
    config sets is not one of a local hf model's (check_layers); return the config. Relative paths are
    relative to `root`, the workflow folder (where jobs run)."""
    root = Path(root).absolute()
    for model, spec in config["models"].items():
        if spec["source"] != "hf":
            continue
        problem = model_path_problem(spec["path"], root)
        if problem:
            raise ConfigError(f"config key models.{model}.path: {problem}")
        template = spec.get("finetune", {}).get("chat_template")
        if template and not (root / Path(template).expanduser()).is_file():
            raise ConfigError(f"config key models.{model}.finetune.chat_template: no file {shown_path(template, root)}; "
                              "fix the path (e.g. configs/templates/llama3_1_training.jinja) or drop the key")
        for section, entries in spec.get("data", {}).items():
            for name, entry in entries.items():
                full, key = root / Path(entry["path"]).expanduser(), f"models.{model}.data.{section}.{name}.path"
                if "fetch" in entry:
                    check_fetch(entry, key.removesuffix(".path"))
                    continue  # rule fetch_data downloads it before the real_eval_set/real_pool job
                if full.is_dir() and entry["format"] in FOLDER_FORMATS:
                    continue
                if full.is_dir():
                    raise ConfigError(f"config key {key}: {shown_path(entry['path'], root)} is a folder; name the file")
                if not full.is_file():
                    raise ConfigError(f"config key {key}: no file {shown_path(entry['path'], root)}; download it or fix "
                                      "the path (relative paths are relative to the workflow folder)")
    check_defense_models(config, root)
    labelled = config.get("evaluation", {}).get("judge_validation", {}).get("labelled")
    if labelled and not (root / Path(labelled).expanduser()).is_file():
        raise ConfigError(f"config key evaluation.judge_validation.labelled: no file {shown_path(labelled, root)}; fix the "
                          "path or drop the key (the packaged labelled set is the default)")
    for name, judge in config["judges"].items():
        # Judges that run a local model (an openai-compatible endpoint's `model` is the server's name for it).
        if judge.get("model") and judge["model"] != "reference" and judge["type"] != "openai" and not judge.get("base_url"):
            problem = model_path_problem(judge["model"], root)
            if problem:
                raise ConfigError(f"config key judges.{name}.model: {problem}")
    check_layers(config, hf_layers(config, root))  # the toy models' layers: validate
    return config
