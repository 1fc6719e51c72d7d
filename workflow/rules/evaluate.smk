# Evaluation: mIoU of each run -> {RESULTS}/runs/{dataset}/cgrseg-{variant}/seed{seed}/metrics.json.


rule evaluate:
    input:
        config=lambda w: wf.model_config(config, w.variant, w.dataset),
        checkpoint=rules.train.output[0],
        manifest=rules.prepare.output[0],
    output:
        f"{RESULTS}/runs/{RUN}/metrics.json",
    params:
        args=lambda w: wf.evaluate_args(config, w.dataset),
    threads: wf.threads(config, "evaluate")
    resources:
        gpu=1,
        slurm_partition=GPU_PARTITION,
        **wf.resources(config, "evaluate"),
    log:
        f"{LOGS}/evaluate/{RUN}.log",
    benchmark:
        f"{BENCH}/evaluate/{RUN}.tsv"
    shell:
        "cgrseg evaluate {input.config} {input.checkpoint} --out {output} --data-root {PREPARED} --manifest {input.manifest} {params.args} > {log} 2>&1"
