"""params.yaml -> the arguments and resources of the Snakemake rules (workflow/rules/*.smk).

The rules stay one-line ``cgrseg`` calls; every decision that depends on the profile
(demo/paper), the data sources (synthetic/real) or the dataset is made here, where it is tested.
"""
import json
import os
import shlex
import sys
from pathlib import Path

from cgrseg import params as params_schema


# EfficientFormerV2 backbone of each variant (configs/_base_/models/cgrseg-{variant}.py), whose
# ImageNet weights `cgrseg pretrained ARCH` writes to checkpoints/efficientformerv2_{arch}.pth.
BACKBONES = {'t': 's1', 'b': 's2', 'l': 'l'}
PRETRAINED = 'checkpoints/efficientformerv2_{arch}.pth'
# results/reference/<profile>: committed snapshots of finished runs, which no run writes
REFERENCE = 'reference'


class ConfigError(ValueError):
    """params.yaml (or a --config override) is inconsistent."""


def profile(config):
    """The schedule block of the selected profile (params.yaml `profiles[profile]`)."""
    name = config.get('profile')
    profiles = config.get('profiles', {})
    if name not in profiles:
        raise ConfigError(f'params.yaml: profile {name!r} is not one of {sorted(profiles)}')
    return profiles[name]


def check(config):
    """Fail early on values the rules cannot use: every problem of params.yaml (after --config),
    one line each naming the key (cgrseg.params)."""
    lines = params_schema.problems(config)
    if not lines and config['profile'] == REFERENCE:
        lines = [f'params.yaml: profile {REFERENCE!r} would write into the committed snapshot '
                 f'results/{REFERENCE}/; rename it']
    if lines:
        raise ConfigError('\n'.join(lines))


def check_or_exit(config):
    """For the Snakefile: read --config's strings as numbers where numbers belong (in place), then
    print every problem on its own line and stop with status 2 (a raised error would add
    Snakemake's file/line noise)."""
    config.update(params_schema.coerce(config))
    try:
        check(config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        sys.exit(2)


def is_demo(config):
    """True when results must never be compared with the paper: synthetic data or a shortened schedule."""
    sched = profile(config)
    # the batch layout (gpus x samples_per_gpu) is not a shortening: 1x16 and 4x4 are the same protocol
    shortened = any(sched.get(key) is not None for key in ('iters', 'crop'))
    return config['sources'] == 'synthetic' or shortened


def model_config(config, variant, dataset):
    return config['configs'][dataset].format(variant=variant)


def _flags(pairs):
    """'--name value' for every pair whose value is not None, shell-quoted."""
    return ' '.join(f'{name} {shlex.quote(str(value))}' for name, value in pairs if value is not None)


def results_root(config):
    """Where every file of a run goes: ``results/{profile}``. The demo's folder is gitignored, so a
    fresh clone's first command runs the whole DAG; ``results/reference/demo`` is never written."""
    return f"results/{config['profile']}"


def data_root(config):
    """Synthetic data belong to the run that made them (``{results}/data``); real data sets live
    in params.yaml ``data_root``, shared by every profile."""
    if config['sources'] == 'synthetic':
        return f'{results_root(config)}/data'
    return config['data_root']


def work_root(config):
    """Training work directories (checkpoints; gitignored): one tree per profile, so that a paper
    run never resumes from a demo checkpoint."""
    return f'{results_root(config)}/work_dirs'


def synth_args(config):
    return _flags([('--images', config.get('synth_images'))])


def raw_root(config):
    """Where `cgrseg download` puts the archives. Synthetic ones get their own folder: their names
    are the official ones, and a real download must never find (and keep) a synthetic archive."""
    sub = 'raw' if config['sources'] == 'real' else 'raw-synthetic'
    return f'{data_root(config)}/{sub}'


def download_args(config, dataset):
    """Where `cgrseg download` takes the archives from."""
    if config['sources'] == 'synthetic':
        return _flags([('--sources', synthetic_sources(config, dataset))])
    return _flags([('--from-dir', config.get('archive_dir'))])


def synthetic_sources(config, dataset):
    return f'{data_root(config)}/synthetic/{dataset}/sources.yaml'


def download_inputs(config, dataset):
    """The synthetic sources file when the data are synthetic; nothing for the official archives."""
    return [synthetic_sources(config, dataset)] if config['sources'] == 'synthetic' else []


def pretrained_inputs(config, variant):
    """The backbone's ImageNet weights when the profile trains from them; nothing otherwise."""
    if not profile(config).get('pretrained', True):
        return []
    return [PRETRAINED.format(arch=BACKBONES[variant])]


def train_iters(config, variant):
    """The profile's iterations for ``variant``: one number for all, or one per variant
    (``{t: 300, b: 4, l: 4}``); None keeps the config's own schedule."""
    iters = profile(config).get('iters')
    return iters[str(variant)] if isinstance(iters, dict) else iters


def train_args(config, variant):
    sched = profile(config)
    args = _flags([
        ('--gpus', sched.get('gpus')),
        ('--iters', train_iters(config, variant)),
        ('--crop', sched.get('crop')),
        ('--samples-per-gpu', sched.get('samples_per_gpu')),
        ('--train-repeat', sched.get('train_repeat')),
        ('--checkpoint-interval', sched.get('checkpoint_interval')),
    ])
    if not sched.get('pretrained', True):
        args += ' --no-pretrained'
    if not sched.get('validate', True):
        args += ' --no-validate'
    if sched.get('lr') is not None:   # last: --cfg-options takes every word after it
        args += f" --cfg-options optimizer.lr={sched['lr']}"
    return args


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


def evaluate_args(config, dataset):
    """The protocols come from the dataset's config (official + single scale), not from here."""
    return '--demo' if is_demo(config) else ''


def throughput_args(config, dataset):
    """Paper resolution, or the demo's crop when the profile shortens the schedule (CPU in minutes):
    the crop scales the test pipeline of the paper protocol as it does the evaluation's."""
    sched = profile(config)
    height, width = config['measure_shape'][dataset]
    if sched.get('crop') is not None:
        height = width = sched['crop']
    flags = _flags([('--repeats', sched.get('throughput_repeats')), ('--iters', sched.get('throughput_iters')),
                    ('--images', sched.get('throughput_images')), ('--crop', sched.get('crop'))])
    return f'--deploy {flags} --shape {height} {width}'


def flops_shape(config, dataset):
    height, width = config['measure_shape'][dataset]
    return f'{height} {width}'


def dataset_flops_outputs(config, results='results'):
    """The per-dataset flops files collect reads: the judged dataset at the judged shape is
    measured once, by flops_judged."""
    from cgrseg.tables.collect import dataset_flops_path
    return [str(dataset_flops_path(results, d, v, config['judged_complexity'],
                                   config['measure_shape'][d]))
            for d in config['datasets'] for v in config['variants']]


def judged_config(config, variant):
    """The model whose params/GFLOPs every table judges (params.yaml judged_complexity)."""
    return model_config(config, variant, config['judged_complexity']['dataset'])


def judged_shape(config):
    height, width = config['judged_complexity']['shape']
    return f'{height} {width}'


def load_hypotheses_or_exit(path):
    """configs/paper/hypotheses.yaml, checked; a bad file stops the DAG with one line."""
    from cgrseg.errors import CGRSegError
    from cgrseg.tables.hypotheses import load_hypotheses
    try:
        return load_hypotheses(path)
    except CGRSegError as err:
        print(err, file=sys.stderr)
        sys.exit(2)


def hypothesis_config(config, hypotheses, name):
    return judged_config(config, hypotheses[name]['variant'])


def hypothesis_args(config, hypotheses, name):
    """The judged shape and the hypothesis' config changes, for `cgrseg flops`."""
    from cgrseg.tables.hypotheses import cfg_option_args
    options = ' '.join(shlex.quote(o) for o in cfg_option_args(hypotheses[name]))
    return f'--shape {judged_shape(config)} --cfg-options {options}'


def collect_args(config):
    """The effective (after --config) values collect reads, as --params-json."""
    from cgrseg.tables.collect import PARAM_KEYS
    subset = {name: config[name] for name in PARAM_KEYS}
    return '--params-json ' + shlex.quote(json.dumps(subset, separators=(',', ':')))


def tables_args(config):
    return '--formats ' + ' '.join(config['tables']['formats'])


def diff_args(config):
    return '--strict' if config['tables'].get('strict') else ''


def gpus(config):
    """GPUs a training job asks the scheduler for: the profile's count, at least one."""
    return max(1, int(profile(config).get('gpus') or 0))


def _rule_entry(config, rule):
    table = config.get('resources', {}).get(config['profile'], {})
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
