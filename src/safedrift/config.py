"""Config validation and run resolution.

`validate(config)` runs before any job: the JSON schema (workflow/schemas/config.schema.yaml),
then each named variant against its type's schema (an objective's or a defense's from its module,
the others' from the schema's $defs), then cross-references (a study naming an undefined variant, a
defense that cannot compose with an objective, an eval set no model has, data a real model's
studies need but its config lacks, a claim's metric no evaluation writes, a layer the toy model
lacks). Every failure is one
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

from safedrift.composition import check_composable
from safedrift.config_inputs import (check_data_entry_options, check_eval_sets, check_layers, check_model_data,  # noqa: F401
                                     check_paths, check_toy_lora, toy_layers)  # check_paths: API
from safedrift.defenses import DEFENSES, defense_class
from safedrift.errors import ConfigError
from safedrift.finetune.schedule import budget_amount, ladder_eligible
from safedrift.io import UniqueKeyLoader, yaml_error
from safedrift.judges import judge_schema
from safedrift.layout import (DEFAULT_REFERENCE, RUN_LAYOUT, parse_subject_dir, reference_dir,  # noqa: F401 (re-exported)
                              reference_model, reference_of_runs_folder, run_dir, runs_folder, subject_pattern)
from safedrift.objectives import OBJECTIVES, objective_class
from safedrift.risk.traits import persona_prompts

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
VARIANT_KINDS = {"scenarios": "scenario", "objectives": "objective", "defenses": "defense", "budgets": "budget"}
# Kinds whose types are modules that declare their own schema (the rest: `<kind>_<type>` in $defs).
REGISTRIES = {"objective": (OBJECTIVES, objective_class), "defense": (DEFENSES, defense_class)}


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
    if v in ("minItems", "minProperties") and (error.validator_value == 1 or not error.instance):
        return f"config key {where}: must not be empty"
    if v in ("minItems", "maxItems"):
        what = error.schema.get("description", "").strip()
        bound = "at least" if v == "minItems" else "at most"
        return (f"config key {where}: {len(error.instance)} entries, needs {bound} {error.validator_value}"
                + (f": {what}" if what else ""))
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
    for section, kind in VARIANT_KINDS.items():
        for name, variant in config[section].items():
            _check(variant, variant_schema(kind, variant["type"], f"{section}.{name}.type"), (section, name))
    for name, variant in config["judges"].items():  # a judge type declares its schema (safedrift.judges)
        _check(variant, judge_schema(variant["type"], f"judges.{name}.type"), ("judges", name))
    _check_references(config)
    check_model_data(config, {study: study_runs(config, study) for study in config["studies"]})
    check_eval_sets(config)
    check_data_entry_options(config)
    for model in config["models"]:
        persona_prompts(config, model)  # risk.persona names a trait with prompts
    check_layers(config, toy_layers(config))  # an hf model's layers: check_paths (its folder's config.json)
    check_toy_lora(config)
    return config


def variant_schema(kind: str, type_: str, key: str) -> dict:
    """The JSON schema of a `kind` variant of type `type_` (`key` names it in the error for an unknown type)."""
    if kind in REGISTRIES:
        try:
            return REGISTRIES[kind][1](type_).schema
        except ConfigError as e:
            raise ConfigError(f"config key {key}: {e}") from None
    defs = schema()["$defs"]
    if f"{kind}_{type_}" not in defs:
        types = sorted(k.split("_", 1)[1] for k in defs if k.startswith(kind + "_"))
        raise ConfigError(f"config key {key}: unknown {kind} type {type_!r} (known: {', '.join(types)})")
    return {"$ref": f"#/$defs/{kind}_{type_}"}


def _check_references(config: dict) -> None:
    if report_model(config) not in config["models"]:
        raise ConfigError(f"config key report.model: {report_model(config)!r} is not defined under models")
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
    for name, o in config["objectives"].items():
        objective_class(o["type"]).check(name, o, config)
    for name, d in config["defenses"].items():
        defense_class(d["type"]).check(name, d, config)
    _check_reference_variants(config)
    for name, study in config["studies"].items():
        axes = {"models": "models", "scenarios": "scenarios", "objectives": "objectives", "defenses": "defenses",
                "budgets": "budgets"}
        for axis, section in axes.items():
            for i, value in enumerate(study.get(axis, [])):
                if value not in config[section]:
                    raise ConfigError(f"config key studies.{name}.{axis}.{i}: {value!r} is not defined under {section}")
        _check_study_references(config, name, study)
        for i, extra in enumerate(study.get("extra", [])):
            for value, section in zip(extra, ("scenarios", "objectives", "defenses", "budgets")):
                if value not in config[section]:
                    raise ConfigError(f"config key studies.{name}.extra.{i}: {value!r} is not defined under {section}")
            _check_extra_reference(config, name, i, extra)
        for run in study_runs(config, name):
            check_composable(config, run, f"studies.{name}")
            # inputs() raise ConfigError on settings a run cannot use (safelora on an hf model without
            # unaligned_model, a taken input name): here, not when Snakemake builds the DAG
            finetune_declared_inputs(config, run)
    _check_claims(config)
    _check_robustness(config)


def _check_robustness(config: dict) -> None:
    """A robustness draw equal to the default one would be trained again and fill a second column
    with the default's verdicts under the same label."""
    r = config.get("robustness", {})
    if not all(section in config for section in ("world", "pretrain", "align")):
        return  # no toy world: nothing is redrawn
    for i, seed in enumerate(r.get("world_seeds", [])):
        if seed == config["world"]["seed"]:
            raise ConfigError(f"config key robustness.world_seeds.{i}: {seed} is world.seed, the default world "
                              "(the robustness table's first column); list other seeds")
    for i, seed in enumerate(r.get("training_seeds", [])):
        if seed == config["pretrain"]["seed"] == config["align"]["seed"]:
            raise ConfigError(f"config key robustness.training_seeds.{i}: {seed} is pretrain.seed and align.seed, "
                              "the default training; list other seeds")


RESERVED_REFERENCE_NAMES = ("eval", "state", "checkpoints")


def _check_reference_variants(config: dict) -> None:
    for name, ref in config.get("references", {}).items():
        if name in RESERVED_REFERENCE_NAMES:  # results/<m>/reference/<name>/ would be a folder of the default's
            raise ConfigError(f"config key references.{name}: the name is the default reference's own "
                              f"{name}/ folder; call the variant something else")
        if (name == DEFAULT_REFERENCE) != (ref["type"] == "aligned"):
            raise ConfigError(f"config key references.{name}.type: `default` is the pipeline's aligned reference "
                              f"(type: aligned) and a variant under another name is not aligned again; got "
                              f"{ref['type']!r} under {name!r}")


def _check_study_references(config: dict, study: str, s: dict) -> None:
    known = references(config)
    models = s.get("models") or [m for m, spec in config["models"].items() if "derived_from" not in spec]
    for i, ref in enumerate(s.get("references", [])):
        key = f"config key studies.{study}.references.{i}"
        if ref not in known:
            raise ConfigError(f"{key}: {ref!r} is not defined under references (known: {', '.join(known)})")
        hf = [m for m in models if config["models"][m]["source"] == "hf"]
        if ref != DEFAULT_REFERENCE and hf:
            raise ConfigError(f"{key}: reference variant {ref!r} ({known[ref]['type']}) is built by the toy world's "
                              f"alignment stage, which an hf model ({hf[0]!r}) does not run; align a {known[ref]['type']} "
                              "model from the base model and alignment data (e.g. github.com/git-disl/Vaccine), add "
                              "it as its own model (models.<name>.path), and keep this study's references to "
                              "[default] for hf models")


def _check_extra_reference(config: dict, study: str, i: int, extra: list) -> None:
    """An extra cell's optional 5th element names the one reference variant it is fine-tuned from."""
    if len(extra) < 5:
        return
    known = references(config)
    key = f"config key studies.{study}.extra.{i}.4"
    if extra[4] not in known:
        raise ConfigError(f"{key}: {extra[4]!r} is not defined under references (known: {', '.join(known)}); "
                          "name a reference variant or drop the 5th element (the study's references)")
    models = config["studies"][study].get("models") or [m for m, spec in config["models"].items()
                                                          if "derived_from" not in spec]
    hf = [m for m in models if config["models"][m]["source"] == "hf"]
    if extra[4] != DEFAULT_REFERENCE and hf:
        raise ConfigError(f"{key}: reference variant {extra[4]!r} is built by the toy world's alignment stage, which "
                          f"an hf model ({hf[0]!r}) does not run; drop the 5th element for hf models")


def _check_claims(config: dict) -> None:
    sections = {"scenario": "scenarios", "objective": "objectives", "defense": "defenses", "budget": "budgets"}
    for claim_id, claim in config.get("claims", {}).items():
        for i, test in enumerate(claim["tests"]):
            where = f"claims.{claim_id}.tests.{i}"
            if test["stat"] in ("difference", "ratio") and "versus" not in test:
                raise ConfigError(f"config key {where}.versus: a {test['stat']} test needs `versus` (reference, or the "
                                  "axes of the compared cell)")
            if "versus" in test and test["stat"] in ("value", "range"):
                compares = ("the range would span the compared cell too" if test["stat"] == "range" else
                            "it would be ignored, yet its cell's runs would be needed")
                raise ConfigError(f"config key {where}.versus: a {test['stat']} test compares with nothing ({compares}); "
                                  "drop versus, or use stat: difference or ratio")
            metrics = test["metric"] if isinstance(test["metric"], list) else [test["metric"]]
            for j, metric in enumerate(metrics):
                problem = claim_metric_problem(config, metric)
                if problem:
                    key = f"{where}.metric" + (f".{j}" if isinstance(test["metric"], list) else "")
                    raise ConfigError(f"config key {key}: {problem}")
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


# The metrics a claim can test: those evaluate.metrics writes into each subject's metric rows (the
# rows report.scorecard reads), and the model's risk estimators (report.claims.MODEL_METRICS).
# tests/test_config.py compares these with evaluate/metrics.py.
CLAIM_METRICS = ("asr", "over_refusal", "capability", "new_task_capability", "misaligned", "incoherent",
                 "persona_projection", "trait_yes", "jailbreak_asr_trained", "jailbreak_asr_heldout",
                 "probe_auroc", "critic_recall")
# Families `<family>/<name>`: the eval set, jailbreak family, prefill length, narrow domain or trait.
CLAIM_METRIC_FAMILIES = {"asr": "<eval set>", "misaligned": "<eval set>", "incoherent": "<eval set>",
                         "persona_projection": "<eval set>", "jailbreak_asr": "<family>", "prefill_asr": "k<tokens>",
                         "narrow_misaligned": "<domain>", "trait_endorsement": "<trait>"}
# What a secondary judge adds to the rows: `<metric>@<judge>`.
SECONDARY_METRICS = ("asr", "over_refusal")


def claim_metric_problem(config: dict, metric: str) -> str | None:
    """Why no run could write `metric` into the metric rows a claim reads, or None.

    A claim may name a metric this config's eval sets do not produce: the real-model configs keep
    config.yaml's claims, and such a test is reported "not run" with the reason. What is rejected
    is a name no eval set could produce: not a metric, a family's name that is no eval set the
    pipeline knows (evaluation.sets, the toy world's, any model's data.eval), no jailbreak family
    (the toy world's or safedrift.data.attacks'), no prefill length k<tokens>, or a secondary judge
    not under judge.secondary. A narrow domain or a trait comes from the data files: only its family
    is checked."""
    from safedrift.data.attacks import JAILBREAKS
    from safedrift.world.corpus import EVAL_SETS
    from safedrift.world.lexicon import ALIAS_FAMILY, JAILBREAK_FAMILIES

    if metric in CLAIM_METRICS:
        return None
    known = ", ".join([*CLAIM_METRICS, *(f"{f}/{n}" for f, n in CLAIM_METRIC_FAMILIES.items()),
                       *(f"{m}@<secondary judge>" for m in SECONDARY_METRICS)])
    if metric == "persona_drift":
        return ("'persona_drift' is computed by the tables, not written into the metric rows a claim tests; test "
                "persona_projection with stat: difference and versus: reference (the same paired difference)")
    if "@" in metric:
        base, judge = metric.split("@", 1)
        secondary = config["judge"].get("secondary", [])
        if base not in SECONDARY_METRICS:
            return (f"{metric!r}: a secondary judge adds {' and '.join(f'{m}@{judge}' for m in SECONDARY_METRICS)} "
                    "only; fix the metric")
        if judge not in secondary:
            return (f"{metric!r}: {judge!r} is not a secondary judge (judge.secondary: {', '.join(secondary) or 'none'}); "
                    "fix the name or add the judge to judge.secondary")
        return None
    family, _, name = metric.partition("/")
    if family not in CLAIM_METRIC_FAMILIES or not name:
        return f"{metric!r} is no metric the evaluation writes (known: {known}); fix the name"
    if CLAIM_METRIC_FAMILIES[family] == "<eval set>":
        sets = list(dict.fromkeys([*config["evaluation"]["sets"], *EVAL_SETS,
                                   *(n for spec in config["models"].values() for n in (spec.get("data") or {})
                                     .get("eval", {}))]))
        if name not in sets:
            return (f"{metric!r}: no eval set {name!r} ({family}/<eval set>; known sets: {', '.join(sets)}); fix the name, "
                    "or add the set under evaluation.sets and an hf model's data.eval")
    if family == "prefill_asr" and not re.fullmatch(r"k[1-9]\d*", name):
        return f"{metric!r}: the prefill length is k<tokens> (e.g. prefill_asr/k5); fix the name"
    if family == "jailbreak_asr":
        families = sorted({*JAILBREAK_FAMILIES, ALIAS_FAMILY, *JAILBREAKS})
        if name not in families:
            return (f"{metric!r}: no jailbreak family {name!r} (jailbreak_asr/<family>; the toy world's and "
                    f"safedrift.data.attacks': {', '.join(families)}); fix the name")
    return None


# --- runs ----------------------------------------------------------------------------------

RUN_AXES = ("model", "reference", "scenario", "objective", "defense", "budget", "seed")


def report_model(config: dict) -> str:
    """The model the figures, `tables/claims.*` and the README report (`report.model`; default: the first)."""
    return config.get("report", {}).get("model", next(iter(config["models"])))


def robustness_models(config: dict) -> dict:
    """The claims' check on other draws of the report model's toy world, one model per draw:
    {<toy model>_w<seed>} on world seed <seed> (`robustness.world_seeds`: another world, its corpus
    and its training), and {<toy model>_t<seed>} on the default world with pretraining and alignment
    seeded by <seed> (`robustness.training_seeds`: the same world, another training of its reference).
    Only the report model is redrawn: its scorecard is the robustness table's first column. They run
    no study unless the claims ask for their cells."""
    m = report_model(config)
    spec = config["models"][m]
    if spec["source"] != "toy" or "derived_from" in spec:
        return {}
    r = config.get("robustness", {})
    draws = [(f"w{w}", {"world_seed": w}) for w in r.get("world_seeds", [])]
    draws += [(f"t{t}", {"training_seed": t}) for t in r.get("training_seeds", [])]
    return {f"{m}_{suffix}": {**spec, **draw, "derived_from": m} for suffix, draw in draws}


def world_settings(config: dict, model: str) -> dict:
    """The `world:` section as `model` draws it (a robustness model may have its own world seed)."""
    return {**config["world"], "seed": config["models"][model].get("world_seed", config["world"]["seed"])}


def training_settings(config: dict, model: str, stage: str) -> dict:
    """The `pretrain:` or `align:` section (`stage`) as `model` trains its reference (a robustness
    model may have its own training seed)."""
    seed = config["models"][model].get("training_seed")
    return config[stage] if seed is None else {**config[stage], "seed": seed}


def draw_label(config: dict, model: str) -> str:
    """How tables name the draw of the world a toy model is: "world<seed>", plus "-train<seed>" for
    another training of it; a model that is not a toy world is named by its config name."""
    spec = config["models"][model]
    if spec["source"] != "toy":
        return model
    label = f"world{spec.get('world_seed', config['world']['seed'])}"
    return label + (f"-train{spec['training_seed']}" if "training_seed" in spec else "")


def study_runs(config: dict, study: str, model: str | None = None) -> list[dict]:
    """The runs of one study: the grid plus its extra cells, for every model and seed. With `model`,
    a robustness model's runs: the grid of the model it was derived from."""
    s = config["studies"][study]
    if model is not None:
        base = config["models"][model].get("derived_from", model)
        return [{**r, "model": model} for r in study_runs(config, study) if r["model"] == base]
    models = s.get("models") or [m for m, spec in config["models"].items() if "derived_from" not in spec]
    seeds = s.get("seeds") or config["seeds"]
    # (reference, scenario, objective, defense, budget): the grid and 4-element extra cells on every
    # reference of the study; a 5-element extra cell on the reference variant it names only.
    cells = [(sc, ob, de, bu) for sc in s["scenarios"] for ob in s["objectives"] for de in s["defenses"]
             for bu in s["budgets"]]
    cells += [tuple(e) for e in s.get("extra", []) if len(e) == 4 and tuple(e) not in cells]
    runs = [(ref, *cell) for ref in study_references(config, study) for cell in cells]
    runs += [(e[4], *e[:4]) for e in s.get("extra", []) if len(e) == 5 and (e[4], *e[:4]) not in runs]
    return [dict(zip(RUN_AXES, (m, *run, seed))) for m in models for run in runs for seed in seeds]


def references(config: dict) -> dict:
    """`references:` with the default filled in: {name: settings}. `default` is the pipeline's aligned
    reference (toy: world.align; hf: models.<m>.path)."""
    return {DEFAULT_REFERENCE: {"type": "aligned"}, **config.get("references", {})}


def study_references(config: dict, study: str) -> list[str]:
    """The reference variants a study fine-tunes from (studies.<s>.references; default [default])."""
    return config["studies"][study].get("references") or [DEFAULT_REFERENCE]


def used_references(config: dict) -> list[str]:
    """Reference variants some study (or one of its extra cells) fine-tunes from, the default first."""
    return list(dict.fromkeys([DEFAULT_REFERENCE, *(r for study in config["studies"]
                                                     for r in study_references(config, study)),
                               *(e[4] for s in config["studies"].values() for e in s.get("extra", []) if len(e) == 5)]))


def all_runs(config: dict) -> list[dict]:
    seen, out = set(), []
    for study in config["studies"]:
        for run in study_runs(config, study):
            key = tuple(run[a] for a in RUN_AXES)
            if key not in seen:
                seen.add(key)
                out.append(run)
    return out


def ladder_previous(config: dict, run: dict) -> str | None:
    """The budget this run continues from: the next smaller budget that some study (or claim's
    robustness model) runs with the same model, scenario, objective, defense and seed; None when the
    run trains from the reference (no smaller budget, or no ladder)."""
    if not ladder_eligible(config["models"][run["model"]]["finetune"]):
        return None
    if defense_class(config["defenses"][run["defense"]]["type"]).stateful:  # its state is not in the checkpoint
        return None
    same = ("model", "reference", "scenario", "objective", "defense", "seed")
    run = {"reference": DEFAULT_REFERENCE, **run}
    budgets = {r["budget"] for study in config["studies"] for r in study_runs(config, study, run["model"])
               if all(r[a] == run[a] for a in same)}
    # a token budget is a step count known only once the data is tokenized: budgets of one unit
    # (steps or tokens) ladder among themselves
    unit, size = budget_amount(config["budgets"][run["budget"]])
    amounts = {b: budget_amount(config["budgets"][b]) for b in budgets}
    smaller = [b for b in budgets if amounts[b][0] == unit and amounts[b][1] < size]
    return max(smaller, key=lambda b: (amounts[b][1], b)) if smaller else None


# the finetune rule's own input names, which a declared input must not take
FINETUNE_INPUTS = ("code", "reference", "data", "chat_template", "previous")


def finetune_declared_inputs(config: dict, run: dict) -> dict[str, str | list[str]]:
    """The files the run's objective and defense declare (their inputs()), by name: inputs of the
    finetune rule, passed to finetune.run as `--input NAME=PATH`."""
    inputs = {}
    for section, cls in (("objectives", objective_class), ("defenses", defense_class)):
        settings = config[section][run[section[:-1]]]
        for name, path in cls(settings["type"]).inputs(settings, run, config).items():
            if name in inputs or name in FINETUNE_INPUTS or not name.isidentifier():
                raise ConfigError(f"config key {section}.{run[section[:-1]]}.type: {settings['type']} declares input "
                                  f"{name!r}, which is taken (or no identifier); rename it in its inputs()")
            inputs[name] = path
    return inputs


# models.<m>.finetune keys that change no weight: how often a job saves resumable state (the finetune rule
# passes it as a resource) and whether KL runs read the reference's log-probs from a cache (an input of those
# runs, so switching it reruns them and no other run)
EXECUTION_KEYS = ("checkpoint_every", "reference_logprobs")


def weight_settings(finetune: dict) -> dict:
    """The part of `models.<m>.finetune` that determines a run's weights: without EXECUTION_KEYS, and
    without a `lora` block under `method: full`, which nothing reads."""
    kept = {k: v for k, v in finetune.items() if k not in EXECUTION_KEYS}
    if kept.get("method") != "lora":
        kept.pop("lora", None)
    return kept


def run_settings(config: dict, model: str, scenario: str, objective: str, defense: str, budget: str,
                 seed: int, reference: str = DEFAULT_REFERENCE) -> dict:
    """Everything that determines a run's training, and nothing else. A run on a reference variant
    carries the variant's settings under `reference` (the default's settings are absent, as before
    reference variants existed, so default runs keep their params)."""
    m = config["models"][model]
    model_settings = {k: v for k, v in m.items() if k not in ("data", "generation_batch_size", "derived_from")}
    settings = {
        "model": {"name": model, **model_settings, "finetune": weight_settings(m["finetune"])},
        "scenario": {"name": scenario, **config["scenarios"][scenario]},
        "objective": {"name": objective, **config["objectives"][objective]},
        "defense": {"name": defense, **config["defenses"][defense]},
        "budget": {"name": budget, **config["budgets"][budget]},
        "seed": int(seed),
    }
    if reference != DEFAULT_REFERENCE:
        settings["reference"] = {"name": reference, **references(config)[reference]}
    return defense_class(settings["defense"]["type"]).resolve(settings, config)
