# Evaluation: mIoU of each run -> {RESULTS}/runs/{dataset}/cgrseg-{variant}/seed{seed}/metrics.json.
# The test protocols come from each dataset's mmseg config (official + single scale), not from here.


rule evaluate:
    input:
        config=lambda w: config["configs"][w.dataset].format(variant=w.variant),
        checkpoint=rules.train.output[0],
        manifest=rules.prepare.output[0],
    output:
        f"{RESULTS}/{layout.RUN_METRICS}",
    params:
        data_root=lambda w, input: str(Path(input.manifest).parent),
        demo=wf.is_demo(config),
    threads: wf.threads(config, "evaluate")
    resources:
        gpu=1,
        slurm_partition=config["slurm_gpu_partition"],
        **wf.resources(config, "evaluate"),
    log:
        f"{LOGS}/evaluate/{RUN}.log",
    benchmark:
        f"{BENCH}/evaluate/{RUN}.tsv"
    shell:
        "cgrseg evaluate {input.config:q} {input.checkpoint:q} --out {output:q}"
        " --data-root {params.data_root:q} --manifest {input.manifest:q} --demo {params.demo:q} > {log:q} 2>&1"
