# Names shared by the rule files. Values come from params.yaml through cgrseg.workflow.
import cgrseg.workflow as wf

wf.check_or_exit(config)  # the whole of params.yaml after --config: one line per bad key
wf.put_interpreter_on_path()

DATA = config["data_root"]
RAW = wf.raw_root(config)
PREPARED = f"{DATA}/prepared"
DATASETS = list(config["datasets"])
VARIANTS = [str(v) for v in config["variants"]]
SEEDS = [int(s) for s in config["seeds"]]
GPU_PARTITION = config.get("slurm_gpu_partition", "gpu")
# one trained model: {dataset}/cgrseg-{variant}; one run of it: .../seed{seed}
MODEL = "{dataset}/cgrseg-{variant}"
RUN = MODEL + "/seed{seed}"
LOGS = "results/logs"
BENCH = "results/benchmarks"
PAPER = "configs/paper/results.yaml"
HYPOTHESES_FILE = "configs/paper/hypotheses.yaml"
HYPOTHESES = wf.load_hypotheses_or_exit(HYPOTHESES_FILE)

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
    seed=r"\d+",
    arch="[a-z0-9]+",
    hypothesis="[A-Za-z0-9][A-Za-z0-9_-]*",
