# Names shared by the rule files. Values come from params.yaml through cgrseg.workflow.
import cgrseg.workflow as wf

wf.check(config)
wf.put_interpreter_on_path()

DATA = config["data_root"]
RAW = wf.raw_root(config)
PREPARED = f"{DATA}/prepared"
DATASETS = list(config["datasets"])
VARIANTS = [str(v) for v in config["variants"]]
GPU_PARTITION = config.get("slurm_gpu_partition", "gpu")
# one trained model: {dataset}/cgrseg-{variant}
MODEL = "{dataset}/cgrseg-{variant}"
LOGS = "results/logs"
BENCH = "results/benchmarks"

FINAL_TARGETS = [
    "results/metrics.json",
    *expand("results/tables/{dataset}.{fmt}", dataset=DATASETS, fmt=config["tables"]["formats"]),
    "results/diff.md",
    "results/diff.json",
    "results/figures/miou_vs_gflops.png",
    "results/figures/miou_vs_gflops.pdf",
]


wildcard_constraints:
    dataset="|".join(DATASETS),
    variant="|".join(VARIANTS),
    arch="[a-z0-9]+",
