"""Pair every paper cell with its regenerated value and decide whether they can be compared.

A cell is *comparable* only when the protocol matches (same mIoU mode, a real run, same GPU model,
same input size where the paper states one); only comparable cells are judged within/outside
tolerance. Every other cell says why not, so nothing is compared as if it were real.
"""
from cgrseg.tables.collect import key, model_name, result_paths
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


def judge_all(paper, metrics, results='results'):
    """One cell dict per (dataset, variant, column), in the paper's order."""
    cells = []
    for dataset, table in paper['tables'].items():
        for variant, row in table['rows'].items():
            for column in table['columns']:
                cells.append(judge_cell(paper, metrics, dataset, variant, column, results))
    return cells


def judge_cell(paper, metrics, dataset, variant, column, results='results'):
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
    cell.update(_context(column, get))
    if ours is None:
        kind = {'mIoU': 'metrics', 'img_per_s': 'throughput'}.get(column, 'flops')
        return _verdict(cell, PENDING, f'no {result_paths(results, dataset, variant)[kind]} yet')
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
    return _verdict(cell, WITHIN if within else OUTSIDE, _note(column, table, get))


def _verdict(cell, status, reason):
    cell['status'] = status
    cell['reason'] = reason
    return cell


def _allowed(spec, paper_value):
    kind, value = next(iter(spec['tolerance'].items()))
    return value if kind == 'abs' else value * abs(paper_value)


def _context(column, get):
    """The facts beside a value that decide comparability; kept in diff.json."""
    names = {
        'mIoU': ('mIoU_mode', 'mIoU_ss', 'demo', 'iters'),
        'gflops': ('gflops_mmcv', 'flops_input'),
        'params_M': (),
        'img_per_s': ('throughput_device', 'throughput_device_name', 'throughput_batch_size',
                      'throughput_input', 'throughput_dtype', 'throughput_protocol', 'img_per_s_fixed',
                      'img_per_s_deploy'),
    }[column]
    return {name: get(name) for name in names if get(name) is not None}


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


def _note(column, table, get):
    if column == 'gflops':
        note = f'conv_linear_macs at {get("flops_input")}; mmcv count {get("gflops_mmcv"):.3f}'
        if table['gflops_input']['value'] is None:
            note += "; the paper's input size is not stated"
        if table['gflops_input'].get('note'):
            note += '; ' + table['gflops_input']['note']
        return note
    if column == 'img_per_s':
        return f'same GPU model ({get("throughput_device_name")})'
    return ''


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
