"""Pair every paper cell with its regenerated value and decide whether they can be compared.

A cell is *comparable* only when the protocol matches (same mIoU mode, a real run, same GPU model,
same input size where the paper states one); only comparable cells are judged within/outside
tolerance. Every other cell says why not, so nothing is compared as if it were real.
"""
from cgrseg.tables.collect import SEED_FIELD, hypothesis_key, key, model_name, result_paths
from cgrseg.tables.hypotheses import measurement_path
from cgrseg.tables.paper import cite, tolerance_text

WITHIN, OUTSIDE = 'within', 'outside'
PENDING, DEMO, OTHER_DEVICE = 'pending', 'demo', 'other_device'
NOT_COMPARABLE, NO_PAPER_VALUE = 'not_comparable', 'no_paper_value'
COMPARABLE = (WITHIN, OUTSIDE)
STATUSES = (WITHIN, OUTSIDE, PENDING, DEMO, OTHER_DEVICE, NOT_COMPARABLE, NO_PAPER_VALUE)

# Rounding guard so that a delta of exactly the tolerance counts as within.
EPS = 1e-9


def display_model(variant):
    return f'CGRSeg-{variant.upper()}'


def judge_all(paper, metrics, results='results', hypotheses=None):
    """One cell dict per (dataset, variant, column), in the paper's order."""
    cells = []
    for dataset, table in paper['tables'].items():
        for variant, row in table['rows'].items():
            for column in table['columns']:
                cell = judge_cell(paper, metrics, dataset, variant, column, results)
                tried = _hypotheses(cell, hypotheses or {}, metrics, paper, results)
                if tried or cell['status'] == OUTSIDE:  # an OUTSIDE cell says what was tried
                    cell['hypotheses'] = tried
                cells.append(cell)
    return cells


def judge_cell(paper, metrics, dataset, variant, column, results):
    table = paper['tables'][dataset]
    spec = paper['columns'][column]
    paper_cell = table['rows'][variant][column]

    def get(name):
        return metrics.get(key(dataset, variant, name))

    ours = get(column)
    cell = {
        'dataset': dataset, 'model': model_name(variant), 'variant': variant, 'column': column,
        'label': spec.get('label', column), 'paper': paper_cell['value'],
        'paper_source': cite(paper, paper_cell), 'ours': ours, 'delta': None,
        'tolerance': tolerance_text(spec), 'status': None, 'reason': '',
    }
    cell.update(_context(column, get, metrics, key(dataset, variant, '')))
    if ours is None:
        kind = {'mIoU': 'metrics', 'img_per_s': 'throughput'}.get(column, 'judged_flops')
        return _verdict(cell, PENDING, f'no {result_paths(results, dataset, variant)[kind]} yet')
    if column == 'mIoU' and get('mIoU_n') < get('mIoU_seeds'):   # both stand beside mIoU (collect.REQUIRES)
        return _verdict(cell, PENDING, f'{get("mIoU_n")} of {get("mIoU_seeds")} seeds evaluated '
                        f'so far (mean of those shown)')
    if cell['paper'] is None:
        return _verdict(cell, NO_PAPER_VALUE, 'the paper value was not found: '
                        + cell['paper_source'])
    cell['delta'] = round(ours - cell['paper'], 6)
    blocker = _blocker(column, table, get)
    if blocker:
        if blocker[0] == DEMO:
            cell['delta'] = None  # a demo number says nothing about the paper's
        return _verdict(cell, *blocker)
    within = abs(ours - cell['paper']) <= _allowed(spec, cell['paper']) + EPS
    return _verdict(cell, WITHIN if within else OUTSIDE, _note(column, get, dataset))


def _verdict(cell, status, reason):
    cell['status'] = status
    cell['reason'] = reason
    return cell


def _allowed(spec, paper_value):
    kind, value = next(iter(spec['tolerance'].items()))
    return value if kind == 'abs' else value * abs(paper_value)


_DATASET_MODEL = ('params_M_dataset', 'gflops_dataset', 'flops_input_dataset', 'num_classes_dataset')
CONTEXT = {
    'mIoU': ('mIoU_mode', 'mIoU_ss', 'demo', 'iters', 'mIoU_std', 'mIoU_n', 'mIoU_seeds'),
    'gflops': ('gflops_convention', 'flops_dataset', 'flops_classes', 'flops_input',
               'gflops_mmcv', 'gflops_conv_linear_macs', 'gflops_fvcore', *_DATASET_MODEL),
    'params_M': ('flops_dataset', 'flops_classes', 'flops_input', *_DATASET_MODEL),
    'img_per_s': ('throughput_device', 'throughput_device_name', 'throughput_batch_size',
                  'throughput_input', 'throughput_dtype', 'throughput_protocol', 'img_per_s_fixed',
                  'img_per_s_deploy'),
}


def _context(column, get, metrics, prefix):
    """The facts beside a value that decide comparability; kept in diff.json."""
    out = {name: get(name) for name in CONTEXT[column] if get(name) is not None}
    if column == 'mIoU':
        runs = {k.rsplit('.', 1)[1].removeprefix('mIoU_'): v for k, v in metrics.items()
                if k.startswith(prefix) and SEED_FIELD.fullmatch(k.rsplit('.', 1)[1])}
        if runs:
            out['mIoU_runs'] = runs
    return out


def _blocker(column, table, get):
    """(status, reason) when the regenerated value must not be judged against the paper."""
    if column == 'mIoU':
        if get('demo') is not False:
            return DEMO, 'demo run (synthetic data and/or demo schedule): never compared'
        if get('mIoU_mode') != table['mIoU_mode']:
            return NOT_COMPARABLE, (f'evaluated {_mode_text(get("mIoU_mode"))}, the paper '
                                    f'reports {_mode_text(table["mIoU_mode"])}')
    if column == 'gflops':
        paper_hw = table['gflops_input']['value']
        if paper_hw is not None and _hw_text(paper_hw) != get('flops_input'):
            return NOT_COMPARABLE, (f'counted at {get("flops_input")}, the paper at '
                                    f'{_hw_text(paper_hw)}')
    if column == 'img_per_s':
        return _throughput_blocker(table.get('throughput') or {}, get)
    return None


def _throughput_blocker(paper_tp, get):
    device_name = get('throughput_device_name')
    if get('throughput_device') != 'cuda':
        where = f', input {get("throughput_input")}' if get('throughput_input') else ''
        return OTHER_DEVICE, f'measured on CPU ({device_name}{where}): never compared'
    paper_gpu = (paper_tp.get('device_name') or {}).get('value')
    if not paper_gpu:
        return OTHER_DEVICE, (f'measured on {device_name}; the paper does not say which GPU '
                              'it used, so no device can match')
    if paper_gpu.lower() not in device_name.lower():
        return OTHER_DEVICE, f'measured on {device_name}, the paper on {paper_gpu}'
    paper_bs = (paper_tp.get('batch_size') or {}).get('value')
    if paper_bs is not None and paper_bs != get('throughput_batch_size'):
        return NOT_COMPARABLE, (f'batch size {get("throughput_batch_size")}, the paper '
                                f'used {paper_bs}')
    paper_hw = (paper_tp.get('input_shape') or {}).get('value')
    if paper_hw is not None and _hw_text(paper_hw) != get('throughput_input'):
        return NOT_COMPARABLE, (f'input {get("throughput_input")}, the paper used '
                                f'{_hw_text(paper_hw)}')
    return None


def _note(column, get, dataset):
    if column == 'gflops':
        fvcore = get('gflops_fvcore')
        note = (f'{_judged_text(get)}, {get("gflops_convention")} convention (mmseg 0.x '
                f'get_flops.py; conv/linear MACs {get("gflops_conv_linear_macs"):.3f}'
                + (f'; fvcore, with matmuls, {fvcore:.3f}' if fvcore is not None else '') + ')')
        return note + _dataset_text(get, dataset, 'gflops_dataset')
    if column == 'params_M':
        return _judged_text(get) + _dataset_text(get, dataset, 'params_M_dataset')
    if column == 'mIoU':
        if get('mIoU_n') > 1:
            return f'mean of {get("mIoU_n")} seeds, std {get("mIoU_std"):.2f}'
        return 'one run (one seed)'
    return f'same GPU model ({get("throughput_device_name")})'   # img_per_s: paper.COLUMNS has no other


def judged_model_text(dataset, classes):
    return f'the {dataset} model ({classes} classes)'


def _judged_text(get):
    return (f'judged: {judged_model_text(get("flops_dataset"), get("flops_classes"))} at '
            f'{get("flops_input")}, the figures the paper prints in every table')


def _dataset_text(get, dataset, name):
    if dataset == get('flops_dataset') or get(name) is None:
        return ''
    return (f"; this dataset's model ({get('num_classes_dataset')} classes, "
            f"{get('flops_input_dataset')}): {get(name):.3f}, not judged")


def _hypotheses(cell, hypotheses, metrics, paper, results):
    """The hypotheses that should explain this cell, each with its measured value and verdict."""
    spec = paper['columns'][cell['column']]
    tried = []
    for name, hyp in hypotheses.items():
        if hyp['variant'] != cell['variant'] or cell['column'] not in hyp['explains']:
            continue
        value = metrics.get(hypothesis_key(name, cell['column']))
        entry = {'name': name, 'cfg_options': hyp['cfg_options'], 'source': hyp['source'],
                 'measured': value, 'reproduces': None}
        if value is None:
            entry['status'] = f'pending: no {measurement_path(results, name)} yet'
        elif cell['paper'] is not None:
            entry['delta'] = round(value - cell['paper'], 6)
            entry['reproduces'] = abs(value - cell['paper']) <= _allowed(spec, cell['paper']) + EPS
        tried.append(entry)
    return tried


def _mode_text(mode):
    return {'ss': 'single-scale', 'ms': 'multi-scale', 'ms_flip': 'multi-scale + flip'}.get(mode, repr(mode))


def _hw_text(hw):
    return f'{hw[-2]}x{hw[-1]}'


def summarize(cells):
    counts = {status: sum(c['status'] == status for c in cells) for status in STATUSES}
    comparable = counts[WITHIN] + counts[OUTSIDE]
    return {'cells': len(cells), 'comparable': comparable,
            'not_comparable_total': len(cells) - comparable, **counts}


def summary_line(summary):
    others = [(PENDING, 'pending'), (DEMO, 'demo'), (OTHER_DEVICE, 'other device'),
              (NOT_COMPARABLE, 'other protocol'), (NO_PAPER_VALUE, 'no paper value')]
    parts = ', '.join(f'{label} {summary[s]}' for s, label in others if summary[s])
    return (f'{summary["cells"]} cells: {summary["comparable"]} comparable, '
            f'{summary[WITHIN]} within tolerance, {summary[OUTSIDE]} outside; '
            f'{summary["not_comparable_total"]} not compared' + (f' ({parts})' if parts else ''))
