# What `snakemake report --report results/<preset>/report.html` shows besides the tables' own outputs:
# each run's training curves, the report's HTML pages (diff with OUTSIDE cells first, tables,
# FLOPs/throughput records, model zoo) and the model-zoo records with published checkpoints.
# Included before the target rules (REPORT_TARGETS), so paths here are strings, not `rules.` references.
localrules:
    report,
    curves,
    zoo,
    pages,


REPORT = f"{RESULTS}/report"
ZOO = f"{RESULTS}/zoo"
# every run (dataset/cgrseg-variant/seedN) and its config, in one order
RUN_KEYS = [(d, v, s) for d in config["datasets"] for v in config["variants"] for s in config["seeds"]]
RUNS = [RUN.format(dataset=d, variant=v, seed=s) for d, v, s in RUN_KEYS]
RUN_CONFIGS = [wf.model_config(config, d, v) for d, v, s in RUN_KEYS]
MODELS = [dict(dataset=d, variant=v) for d in config["datasets"] for v in config["variants"]]
REPORT_TARGETS = [f"{REPORT}/curves", f"{REPORT}/diff.html", f"{ZOO}/model-index.yml"]


rule curves:
    input:
        checkpoints=expand(f"{WORK}/{{run}}/latest.pth", run=RUNS),
        metrics=[f"{RESULTS}/{layout.RUN_METRICS.format(dataset=d, variant=v, seed=s)}" for d, v, s in RUN_KEYS],
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
        work_root=lambda w: WORK,  # a root, not a file: the jobs read and write under it
        results=lambda w: RESULTS,
    log:
        f"{LOGS}/curves.log",
    benchmark:
        f"{BENCH}/curves.tsv"
    shell:
        "cgrseg curves --runs {params.runs:q} --work-root {params.work_root:q} --results {params.results:q} --out {output:q} > {log:q} 2>&1"


rule zoo:
    input:
        checkpoints=expand(f"{WORK}/{{run}}/latest.pth", run=RUNS),
        metrics=[f"{RESULTS}/{layout.RUN_METRICS.format(dataset=d, variant=v, seed=s)}" for d, v, s in RUN_KEYS],
        throughput=[f"{RESULTS}/{layout.THROUGHPUT.format(**m)}" for m in MODELS],
    output:
        metafile=f"{ZOO}/cgrseg.yml",
        index=f"{ZOO}/model-index.yml",
        weights=directory(f"{ZOO}/weights"),
    params:
        runs=RUNS,
        configs=RUN_CONFIGS,
        work_root=lambda w: WORK,  # a root, not a file: the jobs read and write under it
        results=lambda w: RESULTS,
        out=lambda w, output: str(Path(output.index).parent),
    log:
        f"{LOGS}/zoo.log",
    benchmark:
        f"{BENCH}/zoo.tsv"
    shell:
        "cgrseg zoo --runs {params.runs:q} --configs {params.configs:q} --work-root {params.work_root:q} --results {params.results:q} --out {params.out:q} > {log:q} 2>&1"


rule pages:
    input:
        metrics=f"{RESULTS}/{layout.METRICS}",
        paper=layout.PAPER_RESULTS,
        hypotheses=layout.HYPOTHESES,
        flops=list(dict.fromkeys([
            *(f"{RESULTS}/{layout.JUDGED_FLOPS.format(variant=v)}" for v in config["variants"]),
            *(f"{RESULTS}/{layout.dataset_flops(m['dataset'], config['judged_complexity'], config['measure_shape'][m['dataset']]).format(**m)}" for m in MODELS),
            *(f"{RESULTS}/{layout.HYPOTHESIS_FLOPS.format(hypothesis=h)}" for h in HYPOTHESES),
        ])),
        throughput=[f"{RESULTS}/{layout.THROUGHPUT.format(**m)}" for m in MODELS],
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
    params:
        results=lambda w: RESULTS,
        out=lambda w, output: str(Path(output.diff).parent),
    log:
        f"{LOGS}/pages.log",
    benchmark:
        f"{BENCH}/pages.tsv"
    shell:
        "cgrseg pages --metrics {input.metrics:q} --paper {input.paper:q} --hypotheses {input.hypotheses:q} --results {params.results:q} --flops {input.flops:q} --throughput {input.throughput:q} --zoo {input.zoo:q} --out {params.out:q} > {log:q} 2>&1"
