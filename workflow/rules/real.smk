# Real (source: hf) models: eval sets and scenario pools from the data files the config names.
# Only models with `source: hf` use these rules; the reference model is models.<name>.path itself.
#
# One job per eval set and one per pool, each with its own entry as params (safedrift.data.real
# --product eval/pool), so that editing an eval entry (a `limit`, a new attack set) rewrites that
# eval set only and no pool, hence no fine-tune. A pool with `overlap: drop` also depends on the
# eval prompt sources it gives way to (the eval entries without their limit and attacks). The
# check that no prompt is both trained on and evaluated is its own job (real_overlap), which every
# job training or evaluating on the model's data waits for (common.smk: real_overlap_checked).


rule real_eval_set:
    input:
        sources("data.real"),
        files=real_entry_inputs("eval", "set"),
    output:
        rows="results/{hf}/world/eval/{set}.jsonl",
        provenance="results/{hf}/world/provenance/eval/{set}.json",
    wildcard_constraints:
        set=r"[^/]+",
    params:
        spec=real_entry_spec("eval", "set"),
        key=lambda wc: f"models.{wc.hf}.data",
    log:
        "logs/{hf}/world/eval/{set}.log",
    conda:
        CONDA_ENV
    shell:
        "python -m safedrift data.real --product eval --name {wildcards.set} --spec {params.spec:q}"
        " --model-key {params.key} --out results/{wildcards.hf}/world > {log} 2>&1"


rule real_pool:
    input:
        sources("data.real"),
        files=real_entry_inputs("pools", "pool"),
    output:
        rows="results/{hf}/world/pools/{pool}.jsonl",
        provenance="results/{hf}/world/provenance/pools/{pool}.json",
    wildcard_constraints:
        pool=r"[^/]+",
    params:
        spec=real_entry_spec("pools", "pool"),
        key=lambda wc: f"models.{wc.hf}.data",
    log:
        "logs/{hf}/world/pools/{pool}.log",
    conda:
        CONDA_ENV
    shell:
        "python -m safedrift data.real --product pool --name {wildcards.pool} --spec {params.spec:q}"
        " --model-key {params.key} --out results/{wildcards.hf}/world > {log} 2>&1"


rule real_overlap:
    """No prompt both in a pool and in an eval set of the model (safedrift.data.real, `overlap:`),
    and world.json: every entry's file, sha256 and row counts."""
    input:
        sources("data.real"),
        products=lambda wc: real_products(wc.hf),
    output:
        "results/{hf}/world/world.json",
    params:
        spec=lambda wc: canonical({section: {name: {"overlap": entry.get("overlap", "check")} for name, entry in named.items()}
                                   for section, named in real_data(wc.hf).items()}),
        key=lambda wc: f"models.{wc.hf}.data",
    log:
        "logs/{hf}/world/overlap.log",
    conda:
        CONDA_ENV
    shell:
        "python -m safedrift data.real --product check --spec {params.spec:q} --model-key {params.key}"
        " --out results/{wildcards.hf}/world > {log} 2>&1"


rule fetch_data:
    """Download the public datasets that data entries name with `fetch:` into data/ and check them
    against workflow/data.lock.yaml (safedrift.data.fetch). A local rule: compute nodes often
    have no internet. `snakemake fetch_data` alone does only this."""
    output:
        [path for name in FETCH_SOURCES for path in source_files(name)],
    params:
        names=" ".join(FETCH_SOURCES),
        sources=canonical({name: load_sources()[name] for name in FETCH_SOURCES}),
    log:
        "logs/fetch_data.log",
    conda:
        CONDA_ENV
    shell:
        "python -m safedrift data.fetch {params.names} 2>&1 | tee {log}" if FETCH_SOURCES else
        "echo 'no data entry of this config has fetch: nothing to download' | tee {log}"
