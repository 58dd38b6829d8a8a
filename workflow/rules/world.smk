# The embedded toy world: data products, tokenizer, pretraining, alignment, reference card.
# Only models with `source: toy` use these rules.


rule world_corpus:
    conda:
        CONDA_ENV
    input:
        sources("world.splits"),
    output:
        "results/{toy}/world/pretrain.jsonl",
    params:
        settings=world_params("corpus"),
    log:
        "logs/{toy}/world/corpus.log",
    shell:
        "python -m safedrift world.splits --product corpus --settings {params.settings:q} --out results/{wildcards.toy}/world > {log} 2>&1"


rule world_alignment:
    conda:
        CONDA_ENV
    input:
        sources("world.splits"),
    output:
        "results/{toy}/world/align.jsonl",
    params:
        settings=world_params("alignment"),
    log:
        "logs/{toy}/world/alignment.log",
    shell:
        "python -m safedrift world.splits --product alignment --settings {params.settings:q} --out results/{wildcards.toy}/world > {log} 2>&1"


rule world_eval_sets:
    conda:
        CONDA_ENV
    input:
        sources("world.splits"),
    output:
        expand("results/{{toy}}/world/eval/{name}.jsonl", name=EVAL_SETS),
    params:
        settings=world_params("eval"),
    log:
        "logs/{toy}/world/eval.log",
    shell:
        "python -m safedrift world.splits --product eval --settings {params.settings:q} --out results/{wildcards.toy}/world > {log} 2>&1"


rule world_pools:
    conda:
        CONDA_ENV
    input:
        sources("world.splits"),
    output:
        expand("results/{{toy}}/world/pools/{name}.jsonl", name=POOLS),
    params:
        settings=world_params("pools"),
    log:
        "logs/{toy}/world/pools.log",
    shell:
        "python -m safedrift world.splits --product pools --settings {params.settings:q} --out results/{wildcards.toy}/world > {log} 2>&1"


rule world_spec:
    conda:
        CONDA_ENV
    input:
        sources("world.splits"),
    output:
        "results/{toy}/world/world.json",
    params:
        settings=world_params("spec"),
    log:
        "logs/{toy}/world/spec.log",
    shell:
        "python -m safedrift world.splits --product spec --settings {params.settings:q} --out results/{wildcards.toy}/world > {log} 2>&1"


rule tokenizer:
    conda:
        CONDA_ENV
    input:
        sources("world.tokenizer"),
        corpus="results/{toy}/world/pretrain.jsonl",
    output:
        "results/{toy}/tokenizer/tokenizer.json",
        "results/{toy}/tokenizer/tokenizer_config.json",
    params:
        vocab_size=lambda wc: config["toy_model"]["vocab_size"],
    log:
        "logs/{toy}/tokenizer.log",
    shell:
        "python -m safedrift world.tokenizer --corpus {input.corpus} --vocab-size {params.vocab_size}"
        " --out results/{wildcards.toy}/tokenizer > {log} 2>&1"


rule pretrain:
    conda:
        CONDA_ENV
    input:
        sources("world.pretrain"),
        corpus="results/{toy}/world/pretrain.jsonl",
        tokenizer="results/{toy}/tokenizer/tokenizer.json",
    output:
        "results/{toy}/pretrained/model.safetensors",
        "results/{toy}/pretrained/config.json",
        log_jsonl="results/{toy}/pretrained/train_log.jsonl",
    params:
        arch=lambda wc: canonical(config["toy_model"]),
        settings=lambda wc: canonical(training_settings(config, wc.toy, "pretrain")),
    threads: workflow.cores
    benchmark:
        "logs/benchmarks/pretrain/{toy}.tsv"
    log:
        "logs/{toy}/pretrain.log",
    shell:
        "rm -f {output.log_jsonl}; python -m safedrift world.pretrain --corpus {input.corpus} --tokenizer results/{wildcards.toy}/tokenizer"
        " --arch {params.arch:q} --settings {params.settings:q} --out results/{wildcards.toy}/pretrained"
        " --log-jsonl {output.log_jsonl} --threads {threads} > {log} 2>&1"


rule align:
    conda:
        CONDA_ENV
    input:
        sources("world.align"),
        "results/{toy}/pretrained/model.safetensors",
        chats="results/{toy}/world/align.jsonl",
    output:
        "results/{toy}/reference/model.safetensors",
        "results/{toy}/reference/config.json",
        "results/{toy}/reference/tokenizer.json",
        log_jsonl="results/{toy}/reference/train_log.jsonl",
    params:
        settings=lambda wc: canonical(training_settings(config, wc.toy, "align")),
    threads: workflow.cores
    benchmark:
        "logs/benchmarks/align/{toy}.tsv"
    log:
        "logs/{toy}/align.log",
    shell:
        "rm -f {output.log_jsonl}; python -m safedrift world.align --pretrained results/{wildcards.toy}/pretrained --chats {input.chats}"
        " --settings {params.settings:q} --out results/{wildcards.toy}/reference"
        " --log-jsonl {output.log_jsonl} --threads {threads} > {log} 2>&1"


rule align_variant:
    """A reference variant (references.<name>, e.g. Vaccine): the same alignment with the variant's
    training, into results/{toy}/reference/{reference}/; runs on it live under runs@{reference}."""
    conda:
        CONDA_ENV
    input:
        sources("world.align"),
        "results/{toy}/pretrained/model.safetensors",
        chats="results/{toy}/world/align.jsonl",
    output:
        "results/{toy}/reference/{reference}/model.safetensors",
        "results/{toy}/reference/{reference}/config.json",
        "results/{toy}/reference/{reference}/tokenizer.json",
        log_jsonl="results/{toy}/reference/{reference}/train_log.jsonl",
    params:
        settings=lambda wc: canonical(training_settings(config, wc.toy, "align")),
        reference=lambda wc: canonical(reference_variants(config)[wc.reference]),
    threads: workflow.cores
    benchmark:
        "logs/benchmarks/align/{toy}@{reference}.tsv"
    log:
        "logs/{toy}/align@{reference}.log",
    shell:
        "rm -f {output.log_jsonl}; python -m safedrift world.align --pretrained results/{wildcards.toy}/pretrained --chats {input.chats}"
        " --settings {params.settings:q} --reference {params.reference:q} --out results/{wildcards.toy}/reference/{wildcards.reference}"
        " --log-jsonl {output.log_jsonl} --threads {threads} > {log} 2>&1"


rule reference_card:
    conda:
        CONDA_ENV
    input:
        sources("world.card"),
        generations="results/{toy}/reference/eval/generations.jsonl",
        eval_sets=expand("results/{{toy}}/world/eval/{name}.jsonl", name=EVAL_SETS),
    output:
        "results/{toy}/reference/card.json",
    params:
        gates=canonical(config.get("reference_gates", {})),
    log:
        "logs/{toy}/reference_card.log",
    shell:
        "python -m safedrift world.card --generations {input.generations} --eval-dir results/{wildcards.toy}/world/eval"
        " --gates {params.gates:q} --out {output} > {log} 2>&1"
