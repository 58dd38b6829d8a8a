# Evaluation: generation for every subject (the reference model or a fine-tuned run).
# A subject folder is a reference (results/{model}/reference, or .../reference/<variant>) or a run
# (results/{model}/runs/.../seed{n}, or runs@<variant>/...): safedrift.config's layout.


wildcard_constraints:
    subject=subject_pattern(REFERENCES),


rule generate:
    conda:
        CONDA_ENV
    input:
        sources("evaluate.generate"),
        subject_model,
        eval_sets=lambda wc: expand("results/{model}/world/eval/{name}.jsonl", model=wc.model,
                                    name=eval_set_names(wc.model)),
        checked=real_overlap_checked,
        persona="results/{model}/risk/persona_vector.safetensors",
    output:
        "results/{model}/{subject}/eval/generations.jsonl",
    params:
        settings=lambda wc: generation_settings(wc.model),
        model=subject_model_path,
        load=lambda wc: load_flags(wc.model),
    threads: 1
    benchmark:
        "logs/benchmarks/generate/{model}/{subject}.tsv"
    log:
        "logs/{model}/{subject}/generate.log",
    shell:
        "python -m safedrift evaluate.generate --model {params.model} --eval-dir results/{wildcards.model}/world/eval"
        " --settings {params.settings:q} {params.load} --persona-vector {input.persona}"
        " --out {output} --threads {threads} > {log} 2>&1"


# --- judges: a judge change rescores without regenerating --------------------------------------


rule train_classifier:
    conda:
        CONDA_ENV
    input:
        sources("judges.train_classifier"),
    output:
        "results/{toy}/judges/{judge}.json",
    wildcard_constraints:
        judge=alternation(CLASSIFIER_JUDGES),
    params:
        world=world_params("spec"),
        settings=lambda wc: canonical(config["judges"][wc.judge]),
    benchmark:
        "logs/benchmarks/train_classifier/{toy}/{judge}.tsv"
    log:
        "logs/{toy}/judges/{judge}.log",
    shell:
        "python -m safedrift judges.train_classifier --world-settings {params.world:q} --settings {params.settings:q}"
        " --out {output} > {log} 2>&1"


rule judge_score:
    conda:
        CONDA_ENV
    input:
        unpack(lambda wc: judge_inputs(wc.model, wc.judge)),
        generations="results/{model}/{subject}/eval/generations.jsonl",
    output:
        "results/{model}/{subject}/eval/scores/{judge}.parquet",
    wildcard_constraints:
        judge=alternation(list(config["judges"])),
    params:
        flags=lambda wc: judge_flags(wc.model, wc.judge),
    threads: 1
    benchmark:
        "logs/benchmarks/judge_score/{model}/{subject}/{judge}.tsv"
    log:
        "logs/{model}/{subject}/judge_{judge}.log",
    shell:
        "python -m safedrift judges.score {params.flags} --generations {input.generations}"
        " --eval-dir results/{wildcards.model}/world/eval --out {output} --threads {threads} > {log} 2>&1"


rule metrics:
    conda:
        CONDA_ENV
    input:
        unpack(metrics_inputs),
    output:
        metrics="results/{model}/{subject}/eval/metrics.json",
        rows="results/{model}/{subject}/eval/metrics_rows.parquet",
    params:
        settings=metrics_settings(),
        judge=config["judge"]["eval"],
        secondary=lambda wc, input: " ".join(f"{j}={p}" for j, p in zip(secondary_judges(), input.secondary)),
        refusal_only=" ".join(j for j in secondary_judges() if judge_class_of(j).refusal_only),
        scored=scored_flags(),
        reference=lambda wc, input: f"--reference-generations {input.reference}" if "reference" in input.keys() else "",
    benchmark:
        "logs/benchmarks/metrics/{model}/{subject}.tsv"
    log:
        "logs/{model}/{subject}/metrics.log",
    shell:
        "python -m safedrift evaluate.metrics --generations {input.generations} --scores {input.scores}"
        " --judge {params.judge} --secondary {params.secondary} --refusal-only {params.refusal_only} --scored {params.scored}"
        " {params.reference} --eval-dir results/{wildcards.model}/world/eval"
        " --settings {params.settings:q} --out {output.metrics} > {log} 2>&1"
