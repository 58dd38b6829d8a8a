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
- `check_attack_sets`: attack options (`jailbreaks`, `prefill`) sit on eval entries of harmful
  requests (safedrift.data.attacks), checked again by the data stage.
- `check_paths`: the data files exist (or, for an entry with `fetch: <dataset>`, are files of that
  dataset of the registry, which rule fetch_data downloads), and model paths are model folders or
  plausible hub ids.
"""

from __future__ import annotations

import re
from pathlib import Path

from safedrift.data.attacks import check_attack_entry
from safedrift.data.fetch import entry_files, load_sources, source_files
from safedrift.data.loaders import FOLDER_FORMATS, PROMPT_ONLY
from safedrift.data.scenarios import pools_needed
from safedrift.defenses import defense_class
from safedrift.errors import ConfigError, DataError
from safedrift.world.corpus import EVAL_SETS

EXAMPLE = "configs/qwen2.5-0.5b-lora.yaml"
# A Hugging Face repo id: org/name, of letters, digits, '-', '_' and '.' (no '..', no leading '.').
HUB_ID = re.compile(r"[A-Za-z0-9][\w-]*(\.[\w-]+)*/[A-Za-z0-9][\w-]*(\.[\w-]+)*")
MODEL_FILES = ("config.json", "adapter_config.json")
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


def check_attack_sets(config: dict) -> None:
    for model, spec in config["models"].items():
        for section, entries in (spec.get("data") or {}).items():
            for name, entry in entries.items():
                try:
                    check_attack_entry(section, entry, f"models.{model}.data.{section}.{name}", PROMPT_ONLY)
                except DataError as e:
                    raise ConfigError(f"config key {e}") from None


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


def _shown(path: str, root: Path) -> str:
    """The path as written, and the folder a relative path is read from."""
    return path if Path(path).expanduser().is_absolute() else f"{path} (in {root})"


def model_path_problem(path: str, root: Path | str = ".", fix: str = "fix the path or download the model",
                       files: tuple[str, ...] = MODEL_FILES) -> str | None:
    """What is wrong with a model path (a folder with one of `files`, or else a hub id), or None."""
    root = Path(root).absolute()
    full = root / Path(path).expanduser()
    if full.is_dir():
        if not any((full / f).is_file() for f in files):
            return f"folder {path} has no {' or '.join(files)}; point it at a Hugging Face model folder"
        return None
    if full.exists():
        return f"{path} is a file; point it at the model folder"
    if HUB_ID.fullmatch(path) and ".." not in path:
        return None
    return f"no folder {_shown(path, root)} and not a hub id (org/name); {fix}"


def check_paths(config: dict, root: Path | str = ".") -> dict:
    """Raise ConfigError if a data file or model folder the config names is not there; return the config.
    Relative paths are relative to `root`, the workflow folder (where jobs run)."""
    root = Path(root).absolute()
    for model, spec in config["models"].items():
        if spec["source"] != "hf":
            continue
        problem = model_path_problem(spec["path"], root)
        if problem:
            raise ConfigError(f"config key models.{model}.path: {problem}")
        template = spec.get("finetune", {}).get("chat_template")
        if template and not (root / Path(template).expanduser()).is_file():
            raise ConfigError(f"config key models.{model}.finetune.chat_template: no file {_shown(template, root)}; "
                              "fix the path (e.g. configs/templates/llama3_1_training.jinja) or drop the key")
        for section, entries in spec.get("data", {}).items():
            for name, entry in entries.items():
                full, key = root / Path(entry["path"]).expanduser(), f"models.{model}.data.{section}.{name}.path"
                if "fetch" in entry:
                    check_fetch(entry, key.removesuffix(".path"))
                    continue  # rule fetch_data downloads it before the data.real job
                if full.is_dir() and entry["format"] in FOLDER_FORMATS:
                    continue
                if full.is_dir():
                    raise ConfigError(f"config key {key}: {_shown(entry['path'], root)} is a folder; name the file")
                if not full.is_file():
                    raise ConfigError(f"config key {key}: no file {_shown(entry['path'], root)}; download it or fix "
                                      "the path (relative paths are relative to the workflow folder)")
    for name, judge in config["judges"].items():
        # Judges that run a local model (an openai-compatible endpoint's `model` is the server's name for it).
        if judge.get("model") and judge["model"] != "reference" and judge["type"] != "openai" and not judge.get("base_url"):
            problem = model_path_problem(judge["model"], root)
            if problem:
                raise ConfigError(f"config key judges.{name}.model: {problem}")
    return config
