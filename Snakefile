# CGRSeg reproduction: download -> prepare -> train -> evaluate -> measure -> tables.
# The one configuration truth is params.yaml; `--config profile=paper` runs the published protocol.
# Every rule is one `cgrseg` call; the choices behind its arguments live in src/cgrseg/workflow.py.
# See docs/workflow.md (local runs) and docs/slurm.md (clusters).
configfile: "params.yaml"


include: "workflow/common.smk"


rule all:
    default_target: True
    input:
        FINAL_TARGETS,


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/tables.smk"
