# Tables: every result file -> {RESULTS}/metrics.json -> the paper's tables, the diff and the figure.
localrules:
    collect,
    tables,
    diff,
    figure,

PAPER = "configs/paper/results.yaml"


rule collect:
    input:
        expand(f"{RESULTS}/runs/{{model}}/metrics.json", model=expand(MODEL, dataset=DATASETS, variant=VARIANTS)),
        expand(f"{RESULTS}/measure/{{model}}.{{kind}}.json", model=expand(MODEL, dataset=DATASETS, variant=VARIANTS), kind=["flops", "throughput"]),
    output:
        f"{RESULTS}/metrics.json",
    log:
        f"{LOGS}/collect.log",
    benchmark:
        f"{BENCH}/collect.tsv"
    shell:
        "cgrseg collect --params params.yaml --results {RESULTS} --out {output} > {log} 2>&1"


rule tables:
    input:
        metrics=rules.collect.output[0],
        paper=PAPER,
    output:
        expand(f"{RESULTS}/tables/{{dataset}}.{{fmt}}", dataset=DATASETS, fmt=config["tables"]["formats"]),
    log:
        f"{LOGS}/tables.log",
    benchmark:
        f"{BENCH}/tables.tsv"
    shell:
        "cgrseg tables --metrics {input.metrics} --paper {input.paper} --params params.yaml --results {RESULTS} --out {RESULTS}/tables > {log} 2>&1"


rule diff:
    input:
        metrics=rules.collect.output[0],
        paper=PAPER,
    output:
        md=f"{RESULTS}/diff.md",
        json=f"{RESULTS}/diff.json",
    log:
        f"{LOGS}/diff.log",
    benchmark:
        f"{BENCH}/diff.tsv"
    shell:
        "cgrseg diff --metrics {input.metrics} --paper {input.paper} --params params.yaml --results {RESULTS} --out {RESULTS}/diff > {log} 2>&1"


rule figure:
    input:
        metrics=rules.collect.output[0],
        paper=PAPER,
    output:
        png=f"{RESULTS}/figures/miou_vs_gflops.png",
        pdf=f"{RESULTS}/figures/miou_vs_gflops.pdf",
    log:
        f"{LOGS}/figure.log",
    benchmark:
        f"{BENCH}/figure.tsv"
    shell:
        "cgrseg figure --metrics {input.metrics} --paper {input.paper} --results {RESULTS} --out {RESULTS}/figures/miou_vs_gflops > {log} 2>&1"
