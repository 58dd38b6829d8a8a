# Figures and tables.


rule reference_figure:
    input:
        sources("report.reference"),
        cards=expand("results/{model}/reference/card.json", model=TOY_MODELS),
    output:
        "figures/reference.pdf",
    params:
        cards=" ".join(f"--card {m}=results/{m}/reference/card.json" for m in TOY_MODELS),
        dpi=config.get("report", {}).get("dpi", 150),
    log:
        "logs/report/reference.log",
    shell:
        "{PY} report.reference {params.cards} --out {output} --dpi {params.dpi} > {log} 2>&1"
