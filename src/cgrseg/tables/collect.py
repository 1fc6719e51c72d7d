"""Gather the per-run result files into one flat metrics document (DVC ``metrics:``).

Keys are ``{dataset}.cgrseg-{v}.{name}`` (and ``hypotheses.{name}.{field}`` for the measured
hypotheses); a result file that does not exist yet simply contributes no keys, which the tables and
the diff show as "pending". Layout and fields: docs/tables.md and docs/results-schema.md.

- mIoU/mAcc/aAcc: the mean over the seeds' runs, with ``mIoU_std`` (sample std, from 2 runs on),
  ``mIoU_n`` (runs found), ``mIoU_seeds`` (runs asked for) and each run as ``mIoU_seed{s}``.
- params_M/gflops: the judged model (params.yaml ``judged_complexity``: the ADE20K model at 512x512,
  mmcv convention) in every table; ``*_dataset``: the dataset's own model at ``measure_shape``.
"""
import math
import numbers
import re
from pathlib import Path

from cgrseg import layout, schemas
from cgrseg.errors import CGRSegError
from cgrseg.io import read_json
from cgrseg.tables.hypotheses import measurement_path

# the params.yaml keys collect reads
PARAM_KEYS = ('datasets', 'variants', 'seeds', 'measure_shape', 'judged_complexity')

NUMBER, COUNT, TEXT, FLAG = 'a number', 'a positive integer', 'a string', 'true or false'
# What each name of the document holds (checked when tables/diff/figure read it).
FIELDS = {
    'mIoU': NUMBER, 'mAcc': NUMBER, 'aAcc': NUMBER, 'mIoU_std': NUMBER,
    'mIoU_n': COUNT, 'mIoU_seeds': COUNT, 'mIoU_mode': TEXT, 'demo': FLAG, 'iters': COUNT,
    'params_M': NUMBER, 'gflops': NUMBER, 'gflops_convention': TEXT, 'flops_input': TEXT,
    'flops_dataset': TEXT, 'flops_classes': COUNT, 'gflops_mmcv': NUMBER, 'gflops_conv_linear_macs': NUMBER,
    'gflops_fvcore': NUMBER,
    'params_M_dataset': NUMBER, 'gflops_dataset': NUMBER, 'flops_input_dataset': TEXT,
    'num_classes_dataset': COUNT,
    'img_per_s': NUMBER, 'throughput_device': TEXT, 'throughput_device_name': TEXT,
    'throughput_batch_size': COUNT, 'throughput_input': TEXT, 'throughput_dtype': TEXT,
    'mIoU_ss': NUMBER, 'throughput_protocol': TEXT, 'img_per_s_fixed': NUMBER, 'img_per_s_deploy': NUMBER,
}
SEED_FIELD = re.compile(r'mIoU_seed\d+')
# a value the judge uses needs the facts that decide how it is judged
REQUIRES = {
    'mIoU': ('mIoU_mode', 'demo', 'mIoU_n', 'mIoU_seeds'),
    'params_M': ('flops_dataset', 'flops_classes', 'flops_input'),
    'gflops': ('gflops_convention', 'flops_input', 'flops_dataset', 'flops_classes', 'gflops_mmcv',
               'gflops_conv_linear_macs'),
    'img_per_s': ('throughput_device', 'throughput_device_name'),
}


def model_name(variant):
    return layout.MODEL.format(variant=variant)


def key(dataset, variant, name):
    return f'{dataset}.{model_name(variant)}.{name}'


def hypothesis_key(name, field):
    return f'hypotheses.{name}.{field}'


def run_path(results, dataset, variant, seed):
    return layout.result_path(results, layout.RUN_METRICS, dataset=dataset, variant=variant, seed=seed)


def result_paths(results, dataset, variant):
    return {
        'metrics': layout.result_path(results, layout.RUN_METRICS, dataset=dataset, variant=variant,
                                      seed='*'),
        'judged_flops': judged_path(results, variant),
        'throughput': layout.result_path(results, layout.THROUGHPUT, dataset=dataset, variant=variant),
    }


def judged_path(results, variant):
    return layout.result_path(results, layout.JUDGED_FLOPS, variant=variant)


def load_params(path):
    """The params keys collect reads, checked (params.yaml or a run's params.effective.yaml)."""
    from cgrseg.params import load
    return load(path, keys=PARAM_KEYS)


def collect(params, results, hypotheses=None):
    """Read every run's result files; return the flat document in a stable key order."""
    out = {}
    judged = params['judged_complexity']
    for dataset in params['datasets']:
        for variant in params['variants']:
            out.update(_runs(results, dataset, variant, params['seeds']))
            out.update(_complexity(results, dataset, variant, judged,
                                   params['measure_shape'][dataset]))
            path = result_paths(results, dataset, variant)['throughput']
            doc = _result(path, 'throughput')
            if doc is not None:
                _check_identity(path, doc, dataset, variant)
                out.update({key(dataset, variant, k): v for k, v in _from_throughput(path, doc).items()})
    for name, hyp in (hypotheses or {}).items():
        out.update(_hypothesis(results, name, hyp, judged))
    return out


def _runs(results, dataset, variant, seeds):
    runs = {}
    for seed in seeds:
        path = run_path(results, dataset, variant, seed)
        doc = _result(path, 'metrics')
        if doc is not None:
            _check_identity(path, doc, dataset, variant)
            runs[seed] = (path, _from_metrics(path, doc))
    if not runs:
        return {}
    first_path, first = next(iter(runs.values()))
    for path, run in runs.values():
        for field in ('mIoU_mode', 'demo', 'iters'):
            if run.get(field) != first.get(field):
                raise CGRSegError(f'{path}: "{field}" is {run.get(field)!r} but {first_path} has '
                                  f'{first.get(field)!r}; the seeds of one model must share a protocol')
    out = {}
    for name in ('mIoU', 'mAcc', 'aAcc', 'mIoU_ss'):
        values = [run[name] for _, run in runs.values() if name in run]
        if len(values) == len(runs):
            out[name] = round(sum(values) / len(values), 4)
    values = [run['mIoU'] for _, run in runs.values()]
    if len(values) > 1:
        mean = sum(values) / len(values)
        out['mIoU_std'] = round(math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)), 4)
    out.update({'mIoU_n': len(runs), 'mIoU_seeds': len(seeds)})
    out.update({f'mIoU_seed{seed}': run['mIoU'] for seed, (_, run) in runs.items()})
    out.update({field: first[field] for field in ('mIoU_mode', 'demo', 'iters') if field in first})
    return {key(dataset, variant, name): value for name, value in out.items()}


def _complexity(results, dataset, variant, judged, shape):
    out = {}
    path = judged_path(results, variant)
    doc = _result(path, 'flops')
    if doc is not None:
        _check_identity(path, doc, judged['dataset'], variant)
        flops = _from_flops(path, doc, judged['shape'], 'judged_complexity.shape')
        out.update({
            'params_M': flops['params_M'], 'gflops': flops[judged['gflops']],
            'gflops_convention': judged['gflops'], 'flops_input': flops['input'],
            'flops_dataset': judged['dataset'], 'flops_classes': flops['num_classes'],
            'gflops_mmcv': flops['mmcv'], 'gflops_conv_linear_macs': flops['conv_linear_macs'],
        })
        if 'fvcore' in flops:   # shown beside the judged count, never judged
            out['gflops_fvcore'] = flops['fvcore']
    path = layout.result_path(results, layout.dataset_flops(dataset, judged, shape), dataset=dataset,
                              variant=variant)
    doc = _result(path, 'flops')
    if doc is not None:
        _check_identity(path, doc, dataset, variant)
        flops = _from_flops(path, doc, shape, f'measure_shape.{dataset}')
        out.update({'params_M_dataset': flops['params_M'],
                    'gflops_dataset': flops[judged['gflops']],
                    'flops_input_dataset': flops['input'],
                    'num_classes_dataset': flops['num_classes']})
    return {key(dataset, variant, name): value for name, value in out.items()}


def _hypothesis(results, name, hyp, judged):
    path = measurement_path(results, name)
    doc = _result(path, 'flops')
    if doc is None:
        return {}
    _check_identity(path, doc, judged['dataset'], hyp['variant'])
    if doc.get('cfg_options') != hyp['cfg_options']:
        raise CGRSegError(f'{path}: measured with cfg_options {doc.get("cfg_options")!r} but the '
                          f'hypothesis has {hyp["cfg_options"]!r}; re-run cgrseg flops')
    flops = _from_flops(path, doc, judged['shape'], 'judged_complexity.shape')
    return {hypothesis_key(name, 'params_M'): flops['params_M'],
            hypothesis_key(name, 'gflops'): flops[judged['gflops']],
            hypothesis_key(name, 'flops_input'): flops['input']}


def _read_json(path, holds='a JSON object'):
    """The JSON object in ``path``, None when there is no such file; anything else is one line."""
    doc = read_json(path, 'result file', optional=True)
    if doc is not None and not isinstance(doc, dict):
        raise CGRSegError(f'{path}: must hold {holds}')
    return doc


def _result(path, schema):
    """A result file checked against its schema (workflow/schemas/), None when it does not exist."""
    doc = _read_json(path)
    problem = doc is not None and schemas.problem(doc, schema)
    if problem:
        raise CGRSegError(f'{path}: {problem}')
    return doc


def _check_identity(path, doc, dataset, variant):
    # A file copied into the wrong run directory would silently fill the wrong cell.
    for field, expected in (('dataset', dataset), ('variant', variant),
                            ('model', model_name(variant))):
        if field in doc and doc[field] != expected:
            raise CGRSegError(f'{path}: "{field}" is {doc[field]!r} but the path says {expected!r}')


def _number(path, doc, *fields):
    """A number the schema has checked, refused when infinite (JSON's 1e999; a schema cannot say finite)."""
    value = doc
    for field in fields:
        value = value[field]
    if not math.isfinite(value):
        raise CGRSegError(f'{path}: "{".".join(fields)}" must be a finite number, got {value!r}')
    return float(value)


def is_number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _from_metrics(path, doc):
    out = {'mIoU': _number(path, doc, 'mIoU')}
    for name in ('mAcc', 'aAcc'):
        if doc.get(name) is not None:
            out[name] = _number(path, doc, name)
    out['mIoU_mode'] = doc['mode']
    single = (doc.get('protocols') or {}).get('single_scale')
    if single and single.get('mIoU') is not None:
        out['mIoU_ss'] = _number(path, doc, 'protocols', 'single_scale', 'mIoU')
    out['demo'] = doc['demo']
    if doc.get('iters') is not None:
        out['iters'] = doc['iters']
    return out


def _from_flops(path, doc, hw, setting):
    shape = doc['input_shape']
    if shape[1:] != list(hw):
        raise CGRSegError(f'{path}: measured at {shape[1]}x{shape[2]} but params.yaml {setting} '
                          f'asks for {hw[0]}x{hw[1]}; re-run cgrseg flops')
    out = {'params_M': _number(path, doc, 'params_M'),
           'mmcv': _number(path, doc, 'gflops', 'mmcv'),
           'conv_linear_macs': _number(path, doc, 'gflops', 'conv_linear_macs'),
           'input': f'{shape[1]}x{shape[2]}', 'num_classes': doc['num_classes']}
    if 'fvcore' in doc['gflops']:
        out['fvcore'] = _number(path, doc, 'gflops', 'fvcore')
    return out


def _from_throughput(path, doc):
    out = {'img_per_s': _number(path, doc, 'img_per_s'), 'throughput_device': doc['device'],
           'throughput_device_name': doc['device_name']}
    for field, name in (('batch_size', 'throughput_batch_size'), ('dtype', 'throughput_dtype'),
                        ('protocol', 'throughput_protocol')):
        if field in doc:
            out[name] = doc[field]
    if 'input_shape' in doc:
        out['throughput_input'] = '{1}x{2}'.format(*doc['input_shape'])
    for name, protocol in (('img_per_s_fixed', 'fixed_size'), ('img_per_s_deploy', 'mmseg_benchmark_deploy')):
        if protocol in (doc.get('protocols') or {}):
            out[name] = _number(path, doc, 'protocols', protocol, 'img_per_s')
    return out


def load_metrics(path):
    """Read a document written by collect, for tables/diff/figure; every value checked."""
    path = Path(path)
    doc = _read_json(path, 'a JSON object of "dataset.model.name" keys')
    if doc is None:
        raise CGRSegError(f'{path}: metrics not found (run cgrseg collect first)')
    problem = _metrics_problem(doc)
    if problem:
        raise CGRSegError(f'{path}: {problem}')
    return doc


def _metrics_problem(doc):
    for name, value in doc.items():
        parts = name.split('.')
        if len(parts) != 3 or not all(parts):
            return f'key {name!r} is not "dataset.model.name"'
        kind = NUMBER if SEED_FIELD.fullmatch(parts[2]) else FIELDS.get(parts[2])
        if parts[0] == 'hypotheses':
            kind = {'params_M': NUMBER, 'gflops': NUMBER, 'flops_input': TEXT}.get(parts[2])
        if not _has_kind(value, kind):
            return f'"{name}" must be {kind or "a number, string or true/false"}, got {value!r}'
    for name in doc:
        prefix, _, field = name.rpartition('.')
        for needed in REQUIRES.get(field, ()) if not prefix.startswith('hypotheses.') else ():
            if f'{prefix}.{needed}' not in doc:
                return f'"{name}" needs "{prefix}.{needed}" beside it (re-run cgrseg collect)'
    return None


def _has_kind(value, kind):
    if kind == NUMBER:
        return is_number(value)
    if kind == COUNT:
        return _is_count(value)
    if kind == TEXT:
        return isinstance(value, str)
    if kind == FLAG:
        return isinstance(value, bool)
    return is_number(value) or isinstance(value, (str, bool))  # a field this code does not know
