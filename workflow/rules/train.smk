# Training: one run per variant x dataset x seed, resumed from its work dir when re-run. `exec`: on
# SLURM the preemption signal must reach cgrseg train, not a shell that would die on it (docs/slurm.md).
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
        f"{WORK}/{RUN}/latest.pth",
    params:
        work_dir=f"{WORK}/{RUN}",
        args=lambda w: wf.train_args(config, w.variant),
    threads: wf.threads(config, "train")
    resources:
        gpu=wf.gpus(config),
        slurm_partition=GPU_PARTITION,
        **wf.resources(config, "train"),
    log:
        f"{LOGS}/train/{RUN}.log",
    benchmark:
        f"{BENCH}/train/{RUN}.tsv"
    shell:
        "exec cgrseg train {input.config} --work-dir {params.work_dir} --data-root {PREPARED} --seed {wildcards.seed} {params.args} > {log} 2>&1"
