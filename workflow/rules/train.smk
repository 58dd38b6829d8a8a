# Fine-tuning: scenario datasets, reference responses (for preference pairs), one job per run.


wildcard_constraints:
    scenario=alternation(list(config["scenarios"])),
    objective=alternation(list(config["objectives"])),
    defense=alternation(list(config["defenses"])),
    budget=alternation(list(config["budgets"])),


rule scenario_data:
    conda:
        CONDA_ENV
    input:
        sources("data.scenarios"),
        pools=lambda wc: expand("results/{model}/world/pools/{pool}.jsonl", model=wc.model,
                                pool=pools_needed(scenario_settings(wc.scenario))),
        checked=real_overlap_checked,
    output:
        "results/{model}/data/{scenario}.jsonl",
    params:
        settings=lambda wc: canonical(scenario_settings(wc.scenario)),
    log:
        "logs/{model}/data/{scenario}.log",
    shell:
        "python -m safedrift data.scenarios --settings {params.settings:q} --pools-dir results/{wildcards.model}/world/pools"
        " --out {output} > {log} 2>&1"


rule reference_responses:
    conda:
        CONDA_ENV
    input:
        sources("data.reference_responses"),
        lambda wc: reference_files(wc.model),
        data="results/{model}/data/{scenario}.jsonl",
    output:
        "results/{model}/data/{scenario}.reference.jsonl",
    params:
        model=lambda wc: reference_path(wc.model),
        load=lambda wc: load_flags(wc.model),
        max_new_tokens=lambda wc: config["preference_pairs"]["max_new_tokens"],
    threads: 1
    benchmark:
        "logs/benchmarks/reference_responses/{model}/{scenario}.tsv"
    log:
        "logs/{model}/data/{scenario}.reference.log",
    shell:
        "python -m safedrift data.reference_responses --model {params.model} --data {input.data} --out {output}"
        " --max-new-tokens {params.max_new_tokens} {params.load} --threads {threads} > {log} 2>&1"


rule reference_logprobs:
    # once per reference and scenario: the reference's completion log-probs every KL run reads
    conda:
        CONDA_ENV
    input:
        sources("finetune.reference_logprobs"),
        lambda wc: reference_files(wc.model, wc.reference),
        unpack(lambda wc: chat_template_input(wc.model)),
        data="results/{model}/data/{scenario}.jsonl",
    output:
        "results/{model}/reference_logprobs/{reference}/{scenario}.safetensors",
    wildcard_constraints:
        reference=alternation(REFERENCES),
    params:
        settings=lambda wc: canonical(reference_logprobs_settings(wc.model)),
        reference=lambda wc: reference_path(wc.model, wc.reference),
    threads: 1
    benchmark:
        "logs/benchmarks/reference_logprobs/{model}/{reference}/{scenario}.tsv"
    log:
        "logs/{model}/reference_logprobs/{reference}/{scenario}.log",
    shell:
        "python -m safedrift finetune.reference_logprobs --model-settings {params.settings:q} --scenario {wildcards.scenario}"
        " --data {input.data} --reference {params.reference} --out {output} --threads {threads} > {log} 2>&1"


rule finetune:
    conda:
        CONDA_ENV
    input:
        unpack(finetune_inputs),
    output:
        model=directory(os.path.join(RUN, "model")),
        log_jsonl=os.path.join(RUN, "train_log.jsonl"),
        card=os.path.join(RUN, "run_card.json"),
        state=directory(os.path.join(RUN, "state")),
    params:
        settings=lambda wc: canonical(run_of(wc)),
        reference=lambda wc: reference_path(wc.model, reference_of_runs_folder(wc.runs)),
        flags=finetune_flags,
        run=RUN,
    threads: 1
    resources:
        # how often a job saves resumable state: an execution setting, not a param, so changing it
        # (say, for preemptible nodes) retrains nothing
        checkpoint_every=lambda wc: config["models"][wc.model]["finetune"].get("checkpoint_every", 0),
    benchmark:
        os.path.join("logs/benchmarks/finetune", RUN_ID + ".tsv")
    log:
        os.path.join("logs", RUN_ID, "finetune.log"),
    shell:
        "python -m safedrift finetune.run --settings {params.settings:q} --data {input.data} --reference {params.reference}"
        " --out {params.run} {params.flags} --checkpoint-every {resources.checkpoint_every} --threads {threads}"
        " > {log} 2>&1"
