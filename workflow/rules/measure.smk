# Measurement per variant and dataset (the class count and resolution change the head's cost,
# shown for information), of the judged model per variant, and of each measured hypothesis.


rule flops:
    input:
        config=lambda w: config["configs"][w.dataset].format(variant=w.variant),
    output:
        f"{RESULTS}/{layout.FLOPS}",
    params:
        shape=lambda w: config["measure_shape"][w.dataset],
    threads: wf.threads(config, "flops")
    resources:
        **wf.resources(config, "flops"),
    log:
        f"{LOGS}/flops/{MODEL}.log",
    benchmark:
        f"{BENCH}/flops/{MODEL}.tsv"
    shell:
        "cgrseg flops {input.config:q} --shape {params.shape:q} --out {output:q} > {log:q} 2>&1"


rule throughput:
    input:
        config=lambda w: config["configs"][w.dataset].format(variant=w.variant),
        manifest=rules.prepare.output[0],
    output:
        f"{RESULTS}/{layout.THROUGHPUT}",
    params:
        data_root=lambda w, input: str(Path(input.manifest).parent),
        repeats=PRESET["throughput_repeats"],
        iters=PRESET["throughput_iters"],
        images=PRESET["throughput_images"],
        crop=PRESET["crop"],
        shape=lambda w: wf.throughput_shape(config, w.dataset),
    threads: wf.threads(config, "throughput")
    resources:
        gpu=1,
        slurm_partition=config["slurm_gpu_partition"],
        **wf.resources(config, "throughput"),
    log:
        f"{LOGS}/throughput/{MODEL}.log",
    benchmark:
        f"{BENCH}/throughput/{MODEL}.tsv"
    shell:
        "cgrseg throughput {input.config:q} --out {output:q} --device auto --data-root {params.data_root:q}"
        " --manifest {input.manifest:q} --deploy --repeats {params.repeats:q} --iters {params.iters:q}"
        " --images {params.images:q} --crop {params.crop:q} --shape {params.shape:q} > {log:q} 2>&1"


rule flops_judged:
    # the params/GFLOPs every table judges: params.yaml judged_complexity (ADE20K model, 512x512)
    input:
        config=lambda w: config["configs"][config["judged_complexity"]["dataset"]].format(variant=w.variant),
    output:
        f"{RESULTS}/{layout.JUDGED_FLOPS}",
    params:
        shape=config["judged_complexity"]["shape"],
    threads: wf.threads(config, "flops")
    resources:
        **wf.resources(config, "flops"),
    log:
        f"{LOGS}/flops_judged/cgrseg-{{variant}}.log",
    benchmark:
        f"{BENCH}/flops_judged/cgrseg-{{variant}}.tsv"
    shell:
        "cgrseg flops {input.config:q} --shape {params.shape:q} --out {output:q} > {log:q} 2>&1"


rule hypothesis:
    # one measured hypothesis of configs/paper/hypotheses.yaml: the judged model with its changes
    input:
        config=lambda w: config["configs"][config["judged_complexity"]["dataset"]].format(
            variant=HYPOTHESES[w.hypothesis]["variant"]
        ),
    output:
        f"{RESULTS}/{layout.HYPOTHESIS_FLOPS}",
    params:
        shape=config["judged_complexity"]["shape"],
        cfg_options=lambda w: option_args(HYPOTHESES[w.hypothesis]["cfg_options"]),
    threads: wf.threads(config, "flops")
    resources:
        **wf.resources(config, "flops"),
    log:
        f"{LOGS}/hypothesis/{{hypothesis}}.log",
    benchmark:
        f"{BENCH}/hypothesis/{{hypothesis}}.tsv"
    shell:
        "cgrseg flops {input.config:q} --shape {params.shape:q} --cfg-options {params.cfg_options:q}"
        " --out {output:q} > {log:q} 2>&1"
