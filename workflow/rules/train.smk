# Training: one run per variant x dataset x seed, resumed from its work dir when re-run. `exec`: on
# SLURM the preemption signal must reach cgrseg train, not a shell that would die on it (docs/slurm.md).
# Every setting of params.yaml presets.<preset> is one flag; null (None) keeps the mmseg config's value.
localrules:
    pretrained,


rule pretrained:
    output:
        layout.BACKBONE_WEIGHTS,
    log:
        f"{LOGS}/pretrained/{{arch}}.log",
    benchmark:
        f"{BENCH}/pretrained/{{arch}}.tsv"
    shell:
        "cgrseg pretrained {wildcards.arch:q} --out {output:q} > {log:q} 2>&1"


rule train:
    priority: lambda w: wf.priority(config, "train", w.variant)
    input:
        config=lambda w: config["configs"][w.dataset].format(variant=w.variant),
        manifest=rules.prepare.output[0],
        backbone=lambda w: wf.pretrained_inputs(config, w.variant),
        doctor=ancient(DOCTOR),
    output:
        f"{WORK}/{RUN}/latest.pth",
    params:
        work_dir=lambda w, output: str(Path(output[0]).parent),
        data_root=lambda w, input: str(Path(input.manifest).parent),
        gpus=PRESET["gpus"],
        iters=lambda w: wf.train_iters(config, w.variant),
        crop=PRESET["crop"],
        samples_per_gpu=PRESET["samples_per_gpu"],
        train_repeat=PRESET["train_repeat"],
        checkpoint_interval=PRESET["checkpoint_interval"],
        pretrained=PRESET["pretrained"],
        validate=PRESET["validate"],
        cfg_options=option_args(PRESET["cfg_options"]),
    threads: wf.threads(config, "train")
    resources:
        gpu=wf.gpus(config),
        slurm_partition=config["slurm_gpu_partition"],
        **wf.resources(config, "train"),
    log:
        f"{LOGS}/train/{RUN}.log",
    benchmark:
        f"{BENCH}/train/{RUN}.tsv"
    shell:
        "exec cgrseg train {input.config:q} --work-dir {params.work_dir:q} --data-root {params.data_root:q}"
        " --seed {wildcards.seed:q} --gpus {params.gpus:q} --iters {params.iters:q} --crop {params.crop:q}"
        " --samples-per-gpu {params.samples_per_gpu:q} --train-repeat {params.train_repeat:q}"
        " --checkpoint-interval {params.checkpoint_interval:q} --pretrained {params.pretrained:q}"
        " --validate {params.validate:q} --cfg-options {params.cfg_options:q} > {log:q} 2>&1"
