# What `snakemake --report results/<profile>/report.html` shows besides the tables' own outputs:
# each run's training curves, the report's HTML pages (diff with OUTSIDE cells first, tables,
# FLOPs/throughput records, model zoo) and the model-zoo records with published checkpoints.
# Included before `rule all` (REPORT_TARGETS), so paths here are strings, not `rules.` references.
localrules:
    curves,
    zoo,
    pages,


REPORT = f"{RESULTS}/report"
ZOO = f"{RESULTS}/zoo"
# every run (dataset/cgrseg-variant/seedN) and its config, in one order
RUNS = [f"{d}/cgrseg-{v}/seed{s}" for d in DATASETS for v in VARIANTS for s in SEEDS]
RUN_CONFIGS = [wf.model_config(config, v, d) for d in DATASETS for v in VARIANTS for s in SEEDS]
REPORT_TARGETS = [f"{REPORT}/curves", f"{REPORT}/diff.html", f"{ZOO}/model-index.yml"]


rule curves:
    input:
        checkpoints=expand(f"{WORK}/{{run}}/latest.pth", run=RUNS),
        metrics=expand(f"{RESULTS}/runs/{{run}}/metrics.json", run=RUNS),
    output:
        report(
            directory(f"{REPORT}/curves"),
            patterns=["{dataset}_cgrseg-{variant}_seed{seed}.png"],
            caption="../report/curves.rst",
            category="4. Training curves",
            subcategory="{dataset}",
            labels={"model": "cgrseg-{variant}", "seed": "{seed}"},
        ),
    params:
        runs=RUNS,
    log:
        f"{LOGS}/curves.log",
    benchmark:
        f"{BENCH}/curves.tsv"
    shell:
        "cgrseg curves --runs {params.runs:q} --work-root {WORK:q} --results {RESULTS:q} --out {output:q} > {log:q} 2>&1"


rule zoo:
    input:
        checkpoints=expand(f"{WORK}/{{run}}/latest.pth", run=RUNS),
        metrics=expand(f"{RESULTS}/runs/{{run}}/metrics.json", run=RUNS),
        throughput=expand(f"{RESULTS}/measure/{{model}}.throughput.json", model=expand(MODEL, dataset=DATASETS, variant=VARIANTS)),
    output:
        metafile=f"{ZOO}/cgrseg.yml",
        index=f"{ZOO}/model-index.yml",
        weights=directory(f"{ZOO}/weights"),
    params:
        runs=RUNS,
        configs=RUN_CONFIGS,
    log:
        f"{LOGS}/zoo.log",
    benchmark:
        f"{BENCH}/zoo.tsv"
    shell:
        "cgrseg zoo --runs {params.runs:q} --configs {params.configs:q} --work-root {WORK:q} --results {RESULTS:q} --out {ZOO:q} > {log:q} 2>&1"


rule pages:
    input:
        metrics=f"{RESULTS}/metrics.json",
        paper=PAPER,
        hypotheses=HYPOTHESES_FILE,
        flops=[*expand(f"{RESULTS}/measure/judged/cgrseg-{{variant}}.flops.json", variant=VARIANTS), *wf.dataset_flops_outputs(config, RESULTS), *expand(f"{RESULTS}/measure/hypotheses/{{hypothesis}}.flops.json", hypothesis=list(HYPOTHESES))],
        throughput=expand(f"{RESULTS}/measure/{{model}}.throughput.json", model=expand(MODEL, dataset=DATASETS, variant=VARIANTS)),
        zoo=f"{ZOO}/cgrseg.yml",
    output:
        diff=report(f"{REPORT}/diff.html", caption="../report/diff.rst", category="1. Paper vs regenerated"),
        tables=report(
            directory(f"{REPORT}/tables"),
            patterns=["{dataset}.html"],
            caption="../report/tables.rst",
            category="2. Tables",
            labels={"table": "{dataset}"},
        ),
        measure=report(f"{REPORT}/measure.html", caption="../report/measure.rst", category="5. FLOPs and throughput"),
        zoo=report(f"{REPORT}/zoo.html", caption="../report/zoo.rst", category="6. Model zoo"),
    log:
        f"{LOGS}/pages.log",
    benchmark:
        f"{BENCH}/pages.tsv"
    shell:
        "cgrseg pages --metrics {input.metrics:q} --paper {input.paper:q} --hypotheses {input.hypotheses:q} --results {RESULTS:q} --flops {input.flops:q} --throughput {input.throughput:q} --zoo {input.zoo:q} --out {REPORT:q} > {log:q} 2>&1"
