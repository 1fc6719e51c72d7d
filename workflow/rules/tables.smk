# Tables: every result file -> {RESULTS}/metrics.json -> the paper's tables, the diff and the figure.
# The effective params (after --config) reach the commands as arguments, not by re-reading params.yaml.
localrules:
    collect,
    tables,
    diff,
    figure,


rule collect:
    input:
        expand(f"{RESULTS}/runs/{RUN}/metrics.json", dataset=DATASETS, variant=VARIANTS, seed=SEEDS),
        expand(f"{RESULTS}/measure/{{model}}.throughput.json", model=expand(MODEL, dataset=DATASETS, variant=VARIANTS)),
        wf.dataset_flops_outputs(config, RESULTS),
        expand(f"{RESULTS}/measure/judged/cgrseg-{{variant}}.flops.json", variant=VARIANTS),
        expand(f"{RESULTS}/measure/hypotheses/{{hypothesis}}.flops.json", hypothesis=list(HYPOTHESES)),
        hypotheses=HYPOTHESES_FILE,
    output:
        f"{RESULTS}/metrics.json",
    params:
        args=wf.collect_args(config),
    log:
        f"{LOGS}/collect.log",
    benchmark:
        f"{BENCH}/collect.tsv"
    shell:
        "cgrseg collect {params.args} --hypotheses {input.hypotheses} --results {RESULTS} --out {output} > {log} 2>&1"


rule tables:
    input:
        metrics=rules.collect.output[0],
        paper=PAPER,
        hypotheses=HYPOTHESES_FILE,
    output:
        expand(f"{RESULTS}/tables/{{dataset}}.{{fmt}}", dataset=DATASETS, fmt=config["tables"]["formats"]),
    params:
        args=wf.tables_args(config),
    log:
        f"{LOGS}/tables.log",
    benchmark:
        f"{BENCH}/tables.tsv"
    shell:
        "cgrseg tables --metrics {input.metrics} --paper {input.paper} --hypotheses {input.hypotheses} {params.args} --results {RESULTS} --out {RESULTS}/tables > {log} 2>&1"


rule diff:
    input:
        metrics=rules.collect.output[0],
        paper=PAPER,
        hypotheses=HYPOTHESES_FILE,
    output:
        md=f"{RESULTS}/diff.md",
        json=f"{RESULTS}/diff.json",
    params:
        args=wf.diff_args(config),
    log:
        f"{LOGS}/diff.log",
    benchmark:
        f"{BENCH}/diff.tsv"
    shell:
        "cgrseg diff --metrics {input.metrics} --paper {input.paper} --hypotheses {input.hypotheses} {params.args} --results {RESULTS} --out {RESULTS}/diff > {log} 2>&1"


rule figure:
    input:
        metrics=rules.collect.output[0],
        paper=PAPER,
        hypotheses=HYPOTHESES_FILE,
    output:
        png=f"{RESULTS}/figures/miou_vs_gflops.png",
        pdf=f"{RESULTS}/figures/miou_vs_gflops.pdf",
    log:
        f"{LOGS}/figure.log",
    benchmark:
        f"{BENCH}/figure.tsv"
    shell:
        "cgrseg figure --metrics {input.metrics} --paper {input.paper} --hypotheses {input.hypotheses} --results {RESULTS} --out {RESULTS}/figures/miou_vs_gflops > {log} 2>&1"
