"""Config validation and run resolution.

`validate(config)` runs before any job: the JSON schema (workflow/schemas/config.schema.yaml),
then each named variant against its type's schema, then cross-references (a study naming an
undefined variant, a defense that cannot compose with an objective, an eval set no model has,
data a real model's studies need but its config lacks). Every failure is one
`ConfigError` line naming the key path and what to do.

`check_paths(config)` (safedrift.config_inputs) then checks what the config points at on disk:
data files and model folders. The Snakefile runs both before any job.

`run_settings(config, ...)` resolves one run's variants into the dict that becomes the
training rule's `params:` (canonical JSON), so changing a variant reruns exactly its runs.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml

from safedrift.config_inputs import (check_attack_sets, check_eval_sets, check_model_data,  # noqa: F401
                                     check_paths)  # check_paths: API
from safedrift.errors import ConfigError
from safedrift.finetune.schedule import budget_amount, ladder_eligible
from safedrift.io import UniqueKeyLoader, yaml_error
from safedrift.judges import judge_schema
from safedrift.risk.traits import persona_prompts

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
VARIANT_KINDS = {"scenarios": "scenario", "objectives": "objective", "defenses": "defense", "budgets": "budget"}
# Defenses add loss terms, mix data or hook the model inside the SFT engine, so they compose with
# SFT-family objectives only; preference objectives (dpo, orpo) train with their own TRL trainer,
# which runs no defense: they take `none` only.
SFT_FAMILY = {"sft", "cft", "inoculation", "kl_sft"}
# Objectives trained on (chosen, rejected) pairs; the rejected answers are the reference's own.
PREFERENCE_FAMILY = {"dpo", "orpo"}
PREFERENCE_DEFENSES = {"none"}


@lru_cache(maxsize=1)
def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def load(path) -> dict:
    """A config file as a dict; a YAML error or a key given twice is a ConfigError naming file:line."""
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        message = yaml_error(path, e)
        if "duplicate key" in message:
            message += "; keep one (YAML would silently use the last)"
        raise ConfigError(message) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys, got {type(data).__name__}")
    return data


def _path(parts) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def _message(error, prefix=()) -> str:
    import jsonschema  # noqa: F401  (only for the error type)

    where = _path([*prefix, *error.absolute_path])
    v = error.validator
    if v == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {}))) or "none"
        key = f"{where}.{extra[0]}" if where != "(top level)" else extra[0]
        return f"config key {key}: unknown key (allowed here: {allowed}); fix the spelling or remove it"
    if v == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        key = f"{where}.{missing[0]}" if where != "(top level)" else missing[0]
        return f"config key {key}: required key is missing; add it (see config.yaml for an example)"
    if v == "type":
        hint = ""
        if isinstance(error.instance, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", error.instance):
            hint = " (YAML reads 1e-4 as text: write 1.0e-4)"
        return f"config key {where}: expected {error.validator_value}, got {error.instance!r}{hint}"
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        return f"config key {where}: {error.instance!r} is out of range ({v} {error.validator_value})"
    if v in ("minItems", "minProperties"):
        return f"config key {where}: must not be empty"
    if v == "enum":
        return f"config key {where}: {error.instance!r} is not one of {error.validator_value}"
    if v == "const":
        return f"config key {where}: must be {error.validator_value!r}"
    if v == "pattern":
        return f"config key {where}: {error.instance!r} does not match {error.validator_value!r}"
    return f"config key {where}: {error.message}"


def _check(instance, sub_schema, prefix=()) -> None:
    import jsonschema

    root = schema()
    validator = jsonschema.Draft202012Validator({**sub_schema, "$defs": root["$defs"]})
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError(_message(jsonschema.exceptions.best_match(errors) if len(errors) > 1 else errors[0], prefix))


def validate(config: dict) -> dict:
    """Raise ConfigError on the first problem; return the config unchanged."""
    root = schema()
    _check(config, {k: v for k, v in root.items() if k != "$defs"})
    defs = root["$defs"]
    for section, kind in VARIANT_KINDS.items():
        for name, variant in config[section].items():
            key = f"{kind}_{variant['type']}"
            if key not in defs:
                types = sorted(k.split("_", 1)[1] for k in defs if k.startswith(kind + "_"))
                raise ConfigError(f"config key {section}.{name}.type: unknown {kind} type {variant['type']!r} "
                                  f"(known: {', '.join(types)})")
            _check(variant, {"$ref": f"#/$defs/{key}"}, (section, name))
    for name, variant in config["judges"].items():  # a judge type declares its schema (safedrift.judges)
        _check(variant, judge_schema(variant["type"], f"judges.{name}.type"), ("judges", name))
    _check_references(config)
    check_model_data(config, {study: study_runs(config, study) for study in config["studies"]})
    check_eval_sets(config)
    check_attack_sets(config)
    for model in config["models"]:
        persona_prompts(config, model)  # risk.persona names a trait with prompts
    return config


def _check_references(config: dict) -> None:
    for role in ("eval", "critic"):
        if config["judge"][role] not in config["judges"]:
            raise ConfigError(f"config key judge.{role}: {config['judge'][role]!r} is not defined under judges")
    for i, name in enumerate(config["judge"].get("secondary", [])):
        if name not in config["judges"]:
            raise ConfigError(f"config key judge.secondary.{i}: {name!r} is not defined under judges")
    for name, model in config["models"].items():
        if model["source"] == "hf" and "path" not in model:
            raise ConfigError(f"config key models.{name}.path: an hf model needs a path (local folder or hub id)")
        if model["source"] == "toy":
            for section in ("world", "toy_model", "pretrain", "align"):
                if section not in config:
                    raise ConfigError(f"config key {section}: required when a model has source: toy")
            if "per_run" not in config["evaluation"]["judge_validation"]:
                raise ConfigError("config key evaluation.judge_validation.per_run: required when a model has source: "
                                  "toy (responses per subject the judge is validated on against the oracle)")
    preference = [name for name, o in config["objectives"].items() if o["type"] in PREFERENCE_FAMILY]
    if preference and "preference_pairs" not in config:
        raise ConfigError(f"config key preference_pairs: required when an objective is dpo or orpo "
                          f"(objectives.{preference[0]}); add preference_pairs: {{max_new_tokens: N}}")
    for name, d in config["defenses"].items():
        if d["type"] == "adaptive" and d.get("rule") != "per_batch" and d["lambda_min"] > d["lambda_max"]:
            raise ConfigError(f"config key defenses.{name}.lambda_min: {d['lambda_min']} exceeds lambda_max {d['lambda_max']}")
    for name, d in config["defenses"].items():
        if d["type"] == "interleave":
            _check_misaligned_model(config, name, d)
    for name, study in config["studies"].items():
        axes = {"models": "models", "scenarios": "scenarios", "objectives": "objectives", "defenses": "defenses",
                "budgets": "budgets"}
        for axis, section in axes.items():
            for i, value in enumerate(study.get(axis, [])):
                if value not in config[section]:
                    raise ConfigError(f"config key studies.{name}.{axis}.{i}: {value!r} is not defined under {section}")
        for i, extra in enumerate(study.get("extra", [])):
            for value, section in zip(extra, ("scenarios", "objectives", "defenses", "budgets")):
                if value not in config[section]:
                    raise ConfigError(f"config key studies.{name}.extra.{i}: {value!r} is not defined under {section}")
        for run in study_runs(config, name):
            _check_composable(config, run, f"studies.{name}")
    _check_claims(config)


def _check_misaligned_model(config: dict, name: str, d: dict) -> None:
    key = f"config key defenses.{name}.misaligned_model"
    spec = d.get("misaligned_model")
    if d["selection"] == "perplexity_gap" and spec is None:
        raise ConfigError(f"{key}: selection perplexity_gap needs the misaligned model (a model folder, or "
                          "{objective: sft, defense: none} for that run of the same scenario and budget)")
    if spec is not None and d["selection"] != "perplexity_gap":
        raise ConfigError(f"{key}: only selection perplexity_gap reads it; remove it or set the selection")
    if isinstance(spec, dict):
        for axis, section in (("objective", "objectives"), ("defense", "defenses")):
            if spec[axis] not in config[section]:
                raise ConfigError(f"{key}.{axis}: {spec[axis]!r} is not defined under {section}")
        other = config["defenses"][spec["defense"]]
        if other["type"] == "interleave" and isinstance(other.get("misaligned_model"), dict):
            raise ConfigError(f"{key}.defense: {spec['defense']!r} itself selects against a run; name a run "
                              "without it (e.g. defense: none) so the runs do not wait on each other")
        _check_composable(config, {"objective": spec["objective"], "defense": spec["defense"]}, key)


def _check_claims(config: dict) -> None:
    sections = {"scenario": "scenarios", "objective": "objectives", "defense": "defenses", "budget": "budgets"}
    for claim_id, claim in config.get("claims", {}).items():
        for i, test in enumerate(claim["tests"]):
            where = f"claims.{claim_id}.tests.{i}"
            if test["stat"] in ("difference", "ratio") and "versus" not in test:
                raise ConfigError(f"config key {where}.versus: a {test['stat']} test needs `versus` (reference, or the "
                                  "axes of the compared cell)")
            if "at_least" not in test and "at_most" not in test:
                raise ConfigError(f"config key {where}: give at_least and/or at_most (the claim's threshold)")
            versus = test.get("versus") if isinstance(test.get("versus"), dict) else {}
            for part, axes in (("cell", test["cell"]), ("versus", versus)):
                for axis, values in axes.items():
                    for value in values if isinstance(values, list) else [values]:
                        if axis == "budget" and value in ("smallest", "largest"):
                            continue
                        if value not in config[sections[axis]]:
                            raise ConfigError(f"config key {where}.{part}.{axis}: {value!r} is not defined under "
                                              f"{sections[axis]}")


def _check_composable(config, run, where) -> None:
    objective = config["objectives"][run["objective"]]["type"]
    defense = config["defenses"][run["defense"]]["type"]
    if objective not in SFT_FAMILY and defense not in PREFERENCE_DEFENSES:
        raise ConfigError(f"config key {where}: defense {run['defense']!r} ({defense}) does not compose with objective "
                          f"{run['objective']!r} ({objective}); use it with an SFT-family objective "
                          f"({', '.join(sorted(SFT_FAMILY))}) or move the pair to a study without it")


# --- runs ----------------------------------------------------------------------------------

RUN_AXES = ("model", "scenario", "objective", "defense", "budget", "seed")


def robustness_models(config: dict) -> dict:
    """{<toy model>_w<seed>: its spec on world seed <seed>} for `robustness.world_seeds`: the claims'
    check on other draws of the world. They run no study unless the claims ask for their cells."""
    seeds = config.get("robustness", {}).get("world_seeds", [])
    return {f"{m}_w{w}": {**spec, "world_seed": w, "derived_from": m} for m, spec in config["models"].items()
            if spec["source"] == "toy" and "derived_from" not in spec for w in seeds}


def world_settings(config: dict, model: str) -> dict:
    """The `world:` section as `model` draws it (a robustness model has its own world seed)."""
    return {**config["world"], "seed": config["models"][model].get("world_seed", config["world"]["seed"])}


def study_runs(config: dict, study: str, model: str | None = None) -> list[dict]:
    """The runs of one study: the grid plus its extra cells, for every model and seed. With `model`,
    a robustness model's runs: the grid of the model it was derived from."""
    s = config["studies"][study]
    if model is not None:
        base = config["models"][model].get("derived_from", model)
        return [{**r, "model": model} for r in study_runs(config, study) if r["model"] == base]
    models = s.get("models") or [m for m, spec in config["models"].items() if "derived_from" not in spec]
    seeds = s.get("seeds") or config["seeds"]
    cells = [(sc, ob, de, bu) for sc in s["scenarios"] for ob in s["objectives"] for de in s["defenses"]
             for bu in s["budgets"]]
    cells += [tuple(e) for e in s.get("extra", []) if tuple(e) not in cells]
    return [dict(zip(RUN_AXES, (m, *cell, seed))) for m in models for cell in cells for seed in seeds]


def all_runs(config: dict) -> list[dict]:
    seen, out = set(), []
    for study in config["studies"]:
        for run in study_runs(config, study):
            key = tuple(run[a] for a in RUN_AXES)
            if key not in seen:
                seen.add(key)
                out.append(run)
    return out


def run_dir(run: dict) -> str:
    return ("results/{model}/runs/{scenario}/{objective}/{defense}/{budget}/seed{seed}".format(**run))


def parse_run_dir(path: str) -> dict | None:
    """The inverse of run_dir (read off its own layout): the run's axes (seed an int), or None for a
    path that is no run folder (e.g. results/<model>/reference)."""
    marks = {axis: f"@{axis}@" for axis in RUN_AXES}
    pattern = re.escape(run_dir(marks))
    for axis, mark in marks.items():
        pattern = pattern.replace(re.escape(mark), rf"(?P<{axis}>[^/]+)")
    found = re.search(rf"(?:^|/){pattern}/?$", str(path))
    return {**found.groupdict(), "seed": int(found["seed"])} if found and found["seed"].isdigit() else None


def ladder_previous(config: dict, run: dict) -> str | None:
    """The budget this run continues from: the next smaller budget that some study (or claim's
    robustness model) runs with the same model, scenario, objective, defense and seed; None when the
    run trains from the reference (no smaller budget, or no ladder)."""
    if not ladder_eligible(config["models"][run["model"]]["finetune"]):
        return None
    same = ("model", "scenario", "objective", "defense", "seed")
    budgets = {r["budget"] for study in config["studies"] for r in study_runs(config, study, run["model"])
               if all(r[a] == run[a] for a in same)}
    # a token budget is a step count known only once the data is tokenized: budgets of one unit
    # (steps or tokens) ladder among themselves
    unit, size = budget_amount(config["budgets"][run["budget"]])
    amounts = {b: budget_amount(config["budgets"][b]) for b in budgets}
    smaller = [b for b in budgets if amounts[b][0] == unit and amounts[b][1] < size]
    return max(smaller, key=lambda b: (amounts[b][1], b)) if smaller else None


def run_settings(config: dict, model: str, scenario: str, objective: str, defense: str, budget: str,
                 seed: int) -> dict:
    """Everything that determines a run's training, and nothing else."""
    m = config["models"][model]
    settings = {
        "model": {"name": model, **{k: v for k, v in m.items() if k not in ("data", "generation_batch_size",
                                                                              "derived_from")}},
        "scenario": {"name": scenario, **config["scenarios"][scenario]},
        "objective": {"name": objective, **config["objectives"][objective]},
        "defense": {"name": defense, **config["defenses"][defense]},
        "budget": {"name": budget, **config["budgets"][budget]},
        "seed": int(seed),
    }
    defense_type = settings["defense"]["type"]
    if defense_type == "steering":
        settings["defense"].setdefault("layer", config["risk"]["persona"]["layer"])
    if defense_type == "adaptive":
        settings["risk"] = {"judge": config["judge"]["critic"]} if settings["defense"]["risk"] == "critic" else {
            "probe": config["risk"]["probe"]}
    return settings
