"""Names shared by the DAG, the commands and the tables, each defined here once: the data sets, the
model variants and their backbones, where the backbone weights live, and where every result file lies
under a run's results root (``results/<preset>/``). Light on purpose: the Snakefile imports it.

The path patterns carry ``{dataset}``, ``{variant}``, ``{seed}`` and ``{hypothesis}`` fields, which
the Snakemake rules use as wildcards and the commands fill with ``str.format``.
"""
from pathlib import Path

DATASETS = ('ade20k', 'coco_stuff10k', 'pascal_context')
# CGRSeg variant -> its EfficientFormerV2 backbone (configs/_base_/models/cgrseg-{variant}.py)
VARIANT_BACKBONES = {'t': 's1', 'b': 's2', 'l': 'l'}
VARIANTS = tuple(VARIANT_BACKBONES)
# ImageNet weights of a backbone, as `cgrseg pretrained ARCH` writes them and the configs load them
BACKBONE_WEIGHTS = 'checkpoints/efficientformerv2_{arch}.pth'

PAPER_RESULTS = 'configs/paper/results.yaml'
HYPOTHESES = 'configs/paper/hypotheses.yaml'

# results/reference/<preset>: committed snapshots of finished runs, which no run writes
REFERENCE = 'reference'

# under results/<preset>/
EFFECTIVE_PARAMS = 'params.effective.yaml'
MODEL = 'cgrseg-{variant}'
RUN_METRICS = 'runs/{dataset}/cgrseg-{variant}/seed{seed}/metrics.json'
FLOPS = 'measure/{dataset}/cgrseg-{variant}.flops.json'
JUDGED_FLOPS = 'measure/judged/cgrseg-{variant}.flops.json'
HYPOTHESIS_FLOPS = 'measure/hypotheses/{hypothesis}.flops.json'
THROUGHPUT = 'measure/{dataset}/cgrseg-{variant}.throughput.json'
METRICS = 'metrics.json'
TABLES = 'tables'                       # {dataset}.{md,csv,tex}
DIFF = 'diff'                           # diff.md, diff.json
FIGURE = 'figures/miou_vs_gflops'       # .png, .pdf
WORK_DIRS = 'work_dirs'                 # {dataset}/cgrseg-{variant}/seed{seed}: checkpoints
SYNTHETIC_DATA = 'data'                 # synthetic archives and their prepared copy


def dataset_flops(dataset, judged, shape):
    """The pattern of a dataset's own flops file: for the judged dataset at the judged shape that is
    the judged measurement itself (one job, not two)."""
    if dataset == judged['dataset'] and list(shape) == list(judged['shape']):
        return JUDGED_FLOPS
    return FLOPS


def results_root(preset):
    """Where every file of a run of ``preset`` goes."""
    return f'results/{preset}'


def result_path(results, pattern, **fields):
    """``results / pattern`` with its fields filled."""
    return Path(results) / pattern.format(**fields)
