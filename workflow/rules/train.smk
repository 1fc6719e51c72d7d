# Training: one run per variant x dataset, resumed from its work dir when re-run.
localrules:
    pretrained,


rule pretrained:
    output:
        wf.PRETRAINED,
    log:
        f"{LOGS}/pretrained/{{arch}}.log",
    benchmark:
        f"{BENCH}/pretrained/{{arch}}.tsv"
    shell:
        "cgrseg pretrained {wildcards.arch} --out {output} > {log} 2>&1"


rule train:
    priority: lambda w: wf.priority(config, "train", w.variant)
    input:
        config=lambda w: wf.model_config(config, w.variant, w.dataset),
        data=rules.prepare.output,
        backbone=lambda w: wf.pretrained_inputs(config, w.variant),
    output:
        f"{WORK}/{MODEL}/latest.pth",
    params:
        work_dir=f"{WORK}/{MODEL}",
        args=lambda w: wf.train_args(config, w.variant),
    threads: wf.threads(config, "train")
    resources:
        gpu=wf.gpus(config),
        slurm_partition=GPU_PARTITION,
        **wf.resources(config, "train"),
    log:
        f"{LOGS}/train/{MODEL}.log",
    benchmark:
        f"{BENCH}/train/{MODEL}.tsv"
    shell:
        "cgrseg train {input.config} --work-dir {params.work_dir} --data-root {PREPARED} {params.args} > {log} 2>&1"
