# safedrift: how fine-tuning moves a model's safety, and what holds it.
# `snakemake --cores 2 figures/asr.pdf` on the embedded toy world; see README.md.

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from safedrift.errors import SafedriftError
from safedrift.pipeline import prepare_job_environment
from safedrift.snakemake_hooks import drop_local_job_rate_limit

try:
    prepare_job_environment(Path(workflow.basedir) / "src")
except SafedriftError as e:  # a bad SAFEDRIFT_CPU_PIN
    sys.exit(f"safedrift: {e}")
from safedrift import zygote
from safedrift.config import ConfigError, check_paths, load, validate
from safedrift.report.claims import check as check_claims


# A --configfile replaces config.yaml rather than being merged into it: a key missing from the
# user's config must fail validation, not be filled in silently from the default.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"



# Snakemake has read the config files with a YAML loader that keeps the last of two equal keys;
# reading them again with ours makes a duplicated key an error. Then the config itself, then the
# files and model folders it names: all before any job.
try:
    for path in workflow.configfiles:
        load(path)
    validate(config)
    check_claims(config)
    check_paths(config)
except ConfigError as e:
    sys.exit(f"safedrift: {e}")


# Local runs: jobs with one thread fork from a server that imported torch & co. once, saving ~6 s
# of imports per job with byte-identical results (src/safedrift/zygote.py; SAFEDRIFT_ZYGOTE=0 turns
# it off). Cluster and conda jobs run in their own processes. And no job-rate limiter: Snakemake's
# default one re-runs its scheduler on ever more timers and takes a core from the jobs
# (snakemake_hooks.drop_local_job_rate_limit).
onstart:
    if drop_local_job_rate_limit(workflow):
        print("safedrift: local run without Snakemake's job-rate limiter (its timers would take a core)", file=sys.stderr)
    if workflow.local_exec and not workflow.deployment_settings.deployment_method:
        zygote.start_for_workflow(threads=[1])


onsuccess:
    zygote.stop_for_workflow()


onerror:
    zygote.stop_for_workflow()


include: "workflow/rules/common.smk"
include: "workflow/rules/real.smk"
include: "workflow/rules/world.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/risk.smk"
include: "workflow/rules/report.smk"


# Figures and tables whose cells some study has (report.cells), whatever the studies are called.
FIGURE_TARGETS = [f"figures/{name}.pdf" for name in FIGURES
                  if figure_studies(name) is not None and (name != "probe_auroc" or TOY_MODELS)]
TABLE_TARGETS = [f"tables/{t}.{ext}" for t in TABLES if table_study(t) for ext in ("csv", "md", "tex")]
# The eval judge's validation: against the world oracle with a toy model, else on the labelled file.
TABLE_TARGETS += [eval_judge_validation().replace(".json", f".{ext}") for ext in ("csv", "md", "tex")]
CLAIM_TARGETS = [f"tables/claims.{ext}" for ext in ("csv", "md", "tex")] + ["figures/claims.pdf"] if config.get("claims") else []

# Light jobs run by Snakemake itself, never submitted to a cluster: aggregation and plotting, and the
# toy world's seconds-long pure-Python products (world data, tokenizer, reference card), which would
# otherwise each wait in the cluster's queue and its status polling longer than they run.
localrules: all, fetch_data, docs, aggregate, figure, docs_figure, study_table, judge_validation, reference_figure, reference_render, metrics, claims, claims_render, robustness, robustness_table,
    world_corpus, world_alignment, world_eval_sets, world_pools, world_spec, tokenizer, reference_card


ALL_TARGETS = [
    *[f"results/{m}/reference/card.json" for m in TOY_MODELS],
    *(["figures/reference.pdf"] if TOY_MODELS else []),
    *CLAIM_TARGETS,
    *FIGURE_TARGETS,
    *TABLE_TARGETS,
]


rule all:
    default_target: True
    input:
        ALL_TARGETS,


# The README's results blocks (report.readme): name -> (renderer, file). A block is one line here
# plus its marker pair in README.md; one whose file is not a target of `all` in this config is
# left as it is.
README_BLOCKS = {
    "reference_gates": ("reference_card", f"results/{REPORT_MODEL}/reference/card.json"),
    "objectives": ("markdown", "tables/objectives.md"),
    "adaptive": ("markdown", "tables/adaptive.md"),
    "ema_defenses": ("markdown", "tables/ema_defenses.md"),
    "judge_validation": ("markdown", "tables/judge_validation.md"),
    "claims": ("markdown", "tables/claims.md"),
    "claims_robustness": ("markdown", "tables/claims_robustness.md"),
}
# The robustness block needs the claims on other draws of the world (`robustness.world_seeds`, `training_seeds`).
ROBUSTNESS_TARGETS = ["tables/claims_robustness.md"] if ROBUSTNESS_MODELS and config.get("claims") else []
README_BLOCKS = {name: block for name, block in README_BLOCKS.items() if block[1] in ALL_TARGETS + ROBUSTNESS_TARGETS}


rule robustness:
    """The claims on other draws of the toy world (`robustness.world_seeds`, `robustness.training_seeds`):
    tables/claims_robustness.md."""
    input:
        "tables/claims_robustness.md",


rule docs:
    """The README's figure renders (docs/figures/*.png) and its results blocks, from the current results
    (the run_times block: from Snakemake's run logs of this config and logs/benchmarks)."""
    conda:
        "envs/safedrift.yaml"  # CONDA_ENV is relative to workflow/rules/; this rule lives beside the Snakefile
    input:
        [f.replace("figures/", "docs/figures/").replace(".pdf", ".png") for f in FIGURE_TARGETS],
        ["docs/figures/claims.png"] if CLAIM_TARGETS else [],
        ["docs/figures/reference.png"] if "figures/reference.pdf" in ALL_TARGETS else [],
        sources("report.readme"),
        blocks=[path for _, path in README_BLOCKS.values()],
    params:
        blocks=" ".join(f"--block {name}={renderer}:{path}" for name, (renderer, path) in README_BLOCKS.items()),
        config_files=" ".join(shlex.quote(os.path.relpath(f)) for f in workflow.configfiles),
        config_sha256=hashlib.sha256(canonical(config).encode()).hexdigest(),
        # Snakemake's own digest of the config, as its run logs' headers name it (Workflow.info_header)
        config_md5=hashlib.md5(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        model=REPORT_MODEL,
    log:
        "logs/report/readme.log",
    shell:
        "python -m safedrift report.readme --readme README.md {params.blocks} --config-files {params.config_files}"
        " --config-sha256 {params.config_sha256} --run-times logs --config-md5 {params.config_md5}"
        " --model {params.model} > {log} 2>&1"
