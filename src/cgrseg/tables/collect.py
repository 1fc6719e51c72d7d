"""Gather the per-run result files into one flat metrics document (DVC ``metrics:``).

Keys are ``{dataset}.cgrseg-{v}.{name}``; a result file that does not exist yet simply contributes
no keys, which the tables and the diff show as "pending". Layout and fields: docs/results-schema.md.
"""
import json
import numbers
from pathlib import Path

from cgrseg.errors import CGRSegError
from cgrseg.io import load_yaml
from cgrseg.tables.paper import MIOU_MODES


def model_name(variant):
    return f'cgrseg-{variant}'


def key(dataset, variant, name):
    return f'{dataset}.{model_name(variant)}.{name}'


def result_paths(results, dataset, variant):
    results = Path(results)
    model = model_name(variant)
    return {
        'metrics': results / 'runs' / dataset / model / 'metrics.json',
        'flops': results / 'measure' / dataset / f'{model}.flops.json',
        'throughput': results / 'measure' / dataset / f'{model}.throughput.json',
    }


def load_params(path):
    """The keys of params.yaml that collect uses: datasets, variants, measure_shape."""
    params = load_yaml(path, 'params')
    for name in ('datasets', 'variants'):
        if not isinstance(params.get(name), list) or not params[name]:
            raise CGRSegError(f'{path}: "{name}" must be a non-empty list')
    shapes = params.get('measure_shape')
    for dataset in params['datasets']:
        shape = shapes.get(dataset) if isinstance(shapes, dict) else None
        if not _is_shape(shape, 2):
            raise CGRSegError(f'{path}: measure_shape.{dataset} must be [H, W]')
    return params


def collect(params, results):
    """Read every run's result files; return the flat document in a stable key order."""
    out = {}
    for dataset in params['datasets']:
        for variant in params['variants']:
            paths = result_paths(results, dataset, variant)
            hw = params['measure_shape'][dataset]
            for kind, reader in (('metrics', _from_metrics), ('flops', _from_flops),
                                 ('throughput', _from_throughput)):
                doc = _read_json(paths[kind])
                if doc is None:
                    continue
                _check_identity(paths[kind], doc, dataset, variant)
                for name, value in reader(paths[kind], doc, hw).items():
                    out[key(dataset, variant, name)] = value
    return out


def _read_json(path):
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CGRSegError(f'{path}: not valid JSON ({err})') from None
    if not isinstance(doc, dict):
        raise CGRSegError(f'{path}: must hold a JSON object')
    return doc


def _check_identity(path, doc, dataset, variant):
    # A file copied into the wrong run directory would silently fill the wrong cell.
    for field, expected in (('dataset', dataset), ('variant', variant),
                            ('model', model_name(variant))):
        if field in doc and doc[field] != expected:
            raise CGRSegError(f'{path}: "{field}" is {doc[field]!r} but the path says {expected!r}')


def _number(path, doc, *fields):
    value = doc
    for field in fields:
        value = value.get(field) if isinstance(value, dict) else None
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise CGRSegError(f'{path}: "{".".join(fields)}" must be a number, got {value!r}')
    return float(value)


def _is_shape(shape, length):
    return (isinstance(shape, list) and len(shape) == length
            and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in shape))


def _from_metrics(path, doc, hw):
    mode = doc.get('mode')
    if mode not in MIOU_MODES:
        raise CGRSegError(f'{path}: "mode" must be one of {", ".join(MIOU_MODES)}, got {mode!r}')
    if not isinstance(doc.get('demo'), bool):
        raise CGRSegError(f'{path}: "demo" must be true or false')
    out = {'mIoU': _number(path, doc, 'mIoU')}
    for name in ('mAcc', 'aAcc'):
        if doc.get(name) is not None:
            out[name] = _number(path, doc, name)
    out['mIoU_mode'] = mode
    single = (doc.get('protocols') or {}).get('single_scale')
    if isinstance(single, dict) and single.get('mIoU') is not None:
        out['mIoU_ss'] = _number(path, doc, 'protocols', 'single_scale', 'mIoU')
    out['demo'] = doc['demo']
    if isinstance(doc.get('iters'), int):
        out['iters'] = doc['iters']
    return out


def _from_flops(path, doc, hw):
    shape = doc.get('input_shape')
    if not _is_shape(shape, 3):
        raise CGRSegError(f'{path}: "input_shape" must be [C, H, W], got {shape!r}')
    if shape[1:] != list(hw):
        raise CGRSegError(f'{path}: measured at {shape[1]}x{shape[2]} but params.yaml measure_shape '
                       f'asks for {hw[0]}x{hw[1]}; re-run cgrseg flops')
    return {
        'params_M': _number(path, doc, 'params_M'),
        'gflops': _number(path, doc, 'gflops', 'conv_linear_macs'),
        'gflops_mmcv': _number(path, doc, 'gflops', 'mmcv'),
        'flops_input': f'{shape[1]}x{shape[2]}',
    }


def _from_throughput(path, doc, hw):
    out = {'img_per_s': _number(path, doc, 'img_per_s')}
    if doc.get('device') not in ('cuda', 'cpu'):
        raise CGRSegError(f'{path}: "device" must be "cuda" or "cpu", got {doc.get("device")!r}')
    out['throughput_device'] = doc['device']
    if not isinstance(doc.get('device_name'), str) or not doc['device_name']:
        raise CGRSegError(f'{path}: "device_name" must be a non-empty string')
    out['throughput_device_name'] = doc['device_name']
    if isinstance(doc.get('batch_size'), int):
        out['throughput_batch_size'] = doc['batch_size']
    shape = doc.get('input_shape')
    if _is_shape(shape, 3):
        out['throughput_input'] = f'{shape[1]}x{shape[2]}'
    if isinstance(doc.get('dtype'), str):
        out['throughput_dtype'] = doc['dtype']
    if isinstance(doc.get('protocol'), str):
        out['throughput_protocol'] = doc['protocol']
    for name, protocol in (('img_per_s_fixed', 'fixed_size'), ('img_per_s_deploy', 'mmseg_benchmark_deploy')):
        if protocol in (doc.get('protocols') or {}):
            out[name] = _number(path, doc, 'protocols', protocol, 'img_per_s')
    return out


def load_metrics(path):
    """Read a document written by collect, for tables/diff/figure."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise CGRSegError(f'{path}: metrics not found (run cgrseg collect first)') from None
    except (OSError, ValueError) as err:
        raise CGRSegError(f'{path}: not valid JSON ({err})') from None
    if not isinstance(doc, dict):
        raise CGRSegError(f'{path}: must hold a JSON object of "dataset.model.name" keys')
    return doc
