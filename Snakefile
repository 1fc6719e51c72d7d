# CGRSeg reproduction: download -> prepare -> train -> evaluate -> measure -> tables.
# The one configuration truth is params.yaml (contract: workflow/schemas/params.schema.yaml);
# `--config preset=paper` runs the published protocol. Every rule is one `cgrseg` call whose shell
# line names each flag it passes. See docs/architecture.md, docs/workflow.md and docs/slurm.md.
configfile: "params.yaml"
# `snakemake report --report results/<preset>/report.html` after a run: docs/workflow.md (the report)
report: "workflow/report/workflow.rst"


include: "workflow/common.smk"
include: "workflow/rules/doctor.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        FINAL_TARGETS,


# `snakemake report --report results/<preset>/report.html`: the run's results plus what only the
# report shows (curves, HTML pages, model zoo), kept out of `all` to keep the demo inside its budget
rule report:
    input:
        FINAL_TARGETS,
        REPORT_TARGETS,


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/tables.smk"
