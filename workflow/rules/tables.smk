# Tables: every result file -> results/metrics.json -> the paper's tables, the diff and the figure.
# The effective params (after --config) reach the commands as arguments, not by re-reading params.yaml.
localrules:
    collect,
    tables,
    diff,
    figure,


rule collect:
    input:
        expand(f"results/runs/{RUN}/metrics.json", dataset=DATASETS, variant=VARIANTS, seed=SEEDS),
        expand("results/measure/{model}.throughput.json", model=expand(MODEL, dataset=DATASETS, variant=VARIANTS)),
        wf.dataset_flops_outputs(config),
        expand("results/measure/judged/cgrseg-{variant}.flops.json", variant=VARIANTS),
        expand("results/measure/hypotheses/{hypothesis}.flops.json", hypothesis=list(HYPOTHESES)),
        hypotheses=HYPOTHESES_FILE,
    output:
        "results/metrics.json",
    params:
        args=wf.collect_args(config),
    log:
        f"{LOGS}/collect.log",
    benchmark:
        f"{BENCH}/collect.tsv"
    shell:
        "cgrseg collect {params.args} --hypotheses {input.hypotheses} --results results --out {output} > {log} 2>&1"


rule tables:
    input:
        metrics=rules.collect.output[0],
        paper=PAPER,
        hypotheses=HYPOTHESES_FILE,
    output:
        expand("results/tables/{dataset}.{fmt}", dataset=DATASETS, fmt=config["tables"]["formats"]),
    params:
        args=wf.tables_args(config),
    log:
        f"{LOGS}/tables.log",
    benchmark:
        f"{BENCH}/tables.tsv"
    shell:
        "cgrseg tables --metrics {input.metrics} --paper {input.paper} --hypotheses {input.hypotheses} {params.args} --out results/tables > {log} 2>&1"


rule diff:
    input:
        metrics=rules.collect.output[0],
        paper=PAPER,
        hypotheses=HYPOTHESES_FILE,
    output:
        md="results/diff.md",
        json="results/diff.json",
    params:
        args=wf.diff_args(config),
    log:
        f"{LOGS}/diff.log",
    benchmark:
        f"{BENCH}/diff.tsv"
    shell:
        "cgrseg diff --metrics {input.metrics} --paper {input.paper} --hypotheses {input.hypotheses} {params.args} --out results/diff > {log} 2>&1"


rule figure:
    input:
        metrics=rules.collect.output[0],
        paper=PAPER,
        hypotheses=HYPOTHESES_FILE,
    output:
        png="results/figures/miou_vs_gflops.png",
        pdf="results/figures/miou_vs_gflops.pdf",
    log:
        f"{LOGS}/figure.log",
    benchmark:
        f"{BENCH}/figure.tsv"
    shell:
        "cgrseg figure --metrics {input.metrics} --paper {input.paper} --hypotheses {input.hypotheses} --out results/figures/miou_vs_gflops > {log} 2>&1"
