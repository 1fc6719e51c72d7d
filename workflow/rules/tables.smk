# Tables: every result file -> {RESULTS}/metrics.json -> the paper's tables, the diff and the figure.
# The run records its effective params (params.yaml after --config, defaults added) in
# {RESULTS}/params.effective.yaml; the table stages read every setting from that one file.
# collect, tables, diff and figure are defined once, in dvc.yaml: each rule below takes its command,
# inputs (params file included) and outputs from there (STAGES, workflow/common.smk), so `snakemake`
# and `dvc repro` run the same commands with the same settings (docs/workflow.md).
localrules:
    effective_params,
    collect,
    tables,
    diff,
    figure,


rule effective_params:
    output:
        f"{RESULTS}/{layout.EFFECTIVE_PARAMS}",
    params:
        values=lambda w: wf.params_json(config),  # a function: the JSON holds {variant} patterns
    log:
        f"{LOGS}/effective_params.log",
    benchmark:
        f"{BENCH}/effective_params.tsv"
    shell:
        "cgrseg params --values {params.values:q} --out {output:q} > {log:q} 2>&1"


rule collect:
    input:
        STAGES["collect"].inputs,
    output:
        STAGES["collect"].outputs,
    log:
        f"{LOGS}/collect.log",
    benchmark:
        f"{BENCH}/collect.tsv"
    shell:
        f"{STAGES['collect'].command} > {{log:q}} 2>&1"


rule tables:
    input:
        STAGES["tables"].inputs,
    output:
        STAGES["tables"].outputs,
    log:
        f"{LOGS}/tables.log",
    benchmark:
        f"{BENCH}/tables.tsv"
    shell:
        f"{STAGES['tables'].command} > {{log:q}} 2>&1"


rule diff:
    input:
        STAGES["diff"].inputs,
    output:
        STAGES["diff"].outputs,
    log:
        f"{LOGS}/diff.log",
    benchmark:
        f"{BENCH}/diff.tsv"
    shell:
        f"{STAGES['diff'].command} > {{log:q}} 2>&1"


rule figure:
    input:
        STAGES["figure"].inputs,
    output:
        # the PNG is also an item of `snakemake --report` (workflow/rules/report.smk)
        [report(p, caption="../report/figure.rst", category="3. Figure") if p.endswith(".png") else p
         for p in STAGES["figure"].outputs],
    log:
        f"{LOGS}/figure.log",
    benchmark:
        f"{BENCH}/figure.tsv"
    shell:
        f"{STAGES['figure'].command} > {{log:q}} 2>&1"
