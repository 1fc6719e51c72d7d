# Measurement per variant (and dataset: the class count and resolution change the head's cost).


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
        "cgrseg throughput {input.config} --out {output} --device auto {params.args} > {log} 2>&1"
