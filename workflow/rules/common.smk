# Path and grid helpers shared by every rule file. No pipeline logic lives here.

import json
import os
import shlex

from safedrift.config import (DEFAULT_REFERENCE, RUN_LAYOUT, all_runs, draw_label, finetune_declared_inputs, ladder_previous,
                              parse_subject_dir, reference_dir, reference_model, reference_of_runs_folder, references as reference_variants, report_model,
                              robustness_models, run_dir, run_settings, runs_folder, study_references, study_runs,
                              subject_pattern, training_settings, world_settings)
from safedrift.data.fetch import entry_files, load_sources, source_files
from safedrift.data.real import eval_prompt_sources, plain_request_sets
from safedrift.data.scenarios import pools_needed
from safedrift.evaluate.judge_validation import RARE_RECALL_DEFAULTS
from safedrift.evaluate.labelled_validation import PACKAGED as PACKAGED_LABELLED
from safedrift.finetune.schedule import budget_order
from safedrift.judges import SCORES, judge_class, judge_module
from safedrift.pipeline import finetune_modules, params as canonical, source_closure
from safedrift.report.cells import select_studies, select_study
from safedrift.report.figures import FIGURES
from safedrift.report.study_tables import TABLES
from safedrift.risk.traits import persona_prompts
from safedrift.world.corpus import EVAL_SETS, POOLS
from safedrift.world.splits import product_settings

# Every rule's software under --software-deployment-method conda; relative to workflow/rules/,
# where Snakemake resolves a rule's conda: path.
CONDA_ENV = "../../envs/safedrift.yaml"
# Robustness models (the same toy model on other draws of the world: other world seeds, other training
# seeds) join config["models"] after validation; studies run on the configured models only,
# `robustness` runs the claims on them.
ROBUSTNESS_MODELS = robustness_models(config)
config["models"].update(ROBUSTNESS_MODELS)
TOY_MODELS = [m for m, spec in config["models"].items() if spec["source"] == "toy" and m not in ROBUSTNESS_MODELS]
HF_MODELS = [m for m, spec in config["models"].items() if spec["source"] == "hf"]
# Reference variants (references:, `default` included); a variant other than default is built by
# rule align_variant into results/<toy>/reference/<name>/ and its runs live in results/<model>/runs@<name>/.
REFERENCES = list(reference_variants(config))


def sources(*modules):
    """Source files of the stage modules (and what they import): a rule's code inputs."""
    return list(source_closure(*(m if m.startswith("safedrift.") else f"safedrift.{m}" for m in modules)))


def alternation(names):
    return "|".join(names) if names else "(?!x)x"


wildcard_constraints:
    toy=alternation(TOY_MODELS + list(ROBUSTNESS_MODELS)),
    hf=alternation(HF_MODELS),
    model=alternation(list(config["models"])),
    seed=r"\d+",
    runs=alternation([runs_folder(r) for r in REFERENCES]),
    reference=alternation([r for r in REFERENCES if r != DEFAULT_REFERENCE]),


# --- world (world.smk) ------------------------------------------------------

def world_params(product):
    """A params function (evaluated per job), so configs without a toy model never read `world:`.
    A robustness model on another world (results/<toy>_w<seed>) draws it with its own seed."""
    return lambda wc: canonical(product_settings(world_settings(config, wc.toy), product))


# --- real (real.smk) --------------------------------------------------------

def real_data(model):
    return config["models"][model].get("data", {})


def real_entry_files(entries):
    """The data files of these data entries: editing one reruns the jobs that read it. An entry
    with `fetch:` depends on the dataset's files, so rule fetch_data downloads them first."""
    return sorted({path for entry in entries for path in (entry_files(entry) if "fetch" in entry else [entry["path"]])})


def real_entry_spec(section, wildcard):
    """A params function: the --spec of data.real --product eval/pool for the entry of
    models.<hf>.data.<section> that wildcard `wildcard` names. A pool with overlap: drop also gets the eval prompt sources it gives
    way to (data.real.eval_prompt_sources: the eval entries without their attacks, and without their
    limit unless on the pool's own file), so it
    depends on those and on no other eval setting; every other entry depends on itself only."""
    def spec(wc):
        data = real_data(wc.hf)
        entry = data[section][getattr(wc, wildcard)]
        drop = {"eval_prompt_sources": eval_prompt_sources(data, entry)} if entry.get("overlap") == "drop" else {}
        return canonical({section: {getattr(wc, wildcard): entry}, **drop})
    return spec


def real_entry_inputs(section, wildcard):
    """An input function: the files that real_entry_spec's spec reads. The eval prompt sources of a drop
    pool lose their `fetch:` key, so their files are those of the eval entries they come from (a fetched
    dataset's files, which rule fetch_data writes, not the folder its `path` names)."""
    def files(wc):
        data = real_data(wc.hf)
        entry = data[section][getattr(wc, wildcard)]
        paths = {s["path"] for s in eval_prompt_sources(data, entry)} if entry.get("overlap") == "drop" else set()
        return real_entry_files([entry, *(e for e in data.get("eval", {}).values() if e["path"] in paths)])
    return files


def real_products(model):
    """Every eval set and pool of an hf model and their provenance records (rule real_overlap's inputs)."""
    data = real_data(model)
    return [path for section in ("eval", "pools") for name in sorted(data.get(section, {}))
            for path in (f"results/{model}/world/{section}/{name}.jsonl", f"results/{model}/world/provenance/{section}/{name}.json")]


def real_overlap_checked(wc):
    """hf models: the pool/eval-set overlap check (rule real_overlap, results/<hf>/world/world.json), an
    input of the jobs that train or evaluate on the model's data so that nothing starts before it
    passes. ancient(): the check reruns whenever an eval set or pool changes, and its passing again is
    no reason to retrain or regenerate anything. Toy models: nothing (their world has no such check)."""
    return [ancient(f"results/{wc.model}/world/world.json")] if wc.model in HF_MODELS else []


# Public datasets (safedrift/data/sources.yaml) that some hf model's data entries `fetch:`.
FETCH_SOURCES = sorted({entry["fetch"] for m in HF_MODELS for section in config["models"][m].get("data", {}).values()
                        for entry in section.values() if "fetch" in entry})


# --- evaluate (evaluate.smk) ------------------------------------------------

def eval_set_names(model):
    """Eval sets generated for `model`: those configured under evaluation.sets that the model has."""
    spec = config["models"][model]
    available = spec.get("data", {}).get("eval", {}) if spec["source"] == "hf" else EVAL_SETS
    return sorted(name for name in config["evaluation"]["sets"] if name in available)


def reference_files(model, reference=DEFAULT_REFERENCE):
    """Files that stand for reference variant `reference` of `model` (a pipeline-built folder for toy
    models; an hf model's default reference is its path, which config validation allows only)."""
    return reference_model(config, model, reference)[1]


def load_flags(model):
    """How every stage that loads `model` loads it: models.<model>.dtype and trust_remote_code."""
    spec = config["models"][model]
    trust = " --trust-remote-code" if spec.get("trust_remote_code") else ""
    return f"--dtype {spec.get('dtype', 'float32')}{trust}"


def reference_path(model, reference=DEFAULT_REFERENCE):
    """The folder (or hub id) that runs on reference variant `reference` of `model` start from."""
    return reference_model(config, model, reference)[0]


def subject_reference(wc):
    """The reference variant of a subject (results/{model}/{subject}): a reference folder or a run's."""
    return parse_subject_dir(f"results/{wc.model}/{wc.subject}")["reference"]


def subject_is_reference(wc):
    return "scenario" not in parse_subject_dir(f"results/{wc.model}/{wc.subject}")


def subject_model(wc):
    if subject_is_reference(wc):
        return reference_files(wc.model, subject_reference(wc))
    return [f"results/{wc.model}/{wc.subject}/model"]


def subject_model_path(wc):
    if subject_is_reference(wc):
        return reference_path(wc.model, subject_reference(wc))
    return f"results/{wc.model}/{wc.subject}/model"


def generation_settings(model):
    e = config["evaluation"]
    sets = {name: e["sets"][name] for name in eval_set_names(model)}
    batch = config["models"][model].get("generation_batch_size", e["batch_size"])
    return canonical({"sets": sets, "max_new_tokens": e["max_new_tokens"], "batch_size": batch,
                      "seed": e.get("seed", 0), "persona_layer": config["risk"]["persona"]["layer"]})


def judge_class_of(judge):
    """The class of judge variant `judge` (safedrift.judges): its files, paths and settings."""
    return judge_class(config["judges"][judge]["type"], f"judges.{judge}.type")


def partly_scored(judge):
    """The score columns judge variant `judge` fills (Judge.scored), or () when it fills them all."""
    columns = judge_class_of(judge).scored(judge, config["judges"][judge])
    return () if set(columns) == set(SCORES) else tuple(columns)


def scored_flags():
    """evaluate.metrics' --scored: the score columns of each metrics judge that does not fill them all."""
    judges = [config["judge"]["eval"], *secondary_judges()]
    return " ".join(f"{j}={','.join(columns)}" for j in judges if (columns := partly_scored(j)))


def judge_declared(model, judge, what):
    """What judge variant `judge` declares for scoring `model`'s generations: its inputs or paths."""
    return getattr(judge_class_of(judge), what)(judge, config["judges"][judge], model, config)


def judge_inputs(model, judge):
    """Files a judge variant reads beyond the generations: its code and the files its type declares."""
    # the module may lie outside the package (a dotted type): source_closure finds it on sys.path
    code = list(source_closure("safedrift.judges.score", judge_module(config["judges"][judge]["type"])))
    return {"code": code, **judge_declared(model, judge, "inputs")}


def judge_settings(model, judge):
    """judges.<judge> as the judge gets it for `model` (a local judge that is the reference loads it as
    the model's stages do)."""
    return judge_class_of(judge).settings_for(config["judges"][judge], model, config)


def judge_flags(model, judge):
    """The judge stages' options: the variant, its settings, and every single path its type declares
    (`--path name=value`; a list of inputs is only waited for)."""
    flags = [f"--judge {judge}", f"--settings {shlex.quote(canonical(judge_settings(model, judge)))}"]
    declared = {**judge_declared(model, judge, "inputs"), **judge_declared(model, judge, "paths")}
    flags += [f"--path {shlex.quote(f'{name}={value}')}" for name, value in sorted(declared.items())
              if isinstance(value, str)]
    return " ".join(flags)


# Judges whose file rule train_classifier fits on the toy world (their classes say so).
CLASSIFIER_JUDGES = [j for j in config["judges"] if getattr(judge_class_of(j), "trained_on_world", False)]


def secondary_judges():
    return [j for j in config["judge"].get("secondary", []) if j != config["judge"]["eval"]]


def metrics_inputs(wc):
    base = f"results/{wc.model}/{wc.subject}/eval"
    inputs = {
        "code": sources("evaluate.metrics"),
        "generations": f"{base}/generations.jsonl",
        "scores": f"{base}/scores/{config['judge']['eval']}.parquet",
        "secondary": [f"{base}/scores/{j}.parquet" for j in secondary_judges()],
    }
    if not subject_is_reference(wc):  # a run is compared with the reference it was fine-tuned from
        inputs["reference"] = f"{reference_dir(wc.model, subject_reference(wc))}/eval/generations.jsonl"
    return inputs


def metrics_settings():
    e = config["evaluation"]
    return canonical({"thresholds": e["thresholds"], "bootstrap": e["bootstrap"], "max_unscored": e["max_unscored"]})


# --- train (train.smk) ------------------------------------------------------

# A run's folder under results/ as Snakemake wildcards (model, runs, scenario, objective, defense, budget,
# seed): safedrift.config.RUN_LAYOUT, the layout run_dir writes; {runs} names the reference variant.
RUN_ID = RUN_LAYOUT


RUN = os.path.join("results", RUN_ID)


def scenario_settings(name):
    return {"name": name, **config["scenarios"][name]}


def run_of(wc):
    return run_settings(config, wc.model, wc.scenario, wc.objective, wc.defense, wc.budget, int(wc.seed),
                        reference_of_runs_folder(wc.runs))


def finetune_inputs(wc):
    run = run_axes(wc)
    inputs = {
        # the same files finetune.run fingerprints its checkpoints with
        "code": list(source_closure(*finetune_modules(config["objectives"][wc.objective]["type"],
                                                      config["defenses"][wc.defense]["type"]))),
        "reference": reference_files(wc.model, run["reference"]),
        "data": f"results/{wc.model}/data/{wc.scenario}.jsonl",
        **finetune_declared_inputs(config, run),
    }
    inputs.update(chat_template_input(wc.model))  # a changed template retrains
    previous = ladder_previous(config, run)
    if previous:  # a budget ladder: continue the next smaller budget's training state
        rung = run_dir({**run, "budget": previous})
        inputs["previous"] = [f"{rung}/state", f"{rung}/train_log.jsonl"]
    return inputs


def chat_template_input(model):
    """{"chat_template": the file} where models.<model>.finetune.chat_template names one, else {}."""
    template = config["models"][model]["finetune"].get("chat_template")
    return {"chat_template": template} if template else {}


def reference_logprobs_settings(model):
    """What the reference log-prob cache of `model` depends on: how the model loads and how a run encodes its rows."""
    spec = config["models"][model]
    encoding = ("max_length", "batch_size", "chat_template")
    return {"name": model, **{k: v for k, v in spec.items() if k in ("source", "path", "dtype", "trust_remote_code")},
            "finetune": {k: spec["finetune"][k] for k in encoding if k in spec["finetune"]}}


def run_axes(wc):
    """The run of a finetune job's wildcards (keys model, reference, scenario, objective, defense, budget, seed)."""
    return {"model": wc.model, "reference": reference_of_runs_folder(wc.runs), "scenario": wc.scenario,
            "objective": wc.objective, "defense": wc.defense, "budget": wc.budget, "seed": int(wc.seed)}


def finetune_flags(wc, input):
    """--input NAME=PATH for each declared file (NAME[]=PATH for each of a list), --start-from for a ladder."""
    flags = []
    for name, path in finetune_declared_inputs(config, run_axes(wc)).items():
        if isinstance(path, list):
            flags += [f"--input {shlex.quote(f'{name}[]={p}')}" for p in path]
        else:
            flags.append(f"--input {shlex.quote(f'{name}={path}')}")
    if "previous" in input.keys():
        flags.append(f"--start-from {os.path.dirname(input.previous[0])}")
    return " ".join(flags)


# --- risk (risk.smk) --------------------------------------------------------

def probe_negative_pools(model):
    """Benign prompts the harm probe learns as safe: benign requests and tasks, and in the toy world
    also the general questions, so an open question is not read as risky for being unlike a task."""
    pools = ["benign_requests", "tasks"]
    return pools + ["general_questions"] if config["models"][model]["source"] == "toy" else pools


def persona_questions(model):
    """General questions the persona vector is measured on, unless risk.persona.questions lists its own:
    the toy world's trained phrasings (never the held-out ones evaluation asks); a real model's general
    eval file (its only general questions)."""
    if "questions" in config["risk"]["persona"]:
        return []
    if config["models"][model]["source"] == "toy":
        return f"results/{model}/world/pools/general_questions.jsonl"
    return f"results/{model}/world/eval/general.jsonl"


PROBE_TEST_SETS = ["harmful_heldout_objects", "harmful_heldout_templates", "benign"]


def probe_test_sets(model):
    """Held-out harmful and benign requests: the toy world's held-out splits, or a real model's
    request-format eval files."""
    spec = config["models"][model]
    if spec["source"] == "toy":
        return PROBE_TEST_SETS
    return plain_request_sets(spec.get("data", {}).get("eval", {}))


# --- report (report.smk) ----------------------------------------------------

REPORT = config.get("report", {})


REPORT_MODEL = report_model(config)


STUDIES = list(config["studies"])


def largest_budget(study):
    """A study's largest budget among its runs, by size as the claims' `budget: largest` reads it
    (not the last listed: a study may list budgets in any order, and extra cells add theirs)."""
    budgets = {r["budget"] for r in study_runs(config, study)}
    return max(budgets, key=budget_order(config["budgets"]))


def study_subjects(study, view=""):
    """Run folders of a study, and the reference of each of its models (the baseline cell). View
    "@largest": only the runs at the study's largest budget (a cell's interval depends on its own
    runs only, so its rows equal the whole study's rows of those cells)."""
    runs = study_runs(config, study)
    if view == "@largest":
        largest = largest_budget(study)
        runs = [r for r in runs if r["budget"] == largest]
    return [run_dir(r) for r in runs] + [reference_dir(*key) for key in dict.fromkeys((r["model"], r["reference"])
                                                                                      for r in runs)]


def study_order(study):
    """Row and bar order of a study's tables and figures: its own lists (a reordering of the config's
    variant mappings changes nothing), extra cells after the grid."""
    s = config["studies"][study]
    order = {axis: list(s[f"{axis}s"]) for axis in ("scenario", "objective", "defense", "budget")}
    variants = list(dict.fromkeys(r["reference"] for r in study_runs(config, study)))
    if variants != [DEFAULT_REFERENCE]:  # only then do its tables have a reference column
        order = {"reference": list(dict.fromkeys([*study_references(config, study), *variants])), **order}
    for cell in s.get("extra", []):
        for axis, name in zip(("scenario", "objective", "defense", "budget"), cell):
            if name not in order[axis]:
                order[axis].append(name)
    return order


def figure_studies(figure):
    """{role: study} a figure draws (report.cells: chosen by the cells it compares), or None without one."""
    return select_studies(config, FIGURES[figure].roles)


def table_study(table):
    """The study a table shows (report.cells), or None."""
    return select_study(config, TABLES[table]["cells"])


def figure_extra(figure):
    """Figure inputs beyond study tables, as its spec declares: lambda traces, probe table, critic summaries."""
    m = REPORT_MODEL
    extra = {}
    if "lambda_traces" in FIGURES[figure].extra:
        # one run per defense of the compared defenses; the figure plots the logs that carry lambda_mean
        study = figure_studies(figure)["defense"]
        s = config["studies"][study]
        scenario = "harmful" if "harmful" in s["scenarios"] else s["scenarios"][0]
        seed = (s.get("seeds") or config["seeds"])[0]
        axes = {"model": m, "scenario": scenario, "objective": s["objectives"][0], "budget": largest_budget(study), "seed": seed}
        extra["traces"] = {f"{d} ({scenario}, seed {seed})": f"{run_dir({**axes, 'defense': d})}/train_log.jsonl"
                           for d in s["defenses"]}
    if "probe" in FIGURES[figure].extra:
        extra["probe_table"] = f"results/{m}/risk/probe_auroc.csv"
        scenarios = sorted({sc for st in config["studies"].values() for sc in st["scenarios"]})
        extra["critic"] = {sc: f"results/{m}/risk/critic/{sc}.json" for sc in scenarios}
    return extra


def extra_files(extra):
    files = []
    for v in extra.values():
        files += list(v.values()) if isinstance(v, dict) else [v]
    return files


def figure_settings(figure):
    """Figure settings from the config that are no files, as its spec declares: the poison ratio of
    each scenario of its sweep role (scenarios.<name>.poison_ratio)."""
    settings = {}
    if "poison_ratio" in FIGURES[figure].extra:
        scenarios = {sc for study in figure_studies(figure).values() for sc in config["studies"][study]["scenarios"]}
        settings["poison_ratio"] = {sc: config["scenarios"][sc]["poison_ratio"] for sc in sorted(scenarios)}
    return settings


def figure_study_tables(figure):
    """{role: study table} a figure reads: the whole study, or its largest-budget view where the
    figure draws only that budget (Figure.budgets)."""
    view = "@largest" if FIGURES[figure].budgets == "largest" else ""
    return {role: f"results/studies/{s}{view}.csv" for role, s in figure_studies(figure).items()}


def figure_inputs(wc):
    return {"code": sources("report.figures"), "studies": list(figure_study_tables(wc.figure).values()),
            "extra": extra_files(figure_extra(wc.figure))}


def figure_args(wc):
    args = [f"--study {role}={table}" for role, table in figure_study_tables(wc.figure).items()]
    extra = {**figure_extra(wc.figure), **figure_settings(wc.figure)}
    args.append(f"--extra {shlex.quote(json.dumps(extra, sort_keys=True))}")
    return " ".join(args)


JUDGE_VALIDATION = config["evaluation"]["judge_validation"]


# An eval judge below its validation targets fails the validation job, unless the config accepts it;
# then the study tables read the validation summary and carry a footnote.
ACCEPT_BELOW_TARGETS = JUDGE_VALIDATION.get("accept_below_targets", False)


LABELLED_VALIDATION = JUDGE_VALIDATION.get("labelled", str(PACKAGED_LABELLED))


def validation_settings(enforce):
    e = config["evaluation"]
    v = JUDGE_VALIDATION
    return {"accuracy_min": v["accuracy_min"], "harmful_recall_min": v["harmful_recall_min"],
            **{k: v.get(k, default) for k, default in RARE_RECALL_DEFAULTS.items()},
            "max_unscored": e["max_unscored"], "thresholds": e["thresholds"], "enforce": enforce}


def eval_judge_validation():
    """The eval judge's validation summary: against the oracle when there is a toy model, else on the
    labelled file (real formats)."""
    return "tables/judge_validation.json" if TOY_MODELS else f"tables/judge_validation_{config['judge']['eval']}.json"


def labelled_validation_enforced(judge):
    """The labelled validation fails below its targets only where it is the study's (real models) eval judge."""
    return not TOY_MODELS and judge == config["judge"]["eval"] and not ACCEPT_BELOW_TARGETS


def validation_subjects():
    """The reference and every attacked run of the toy models (the oracle knows only the toy world)."""
    subjects = [f"results/{m}/reference" for m in TOY_MODELS]
    subjects += [run_dir(r) for r in all_runs_of(TOY_MODELS)]
    return subjects


def all_runs_of(models):
    return [r for r in all_runs(config) if r["model"] in models]


# --- claims (report.smk) ----------------------------------------------------


def claims_model(tag):
    return tag[1:] if tag else REPORT_MODEL


def claims_plan(model):
    from safedrift.report.claims import plan

    return plan(config, model)


def claims_files(model):
    from safedrift.report.claims import needed_files

    return needed_files(claims_plan(model), model)
