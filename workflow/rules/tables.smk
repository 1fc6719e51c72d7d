# Tables: every result file -> results/metrics.json -> the paper's tables, the diff and the figure.
localrules:
    collect,
    tables,
    diff,
    figure,

PAPER = "configs/paper/results.yaml"


rule collect:
    input:
        expand("results/runs/{model}/metrics.json", model=expand(MODEL, dataset=DATASETS, variant=VARIANTS)),
        expand("results/measure/{model}.{kind}.json", model=expand(MODEL, dataset=DATASETS, variant=VARIANTS), kind=["flops", "throughput"]),
    output:
        "results/metrics.json",
    log:
        f"{LOGS}/collect.log",
    benchmark:
        f"{BENCH}/collect.tsv"
    shell:
        "cgrseg collect --params params.yaml --results results --out {output} > {log} 2>&1"


rule tables:
    input:
        metrics=rules.collect.output[0],
        paper=PAPER,
    output:
        expand("results/tables/{dataset}.{fmt}", dataset=DATASETS, fmt=config["tables"]["formats"]),
    log:
        f"{LOGS}/tables.log",
    benchmark:
        f"{BENCH}/tables.tsv"
    shell:
        "cgrseg tables --metrics {input.metrics} --paper {input.paper} --params params.yaml --out results/tables > {log} 2>&1"


rule diff:
    input:
        metrics=rules.collect.output[0],
        paper=PAPER,
    output:
        md="results/diff.md",
        json="results/diff.json",
    log:
        f"{LOGS}/diff.log",
    benchmark:
        f"{BENCH}/diff.tsv"
    shell:
        "cgrseg diff --metrics {input.metrics} --paper {input.paper} --params params.yaml --out results/diff > {log} 2>&1"


rule figure:
    input:
        metrics=rules.collect.output[0],
        paper=PAPER,
    output:
        png="results/figures/miou_vs_gflops.png",
        pdf="results/figures/miou_vs_gflops.pdf",
    log:
        f"{LOGS}/figure.log",
    benchmark:
        f"{BENCH}/figure.tsv"
    shell:
        "cgrseg figure --metrics {input.metrics} --paper {input.paper} --out results/figures/miou_vs_gflops > {log} 2>&1"
