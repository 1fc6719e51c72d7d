"""What the Snakemake rules (workflow/rules/*.smk) need beyond a params key: the checked params,
folders that depend on the preset or the data sources, the table stages read from dvc.yaml, and the
scheduling (priorities, threads, resources). The rules read every other value straight from
``config`` (the checked params.yaml), in the flag that uses it.
"""
import json
import os
import shlex
import sys
from pathlib import Path
from typing import NamedTuple

from cgrseg import layout
from cgrseg import params as params_schema
from cgrseg.errors import CGRSegError

# the data sources file of the official archives
SOURCES = 'configs/data/sources.yaml'
DVC_FILE = 'dvc.yaml'
CODE = 'src/'


def or_exit(read, *args):
    """``read(*args)``, or its error lines on stderr and exit status 2: a raised error would add
    Snakemake's file/line noise."""
    try:
        return read(*args)
    except CGRSegError as err:
        print(err, file=sys.stderr)
        sys.exit(2)


def effective_params(config):
    """params.yaml after --config: strings read as numbers where numbers belong, checked (one line
    per bad key), the schema's defaults added (cgrseg.params)."""
    config = params_schema.coerce(config)
    lines = params_schema.problems(config)
    if lines:
        raise CGRSegError('\n'.join(lines))
    return params_schema.with_defaults(config, params_schema.schema())


def params_json(config):
    """The effective params as the JSON `cgrseg params --values` records."""
    return json.dumps(config, sort_keys=False, separators=(',', ':'), default=str)


def preset(config):
    return params_schema.preset(config)


def results_root(config):
    """Where every file of a run goes: ``results/{preset}``. The demo's folder is gitignored, so a
    fresh clone's first command runs the whole DAG; ``results/reference/demo`` is never written."""
    return layout.results_root(config['preset'])


def data_root(config):
    """Synthetic data belong to the run that made them (``{results}/data``); real data sets live
    in params.yaml ``data_root``, shared by every preset."""
    if config['sources'] == 'synthetic':
        return f'{results_root(config)}/{layout.SYNTHETIC_DATA}'
    return config['data_root']


def raw_root(config):
    """Where `cgrseg download` puts the archives. Synthetic ones get their own folder: their names
    are the official ones, and a real download must never find (and keep) a synthetic archive."""
    sub = 'raw' if config['sources'] == 'real' else 'raw-synthetic'
    return f'{data_root(config)}/{sub}'


def work_root(config):
    """Training work directories (checkpoints; gitignored): params.yaml ``work_root``, by default
    one tree per preset, so that a paper run never resumes from a demo checkpoint."""
    return config.get('work_root') or f'{results_root(config)}/{layout.WORK_DIRS}'


def synthetic_sources(config, dataset):
    return f'{data_root(config)}/synthetic/{dataset}/sources.yaml'


def download_sources(config, dataset):
    """The sources file `cgrseg download` reads: the synthetic archives' or the official ones'."""
    if config['sources'] == 'synthetic':
        return synthetic_sources(config, dataset)
    return SOURCES


def download_inputs(config, dataset):
    """The synthetic sources file when the data are synthetic; nothing for the official archives."""
    return [synthetic_sources(config, dataset)] if config['sources'] == 'synthetic' else []


def pretrained_inputs(config, variant):
    """The backbone's ImageNet weights when the preset trains from them; nothing otherwise."""
    if not preset(config)['pretrained']:
        return []
    return [layout.BACKBONE_WEIGHTS.format(arch=layout.VARIANT_BACKBONES[variant])]


def model_config(config, dataset, variant):
    """The mmseg config a run of ``variant`` on ``dataset`` trains (params.yaml ``configs``)."""
    return config['configs'][dataset].format(variant=variant)


def train_iters(config, variant):
    """The preset's iterations for ``variant``: one number for all, or one per variant
    (``{t: 200, b: 4, l: 4}``); None keeps the config's own schedule."""
    iters = preset(config)['iters']
    return iters[variant] if isinstance(iters, dict) else iters


def is_demo(config):
    """True when results must never be compared with the paper: synthetic data or a shortened schedule."""
    block = preset(config)
    # the batch layout (gpus x samples_per_gpu) is not a shortening: 1x16 and 4x4 are the same protocol
    return config['sources'] == 'synthetic' or block['iters'] is not None or block['crop'] is not None


def throughput_shape(config, dataset):
    """Paper resolution, or the demo's crop when the preset shortens the schedule (CPU in minutes):
    the crop scales the test pipeline of the paper protocol as it does the evaluation's."""
    crop = preset(config)['crop']
    return [crop, crop] if crop is not None else config['measure_shape'][dataset]


def result_files(config, hypotheses):
    """Every per-run and per-model file the table stages read (the DAG's outputs under
    ``runs/`` and ``measure/``), as paths under the results root."""
    results, judged = results_root(config), config['judged_complexity']
    models = [(d, v) for d in config['datasets'] for v in config['variants']]
    files = [layout.RUN_METRICS.format(dataset=d, variant=v, seed=s)
             for d, v in models for s in config['seeds']]
    files += [layout.THROUGHPUT.format(dataset=d, variant=v) for d, v in models]
    files += [layout.dataset_flops(d, judged, config['measure_shape'][d]).format(dataset=d, variant=v)
              for d, v in models]
    files += [layout.JUDGED_FLOPS.format(variant=v) for v in config['variants']]
    files += [layout.HYPOTHESIS_FLOPS.format(hypothesis=h) for h in hypotheses]
    return [f'{results}/{f}' for f in dict.fromkeys(files)]


class Stage(NamedTuple):
    command: str
    inputs: list
    outputs: list   # a folder as Snakemake's directory()


def dvc_stages(config, produced, path=DVC_FILE):
    """{name: stage} of dvc.yaml as Snakemake rules need them, ``${preset}`` filled in: the command;
    the inputs (every dependency that is a file, the params files, and for a dependency that is a
    folder of results the DAG's files inside it, from ``produced``; the code under src/ is DVC's to
    track);
    the outputs, an output without a file suffix being a folder (tables/)."""
    from snakemake.io import directory

    from cgrseg.io import load_yaml
    stages = load_yaml(path, 'DVC pipeline').get('stages') or {}
    fill = _interpolation(path, config['preset'])
    out = {}
    for name, stage in stages.items():
        deps = [fill(d) for d in stage.get('deps', []) if not d.startswith(CODE)]
        inputs = [d for d in deps if not _is_folder(d)]
        inputs += [p for d in deps if _is_folder(d) for p in produced if p.startswith(f'{d}/')]
        inputs += [fill(next(iter(p))) for p in stage.get('params', []) if isinstance(p, dict)]
        outputs = [fill(next(iter(o)) if isinstance(o, dict) else o)
                   for section in ('outs', 'metrics') for o in stage.get(section, [])]
        out[name] = Stage(' '.join(fill(stage['cmd']).split()), list(dict.fromkeys(inputs)),
                          [directory(o) if _is_folder(o) else o for o in outputs])
    return out


def _is_folder(path):
    return Path(path).suffix == ''


def _interpolation(path, preset_name):
    """``${preset}`` -> the preset (a plain name: the schema allows letters, digits, _ and -, so the
    filled command needs no quoting); any other ``${...}`` is refused."""
    def fill(text):
        filled = text.replace('${preset}', preset_name)
        if '${' in filled or '{' in filled or shlex.quote(preset_name) != preset_name:
            raise CGRSegError(f'{path}: only ${{preset}} may be interpolated, and only with a plain name: '
                              f'{text!r}')
        return filled
    return fill


def load_hypotheses(path=layout.HYPOTHESES):
    """configs/paper/hypotheses.yaml, checked."""
    from cgrseg.tables.hypotheses import load_hypotheses as load
    return load(path)


# above any training's priority: the data gate every training
DATA_PRIORITY = 10 ** 9


def priority(config, rule, variant=None):
    """Snakemake priority on a few cores: first the data, then the longest trainings (most
    iterations), so that the run does not end with one long job on one busy core."""
    if rule in ('synth', 'download', 'prepare'):
        return DATA_PRIORITY
    if rule == 'train':
        return train_iters(config, variant) or 1
    return 0


def gpus(config):
    """GPUs a training job asks the scheduler for: the preset's count, at least one."""
    return max(1, preset(config)['gpus'])


def _rule_entry(config, rule):
    table = config['resources'].get(config['preset'], {})
    entry = dict(table.get('default', {}))
    entry.update(table.get(rule, {}))
    return entry


def threads(config, rule):
    return int(_rule_entry(config, rule).get('threads', 1))


def resources(config, rule):
    """Snakemake resources of a rule other than threads (mem_mb, runtime in minutes)."""
    entry = _rule_entry(config, rule)
    entry.pop('threads', None)
    return entry


def put_interpreter_on_path():
    """Let rules call `cgrseg` when Snakemake was started as .venv/bin/snakemake without activating
    the venv: the console script sits next to the interpreter running Snakemake (also on SLURM
    nodes, where the job step re-runs that interpreter)."""
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get('PATH', '')
    if bindir not in path.split(os.pathsep):
        os.environ['PATH'] = os.pathsep.join([bindir, path]) if path else bindir
