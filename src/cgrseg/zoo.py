"""``cgrseg zoo``: model-zoo records of finished runs in OpenMMLab's metafile convention.

For every run: an entry of ``cgrseg.yml`` (``Name``, ``In Collection``, ``Metadata``: backbone, crop
size, lr schedule, batch size, GPUs, inference time with its hardware and protocol, training
memory; ``Results``: mIoU and the official multi-scale mIoU as measured; ``Config``; ``Weights``),
a ``model-index.yml`` importing it, and a published checkpoint made the way mmseg 0.x's
``.dev/gather_models.py`` makes one: the optimizer state removed, saved, and renamed
``{config}_{start time}-{first 8 hex digits of its sha256}.pth``, with the run's JSON logs beside it.
The output is checked with the ``model-index`` package and our own field checks before it replaces
the old one.
"""
import os
import re
import shutil
from pathlib import Path

from cgrseg.errors import CGRSegError

METAFILE = 'cgrseg.yml'
INDEX = 'model-index.yml'
COLLECTION = {
    'Name': 'CGRSeg',
    'Paper': {'URL': 'https://arxiv.org/abs/2405.06228',
              'Title': 'Context-Guided Spatial Feature Reconstruction for Efficient Semantic Segmentation'},
    'Code': {'URL': 'https://github.com/nizhenliang/CGRSeg'},
}
BACKBONES = {'t': 'EfficientFormerV2-S1', 'b': 'EfficientFormerV2-S2', 'l': 'EfficientFormerV2-L'}
DATASETS = {'ade20k': 'ADE20K', 'coco_stuff10k': 'COCO-Stuff 10k', 'pascal_context': 'Pascal Context 59'}
# metrics.json `mode` of the official protocol -> the metafile's name for it (ss: plain mIoU)
MULTI_SCALE = {'ss': None, 'ms': 'mIoU(ms)', 'ms_flip': 'mIoU(ms+flip)'}
REQUIRED = ('Name', 'In Collection', 'Metadata', 'Results', 'Config', 'Weights')
REQUIRED_METADATA = ('backbone', 'crop size', 'lr schd', 'batch size', 'GPUs',
                     'inference time (ms/im)', 'Training Memory (GB)')
_WEIGHTS = re.compile(r'.+-([0-9a-f]{8})\.pth')


def run_facts(run, config, work_root, results):
    """Everything an entry needs about one run, read from its result files and training logs."""
    from cgrseg.curves import parse_run, read_history
    from cgrseg.tables.collect import _read_json, result_paths, run_path
    part = parse_run(run)
    work_dir = Path(work_root) / run
    metrics = _read_json(run_path(results, part['dataset'], part['variant'], part['seed']))
    if metrics is None:
        raise CGRSegError(f'{run_path(results, part["dataset"], part["variant"], part["seed"])}: '
                          'not found (evaluate the run first)')
    history = read_history(work_dir)
    if not history['starts'] or not isinstance((history['meta'] or {}).get('cgrseg'), dict):
        raise CGRSegError(f'{work_dir}: no training log with the run description (cgrseg train writes it)')
    throughput = _read_json(result_paths(results, part['dataset'], part['variant'])['throughput'])
    return {**part, 'run': run, 'config': str(config), 'work_dir': work_dir, 'metrics': metrics,
            'history': history, 'throughput': throughput}


def _crop(facts):
    from cgrseg.mmseg_config import MODEL, load_config
    crop = facts['history']['meta']['cgrseg'].get('crop')
    if crop is None:
        crop = load_config(facts['config'], needs=MODEL).get('crop_size')
    height, width = (crop, crop) if isinstance(crop, int) else crop
    return f'({height},{width})'


def _inference_time(throughput):
    """mmseg's "inference time (ms/im)" from the paper protocol of throughput.json."""
    if throughput is None:
        return []
    bench = (throughput.get('protocols') or {}).get('mmseg_benchmark') or {}
    img_per_s = bench.get('img_per_s', throughput.get('img_per_s'))
    if not isinstance(img_per_s, (int, float)) or img_per_s <= 0:
        raise CGRSegError(f'throughput of {throughput.get("model")}: no positive img_per_s')
    test = bench.get('test_protocol') or {}
    return [{'value': round(1000 / img_per_s, 2), 'hardware': str(throughput.get('device_name')),
             'backend': 'PyTorch', 'batch size': bench.get('batch_size', 1),
             'mode': 'FP32' if bench.get('dtype', 'float32') == 'float32' else str(bench.get('dtype')),
             'resolution': str(test.get('description', 'the test pipeline')),
             'protocol': str(bench.get('description', throughput.get('protocol')))}]


def _memory(history):
    """mmcv logs `memory` (MB, torch.cuda.max_memory_allocated) on GPUs only."""
    values = [v for _, v in history['memory']]
    return round(max(values) / 1024, 2) if values else 'not measured (CPU run)'


def _metrics(metrics):
    single = ((metrics.get('protocols') or {}).get('single_scale') or {}).get('mIoU', metrics['mIoU'])
    out = {'mIoU': round(float(single), 2)}
    name = MULTI_SCALE.get(metrics.get('mode'))
    if name:
        out[name] = round(float(metrics['mIoU']), 2)
    return out


def entry(facts, name, weights):
    meta = facts['history']['meta']['cgrseg']
    gpus = int(meta.get('gpus') or 0)
    demo = bool(facts['metrics'].get('demo'))
    dataset = DATASETS.get(facts['dataset'], facts['dataset'])
    return {
        'Name': name,
        'In Collection': COLLECTION['Name'],
        'Metadata': {
            'backbone': BACKBONES.get(facts['variant'], facts['variant']),
            'crop size': _crop(facts),
            'lr schd': int(meta.get('iters') or facts['metrics'].get('iters')),
            'batch size': max(1, gpus) * int(meta.get('samples_per_gpu') or 0),
            'GPUs': gpus if gpus else '0 (CPU)',
            'inference time (ms/im)': _inference_time(facts['throughput']),
            'Training Memory (GB)': _memory(facts['history']),
            'seed': int(facts['seed']),
            'demo': demo,
        },
        'Results': [{'Task': 'Semantic Segmentation',
                     'Dataset': f'{dataset} (synthetic demo data)' if demo else dataset,
                     'Metrics': _metrics(facts['metrics'])}],
        'Config': facts['config'],
        'Weights': weights,
    }


def publish(checkpoint, folder, stem):
    """gather_models' process_checkpoint: drop the optimizer state, save, name by sha256 prefix."""
    import torch
    from cgrseg.io import sha256_file
    from cgrseg.runner.checkpoints import load
    state = load(checkpoint)   # weights only, as every checkpoint read
    state.pop('optimizer', None)
    folder.mkdir(parents=True, exist_ok=True)
    unnamed = folder / stem   # as gather_models: torch names the archive's root folder after it
    torch.save(state, unnamed)
    final = folder / f'{stem}-{sha256_file(unnamed)[:8]}.pth'
    os.replace(unnamed, final)
    return final


def gather(runs, configs, work_root, results, out):
    """Write ``out`` (replaced atomically): the metafile, model-index.yml, weights/ and logs."""
    from cgrseg.io import atomic_dir
    if len(runs) != len(configs):
        raise CGRSegError(f'--runs has {len(runs)} entries, --configs {len(configs)}')
    facts = [run_facts(r, c, work_root, results) for r, c in zip(runs, configs)]
    seeds_per_config = {}
    for f in facts:
        seeds_per_config[f['config']] = seeds_per_config.get(f['config'], 0) + 1
    with atomic_dir(out, 'zoo', [*configs, work_root]) as tmp:
        models = []
        for f in facts:
            stem = Path(f['config']).stem
            name = stem if seeds_per_config[f['config']] == 1 else f'{stem}_seed{f["seed"]}'
            folder = Path('weights') / f['run']
            weights = publish(Path(f['work_dir']) / 'latest.pth', tmp / folder,
                              f'{stem}_{f["history"]["starts"][0]}')
            for log in sorted(Path(f['work_dir']).glob('*.log.json')):
                shutil.copyfile(log, tmp / folder / f'{stem}_{log.name}')
            models.append(entry(f, name, f'{out}/{folder}/{weights.name}'))
        write_metafile(tmp, facts, models)
        problems = validate(tmp, weights_prefix=str(out))
        if problems:
            raise CGRSegError('\n'.join(problems))
    return models


def write_metafile(folder, facts, models):
    import yaml
    demo = any(f['metrics'].get('demo') for f in facts)
    collection = dict(COLLECTION, Metadata={'Training Data': sorted(
        {DATASETS.get(f['dataset'], f['dataset']) for f in facts})})
    header = ('# Written by `cgrseg zoo` (OpenMMLab metafile convention, as mmseg 0.x configs/*/*.yml).\n'
              + ('# DEMO runs: synthetic data and a shortened schedule, never comparable with the paper.\n'
                 if demo else ''))
    body = yaml.safe_dump({'Collections': [collection], 'Models': models}, sort_keys=False,
                          allow_unicode=True, width=100)
    (folder / METAFILE).write_text(header + body)
    (folder / INDEX).write_text(yaml.safe_dump({'Import': [METAFILE]}, sort_keys=False))


def validate(folder, weights_prefix=None):
    """Problems of a zoo folder, one line each: the model-index package's check, then the fields
    mmseg's metafiles carry, the config files, and each published checkpoint's sha256 prefix."""
    import modelindex
    import yaml
    from cgrseg.io import sha256_file
    folder = Path(folder)
    try:
        index = modelindex.load(str(folder / INDEX))
    except Exception as err:  # the package raises ValueError, OSError, YAML errors
        return [f'{folder / INDEX}: model-index cannot load it: {err}']
    problems = list(index.check(silent=True) or [])
    doc = yaml.safe_load((folder / METAFILE).read_text())
    collections = {c.get('Name') for c in doc.get('Collections') or []}
    for model in doc.get('Models') or []:
        where = f'{folder / METAFILE}: {model.get("Name")}'
        problems += [f'{where}: no {key}' for key in REQUIRED if key not in model]
        problems += [f'{where}: Metadata has no {key!r}' for key in REQUIRED_METADATA
                     if key not in (model.get('Metadata') or {})]
        if model.get('In Collection') not in collections:
            problems.append(f'{where}: In Collection {model.get("In Collection")!r} is not a collection')
        for result in model.get('Results') or []:
            if 'mIoU' not in (result.get('Metrics') or {}):
                problems.append(f'{where}: a result without mIoU')
        if not Path(str(model.get('Config'))).is_file():
            problems.append(f'{where}: Config {model.get("Config")} is not a file')
        problems += _weights_problems(folder, str(model.get('Weights')), where, weights_prefix, sha256_file)
    return problems


def _weights_problems(folder, weights, where, prefix, sha256_file):
    path = Path(weights)
    if prefix is not None and weights.startswith(f'{prefix}/'):
        path = folder / weights[len(prefix) + 1:]
    match = _WEIGHTS.fullmatch(path.name)
    if not match or not path.is_file():
        return [f'{where}: Weights {weights} is not a published checkpoint (NAME-SHA8.pth)']
    if sha256_file(path)[:8] != match.group(1):
        return [f'{where}: Weights {weights}: sha256 does not start with {match.group(1)}']
    return []


def run(args):
    try:
        models = gather(args.runs, args.configs, args.work_root, args.results, args.out)
    except OSError as err:
        raise CGRSegError(f'{args.out}: cannot write: {err.strerror or err}') from None
    print(f'{args.out}/{METAFILE}: {len(models)} models; {args.out}/{INDEX} checked with model-index')
    return 0


def add_parser(sub):
    p = sub.add_parser('zoo', help='model-zoo metafile (OpenMMLab) and published checkpoints of finished runs',
                       description=__doc__, formatter_class=__import__('argparse').RawDescriptionHelpFormatter)
    p.add_argument('--runs', nargs='+', required=True, metavar='RUN', help='DATASET/cgrseg-VARIANT/seedN')
    p.add_argument('--configs', nargs='+', required=True, metavar='CONFIG',
                   help='the config of each run, in the order of --runs')
    p.add_argument('--work-root', required=True, help='training work directories (results/<preset>/work_dirs)')
    p.add_argument('--results', required=True, help='results root (runs/, measure/)')
    p.add_argument('--out', required=True, help='output folder (results/<preset>/zoo), replaced atomically')
    p.set_defaults(func=run)
