# Names shared by the rule files. Values come from params.yaml through cgrseg.workflow.
import cgrseg.workflow as wf

wf.check_or_exit(config)  # the whole of params.yaml after --config: one line per bad key
wf.put_interpreter_on_path()

# Every file a run writes lies under RESULTS (results/<profile>): a fresh clone has no results/demo,
# so its first `snakemake` runs the whole DAG. Real data sets stay in params.yaml data_root.
RESULTS = wf.results_root(config)
DATA = wf.data_root(config)
RAW = wf.raw_root(config)
PREPARED = f"{DATA}/prepared"
WORK = wf.work_root(config)
DATASETS = list(config["datasets"])
VARIANTS = [str(v) for v in config["variants"]]
SEEDS = [int(s) for s in config["seeds"]]
GPU_PARTITION = config.get("slurm_gpu_partition", "gpu")
# one trained model: {dataset}/cgrseg-{variant}; one run of it: .../seed{seed}
MODEL = "{dataset}/cgrseg-{variant}"
RUN = MODEL + "/seed{seed}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
PAPER = "configs/paper/results.yaml"
HYPOTHESES_FILE = "configs/paper/hypotheses.yaml"
HYPOTHESES = wf.load_hypotheses_or_exit(HYPOTHESES_FILE)

FINAL_TARGETS = [
    f"{RESULTS}/metrics.json",
    *expand(f"{RESULTS}/tables/{{dataset}}.{{fmt}}", dataset=DATASETS, fmt=config["tables"]["formats"]),
    f"{RESULTS}/diff.md",
    f"{RESULTS}/diff.json",
    f"{RESULTS}/figures/miou_vs_gflops.png",
    f"{RESULTS}/figures/miou_vs_gflops.pdf",
]


wildcard_constraints:
    dataset="|".join(DATASETS),
    variant="|".join(VARIANTS),
    seed=r"\d+",
    arch="[a-z0-9]+",
    hypothesis="[A-Za-z0-9][A-Za-z0-9_-]*",
