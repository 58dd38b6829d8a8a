# Studies, figures and tables: aggregation across seeds, then drawing. All local, light jobs.


wildcard_constraints:
    study=alternation(STUDIES),
    figure=alternation([f for f in FIGURES if figure_studies(f) is not None]),
    table=alternation([t for t in TABLES if table_study(t)]),


# a token budget's steps differ per scenario: its rows show "–"
AGGREGATE_SETTINGS = canonical({"bootstrap": config["evaluation"]["bootstrap"],
                                "steps": {b: v.get("steps") for b, v in config["budgets"].items()}})


rule aggregate:
    conda:
        CONDA_ENV
    input:
        code=sources("report.aggregate"),
        rows=lambda wc: [f"{d}/eval/metrics_rows.parquet" for d in study_subjects(wc.study)],
    output:
        table="results/studies/{study}.csv",
        seeds="results/studies/{study}_seeds.csv",
    params:
        runs=lambda wc: " ".join(study_subjects(wc.study)),
        settings=AGGREGATE_SETTINGS,
        order=lambda wc: canonical(study_order(wc.study)),
    log:
        "logs/report/aggregate_{study}.log",
    shell:
        "python -m safedrift report.aggregate --runs {params.runs} --settings {params.settings:q} --order {params.order:q}"
        " --out {output.table} > {log} 2>&1"


# The largest-budget view of a study (figures that draw that budget only read it: Figure.budgets).
# `with: input:` replaces the input whole, so the code input is listed again.
use rule aggregate as aggregate_largest with:
    input:
        code=sources("report.aggregate"),
        rows=lambda wc: [f"{d}/eval/metrics_rows.parquet" for d in study_subjects(wc.study, "@largest")],
    output:
        table="results/studies/{study}@largest.csv",
        seeds="results/studies/{study}@largest_seeds.csv",
    params:
        runs=lambda wc: " ".join(study_subjects(wc.study, "@largest")),
        settings=AGGREGATE_SETTINGS,
        order=lambda wc: canonical(study_order(wc.study)),
    log:
        "logs/report/aggregate_{study}@largest.log",


rule figure:
    conda:
        CONDA_ENV
    input:
        unpack(figure_inputs),
    output:
        report("figures/{figure}.pdf", caption="../report/figures.rst", category="Figures"),
    params:
        args=figure_args,
        model=REPORT_MODEL,
        dpi=REPORT.get("dpi", 150),
    log:
        "logs/report/figure_{figure}.log",
    shell:
        "python -m safedrift report.figures --figure {wildcards.figure} {params.args} --model {params.model}"
        " --dpi {params.dpi} --out {output} > {log} 2>&1"


rule docs_figure:
    """PNG renders for the README (docs/figures/*.png): `snakemake --cores 2 docs`."""
    conda:
        CONDA_ENV
    input:
        unpack(figure_inputs),
    output:
        "docs/figures/{figure}.png",
    params:
        args=figure_args,
        model=REPORT_MODEL,
    log:
        "logs/report/docs_{figure}.log",
    shell:
        "python -m safedrift report.figures --figure {wildcards.figure} {params.args} --model {params.model}"
        " --dpi 110 --out {output} > {log} 2>&1"


rule study_table:
    conda:
        CONDA_ENV
    input:
        code=sources("report.study_tables"),
        table=lambda wc: f"results/studies/{table_study(wc.table)}.csv",
        validation=[eval_judge_validation()] if ACCEPT_BELOW_TARGETS else [],
    output:
        report(multiext("tables/{table}", ".csv", ".md", ".tex"), caption="../report/tables.rst", category="Tables"),
    params:
        seeds=lambda wc: len(config["studies"][table_study(wc.table)].get("seeds") or config["seeds"]),
        confidence=config["evaluation"]["bootstrap"]["confidence"],
        validation=f"--judge-validation {eval_judge_validation()}" if ACCEPT_BELOW_TARGETS else "",
    log:
        "logs/report/table_{table}.log",
    shell:
        "python -m safedrift report.study_tables --study {wildcards.table} --table {input.table} --seeds {params.seeds}"
        " --confidence {params.confidence}"
        " {params.validation} --out tables/{wildcards.table} > {log} 2>&1"


rule judge_validation:
    conda:
        CONDA_ENV
    input:
        code=sources("evaluate.judge_validation"),
        scores=[f"{s}/eval/scores/{config['judge']['eval']}.parquet" for s in validation_subjects()],
    output:
        report(multiext("tables/judge_validation", ".csv", ".md", ".tex"), caption="../report/tables.rst",
               category="Tables"),
        "tables/judge_validation.json",
    params:
        subjects=" ".join(f"{s}/eval" for s in validation_subjects()),
        model=TOY_MODELS[0] if TOY_MODELS else "",
        judge=config["judge"]["eval"],
        scored=" ".join(["--scored", *columns]) if (columns := partly_scored(config["judge"]["eval"])) else "",
        settings=canonical({**validation_settings(enforce=not ACCEPT_BELOW_TARGETS),
                            "per_run": JUDGE_VALIDATION.get("per_run"), "seed": config["evaluation"].get("seed", 0)}),
    log:
        "logs/report/judge_validation.log",
    shell:
        "python -m safedrift evaluate.judge_validation --subjects {params.subjects} --judge {params.judge}"
        " --eval-dir results/{params.model}/world/eval --settings {params.settings:q}"
        " --out tables/judge_validation {params.scored} > {log} 2>&1"


rule labelled_judge_validation:
    """Any judge against the labelled file in the real formats (evaluation.judge_validation.labelled, default the
    packaged one), in the context of report.model (its reference model, its classifier): validate a judge before a
    study with `snakemake tables/judge_validation_<judge>.md`."""
    conda:
        CONDA_ENV
    input:
        unpack(lambda wc: judge_inputs(REPORT_MODEL, wc.judge)),
        stage=sources("evaluate.labelled_validation"),
        labelled=LABELLED_VALIDATION,
    output:
        multiext("tables/judge_validation_{judge}", ".csv", ".md", ".tex", ".json"),
    wildcard_constraints:
        judge=alternation(list(config["judges"])),
    params:
        flags=lambda wc: judge_flags(REPORT_MODEL, wc.judge),
        validation=lambda wc: canonical(validation_settings(enforce=labelled_validation_enforced(wc.judge))),
    threads: 1
    log:
        "logs/report/judge_validation_{judge}.log",
    shell:
        "python -m safedrift evaluate.labelled_validation {params.flags} --labelled {input.labelled}"
        " --validation {params.validation:q} --threads {threads} --out tables/judge_validation_{wildcards.judge}"
        " > {log} 2>&1"


REFERENCE_CARDS = " ".join(f"--card {m}=results/{m}/reference/card.json" for m in TOY_MODELS)


rule reference_figure:
    conda:
        CONDA_ENV
    input:
        sources("report.reference"),
        cards=expand("results/{model}/reference/card.json", model=TOY_MODELS),
    output:
        report("figures/reference.pdf", caption="../report/reference.rst", category="Figures"),
    params:
        cards=REFERENCE_CARDS,
        dpi=REPORT.get("dpi", 150),
    log:
        "logs/report/reference.log",
    shell:
        "python -m safedrift report.reference {params.cards} --out {output} --dpi {params.dpi} > {log} 2>&1"


# The README's render of the card (`snakemake docs`), as docs_figure renders the figures of FIGURES.
use rule reference_figure as reference_render with:
    output:
        "docs/figures/reference.png",
    params:
        cards=REFERENCE_CARDS,
        dpi=110,
    log:
        "logs/report/docs_reference.log",


# --- claims: the papers' headline claims as tests on this config's runs ----------------------------


wildcard_constraints:
    tag=r"(_(?!robustness\b)[a-z][a-z0-9_]*)?",  # tables/claims_robustness.* is robustness_table's


rule claims:
    """tables/claims.* and figures/claims.pdf for the report model; tables/claims_<model>.* for another."""
    conda:
        CONDA_ENV
    input:
        code=sources("report.scorecard"),
        files=lambda wc: claims_files(claims_model(wc.tag)),
    output:
        report(multiext("tables/claims{tag}", ".csv", ".md", ".tex"), caption="../report/tables.rst", category="Tables"),
        figure=report("figures/claims{tag}.pdf", caption="../report/claims.rst", category="Figures"),
        render="figures/claims{tag}.png",
    params:
        plan=lambda wc: canonical(claims_plan(claims_model(wc.tag))),
        claims=canonical(config.get("claims", {})),
        bootstrap=canonical(config["evaluation"]["bootstrap"]),
        model=lambda wc: claims_model(wc.tag),
        dpi=REPORT.get("dpi", 150),
        max_unscored=config["evaluation"]["max_unscored"],
    log:
        "logs/report/claims{tag}.log",
    shell:
        "python -m safedrift report.scorecard --plan {params.plan:q} --claims {params.claims:q} --model {params.model}"
        " --bootstrap {params.bootstrap:q} --out tables/claims{wildcards.tag} --figure {output.figure} {output.render}"
        " --dpi {params.dpi} --max-unscored {params.max_unscored} > {log} 2>&1"


# The README's render of the scorecard (`snakemake docs`): a copy, so that running `all` on another
# config (smoke, a real model, a paper preset) does not replace the committed image.
rule claims_render:
    conda:
        CONDA_ENV
    input:
        "figures/claims.png",
    output:
        "docs/figures/claims.png",
    log:
        "logs/report/docs_claims.log",
    shell:
        "cp {input} {output} > {log} 2>&1"


rule robustness_table:
    """tables/claims_robustness.*: every claim's verdict on each draw of the toy world."""
    conda:
        CONDA_ENV
    input:
        code=sources("report.robustness"),
        default="tables/claims.csv",
        others=expand("tables/claims_{model}.csv", model=ROBUSTNESS_MODELS),
    output:
        multiext("tables/claims_robustness", ".csv", ".md", ".tex"),
    params:
        cards=" ".join(
            [f"--scorecard {draw_label(config, REPORT_MODEL)}=tables/claims.csv"]
            + [f"--scorecard {draw_label(config, m)}=tables/claims_{m}.csv" for m in ROBUSTNESS_MODELS]),
    log:
        "logs/report/claims_robustness.log",
    shell:
        "python -m safedrift report.robustness {params.cards} --out tables/claims_robustness > {log} 2>&1"
