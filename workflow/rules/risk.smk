# Risk estimators and directions, computed once per model on its reference.


rule persona_vector:
    conda:
        CONDA_ENV
    input:
        sources("risk.persona"),
        lambda wc: reference_files(wc.model),
        questions=lambda wc: persona_questions(wc.model),
    output:
        vector="results/{model}/risk/persona_vector.safetensors",
        summary="results/{model}/risk/persona_vector.json",
    params:
        model=lambda wc: reference_path(wc.model),
        load=lambda wc: load_flags(wc.model),
        persona=lambda wc: canonical(persona_prompts(config, wc.model)),
        questions=lambda wc: f"--questions {persona_questions(wc.model)}" if persona_questions(wc.model) else "",
        samples=config["risk"]["persona"].get("samples", 4),
        max_new_tokens=config["risk"]["persona"]["max_new_tokens"],
    threads: 1
    benchmark:
        "logs/benchmarks/persona_vector/{model}.tsv"
    log:
        "logs/{model}/risk/persona_vector.log",
    shell:
        "python -m safedrift risk.persona --model {params.model} {params.load} --settings {params.persona:q}"
        " {params.questions} --samples {params.samples} --max-new-tokens {params.max_new_tokens} --out {output.vector} --threads {threads} > {log} 2>&1"


rule probe:
    conda:
        CONDA_ENV
    input:
        sources("risk.probe"),
        lambda wc: reference_files(wc.model),
        harmful="results/{model}/world/pools/harmful.jsonl",
        benign=lambda wc: expand("results/{model}/world/pools/{pool}.jsonl", model=wc.model,
                                 pool=probe_negative_pools(wc.model)),
        checked=real_overlap_checked,
    output:
        probe="results/{model}/risk/probe.json",
        layers="results/{model}/risk/probe_layers.json",
    params:
        model=lambda wc: reference_path(wc.model),
        load=lambda wc: load_flags(wc.model),
        settings=canonical(config["risk"]["probe"]),
    threads: 1
    benchmark:
        "logs/benchmarks/probe/{model}.tsv"
    log:
        "logs/{model}/risk/probe.log",
    shell:
        "python -m safedrift risk.probe --model {params.model} {params.load} --harmful {input.harmful}"
        " --benign {input.benign} --settings {params.settings:q} --out {output.probe} --layers-out {output.layers}"
        " --threads {threads} > {log} 2>&1"


# The probe's test AUROC on held-out requests, apart from rule probe: an eval-set edit re-tests the
# probe and retrains no adaptive_probe run.
rule probe_test:
    conda:
        CONDA_ENV
    input:
        sources("risk.probe_test"),
        lambda wc: reference_files(wc.model),
        layers="results/{model}/risk/probe_layers.json",
        test=lambda wc: expand("results/{model}/world/eval/{name}.jsonl", model=wc.model,
                               name=probe_test_sets(wc.model)),
        checked=real_overlap_checked,
    output:
        table="results/{model}/risk/probe_auroc.csv",
        summary="results/{model}/risk/probe_test.json",
    params:
        model=lambda wc: reference_path(wc.model),
        load=lambda wc: load_flags(wc.model),
    threads: 1
    benchmark:
        "logs/benchmarks/probe_test/{model}.tsv"
    log:
        "logs/{model}/risk/probe_test.log",
    shell:
        "python -m safedrift risk.probe_test --model {params.model} {params.load} --layers {input.layers}"
        " --test {input.test} --table {output.table} --out {output.summary} --threads {threads} > {log} 2>&1"


rule probe_scores:
    conda:
        CONDA_ENV
    input:
        sources("risk.probe_scores"),
        probe="results/{model}/risk/probe.json",
        data="results/{model}/data/{scenario}.jsonl",
    output:
        "results/{model}/risk/probe/{scenario}.jsonl",
    params:
        model=lambda wc: reference_path(wc.model),
        load=lambda wc: load_flags(wc.model),
    threads: 1
    benchmark:
        "logs/benchmarks/probe_scores/{model}/{scenario}.tsv"
    log:
        "logs/{model}/risk/probe_{scenario}.log",
    shell:
        "python -m safedrift risk.probe_scores --model {params.model} {params.load} --probe {input.probe}"
        " --data {input.data} --out {output} --threads {threads} > {log} 2>&1"


rule critic:
    conda:
        CONDA_ENV
    input:
        unpack(lambda wc: judge_inputs(wc.model, config["judge"]["critic"])),
        stage=sources("risk.critic"),
        data="results/{model}/data/{scenario}.jsonl",
    output:
        risk="results/{model}/risk/critic/{scenario}.jsonl",
        summary="results/{model}/risk/critic/{scenario}.json",
    params:
        flags=lambda wc: judge_flags(wc.model, config["judge"]["critic"]),
        labels=lambda wc: "--oracle" if config["models"][wc.model]["source"] == "toy" else "--pool-labels",
        on_unscored=config["risk"].get("critic", {}).get("on_unscored", "fail"),
    benchmark:
        "logs/benchmarks/critic/{model}/{scenario}.tsv"
    log:
        "logs/{model}/risk/critic_{scenario}.log",
    shell:
        "python -m safedrift risk.critic {params.flags} {params.labels} --on-unscored {params.on_unscored}"
        " --data {input.data} --out {output.risk} > {log} 2>&1"
