"""params.yaml -> the arguments and resources of the Snakemake rules (workflow/rules/*.smk).

The rules stay one-line ``cgrseg`` calls; every decision that depends on the profile
(demo/paper), the data sources (synthetic/real) or the dataset is made here, where it is tested.
"""
import os
import shlex
import sys
from pathlib import Path


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
    """Fail early, with the offending key named, on values the rules cannot use."""
    profile(config)
    if config['profile'] == REFERENCE:
        raise ConfigError(f'params.yaml: profile {REFERENCE!r} would write into the committed '
                          f'snapshot results/{REFERENCE}/; rename it')
    if config.get('sources') not in ('synthetic', 'real'):
        raise ConfigError(f"params.yaml: sources must be 'synthetic' or 'real', not {config.get('sources')!r}")
    unknown = set(config.get('datasets', [])) - set(config.get('configs') or {})
    if unknown:
        raise ConfigError(f'params.yaml: no `configs` pattern for datasets {sorted(unknown)}')
    bad = set(map(str, config.get('variants', []))) - {'t', 'b', 'l'}
    if bad:
        raise ConfigError(f'params.yaml: unknown variants {sorted(bad)} (expected t, b, l)')
    per_variant = profile(config).get('iters')
    if isinstance(per_variant, dict):
        missing = set(map(str, config.get('variants', []))) - set(map(str, per_variant))
        if missing:
            # a missing variant would silently train the config's full schedule
            raise ConfigError(f"params.yaml: profiles.{config['profile']}.iters has no entry for "
                              f'variants {sorted(missing)}')


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
    return _flags([('--images', config.get('synth_images')), ('--seed', config.get('seed'))])


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
        ('--seed', config.get('seed')),
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
    args = []
    if dataset in config.get('aug_test', []):
        args.append('--aug-test')
    if is_demo(config):
        args.append('--demo')
    return ' '.join(args)


def throughput_args(config, dataset):
    """Paper resolution, or the demo's crop when the profile shortens the schedule (CPU in minutes)."""
    sched = profile(config)
    height, width = config['measure_shape'][dataset]
    if sched.get('crop') is not None:
        height = width = sched['crop']
    return _flags([('--repeats', sched.get('throughput_repeats'))]) + f' --shape {height} {width}'


def flops_shape(config, dataset):
    height, width = config['measure_shape'][dataset]
    return f'{height} {width}'


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
