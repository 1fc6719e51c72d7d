# Measurement per variant and dataset (the class count and resolution change the head's cost,
# shown for information), of the judged model per variant, and of each measured hypothesis.


rule flops:
    input:
        config=lambda w: wf.model_config(config, w.variant, w.dataset),
    output:
        f"{RESULTS}/measure/{MODEL}.flops.json",
    params:
        shape=lambda w: wf.flops_shape(config, w.dataset),
    threads: wf.threads(config, "flops")
    resources:
        **wf.resources(config, "flops"),
    log:
        f"{LOGS}/flops/{MODEL}.log",
    benchmark:
        f"{BENCH}/flops/{MODEL}.tsv"
    shell:
        "cgrseg flops {input.config} --shape {params.shape} --out {output} > {log} 2>&1"


rule throughput:
    input:
        config=lambda w: wf.model_config(config, w.variant, w.dataset),
        manifest=rules.prepare.output[0],
    output:
        f"{RESULTS}/measure/{MODEL}.throughput.json",
    params:
        args=lambda w: wf.throughput_args(config, w.dataset),
    threads: wf.threads(config, "throughput")
    resources:
        gpu=1,
        slurm_partition=GPU_PARTITION,
        **wf.resources(config, "throughput"),
    log:
        f"{LOGS}/throughput/{MODEL}.log",
    benchmark:
        f"{BENCH}/throughput/{MODEL}.tsv"
    shell:
        "cgrseg throughput {input.config} --out {output} --device auto --data-root {PREPARED} --manifest {input.manifest} {params.args} > {log} 2>&1"


rule flops_judged:
    # the params/GFLOPs every table judges: params.yaml judged_complexity (ADE20K model, 512x512)
    input:
        config=lambda w: wf.judged_config(config, w.variant),
    output:
        f"{RESULTS}/measure/judged/cgrseg-{{variant}}.flops.json",
    params:
        shape=wf.judged_shape(config),
    threads: wf.threads(config, "flops")
    resources:
        **wf.resources(config, "flops"),
    log:
        f"{LOGS}/flops_judged/cgrseg-{{variant}}.log",
    benchmark:
        f"{BENCH}/flops_judged/cgrseg-{{variant}}.tsv"
    shell:
        "cgrseg flops {input.config} --shape {params.shape} --out {output} > {log} 2>&1"


rule hypothesis:
    # one measured hypothesis of configs/paper/hypotheses.yaml: the judged model with its changes
    input:
        config=lambda w: wf.hypothesis_config(config, HYPOTHESES, w.hypothesis),
    output:
        f"{RESULTS}/measure/hypotheses/{{hypothesis}}.flops.json",
    params:
        args=lambda w: wf.hypothesis_args(config, HYPOTHESES, w.hypothesis),
    threads: wf.threads(config, "flops")
    resources:
        **wf.resources(config, "flops"),
    log:
        f"{LOGS}/hypothesis/{{hypothesis}}.log",
    benchmark:
        f"{BENCH}/hypothesis/{{hypothesis}}.tsv"
    shell:
        "cgrseg flops {input.config} {params.args} --out {output} > {log} 2>&1"
