"""Load and check ``configs/paper/results.yaml``: the published numbers and their sources."""
import numbers

from cgrseg.errors import CGRSegError
from cgrseg.io import load_yaml

COLUMNS = ('mIoU', 'params_M', 'gflops', 'img_per_s')
MIOU_MODES = ('ss', 'ms', 'ms_flip')


def load_paper(path):
    """Return the paper document, checked: every cell has a number or null and a known source."""
    data = load_yaml(path, 'paper results')
    problem = _check_paper(data)
    if problem:
        raise CGRSegError(f'{path}: {problem}')
    return data


def _check_paper(data):
    for key in ('sources', 'columns', 'tables'):
        if not isinstance(data.get(key), dict) or not data[key]:
            return f'missing or empty "{key}" mapping'
    problem = _check_columns(data['columns'])
    if problem:
        return problem
    for dataset, table in data['tables'].items():
        problem = _check_table(table, data['columns'], data['sources'])
        if problem:
            return f'tables.{dataset}: {problem}'
    return None


def _check_columns(columns):
    for name, spec in columns.items():
        if name not in COLUMNS:
            return f'columns.{name}: unknown column (known: {", ".join(COLUMNS)})'
        tol = spec.get('tolerance') if isinstance(spec, dict) else None
        if not isinstance(tol, dict) or len(tol) != 1 or next(iter(tol)) not in ('abs', 'rel'):
            return f'columns.{name}.tolerance: must be {{abs: X}} or {{rel: X}}'
        value = next(iter(tol.values()))
        if not _is_number(value) or value < 0:
            return f'columns.{name}.tolerance: must be a non-negative number, got {value!r}'
    return None


def _check_table(table, columns, sources):
    if not isinstance(table, dict):
        return 'must be a mapping'
    cols = table.get('columns')
    if not isinstance(cols, list) or not cols:
        return 'missing "columns" list'
    unknown = [c for c in cols if c not in columns]
    if unknown:
        return f'columns {unknown} have no entry under the top-level "columns"'
    if table.get('mIoU_mode') not in MIOU_MODES:
        return f'mIoU_mode must be one of {", ".join(MIOU_MODES)}'
    for key in ('gflops_input',):
        problem = _check_cell(table.get(key), sources)
        if problem:
            return f'{key}: {problem}'
    for key, cell in (table.get('throughput') or {}).items():
        problem = _check_cell(cell, sources, numeric=False)
        if problem:
            return f'throughput.{key}: {problem}'
    rows = table.get('rows')
    if not isinstance(rows, dict) or not rows:
        return 'missing "rows" mapping'
    for variant, row in rows.items():
        for col in cols:
            problem = _check_cell((row or {}).get(col), sources)
            if problem:
                return f'rows.{variant}.{col}: {problem}'
    return None


def _check_cell(cell, sources, numeric=True):
    if not isinstance(cell, dict) or 'value' not in cell or 'source' not in cell:
        return 'must be {value: ..., source: ...}'
    value = cell['value']
    if numeric and value is not None and not _is_number(value):
        return f'value must be a number or null, got {value!r}'
    if numeric is False and isinstance(value, bool):
        return f'value must be a name, number or null, got {value!r}'
    for key in cell_sources(cell):
        if key not in sources:
            return f'source "{key}" is not listed under "sources"'
    return None


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def cell_sources(cell):
    src = cell['source']
    return [src] if isinstance(src, str) else list(src)


def cite(paper, cell):
    """The human-readable citation of a paper cell, e.g. "authors' README, text tables"."""
    return '; '.join(paper['sources'][key]['cite'] for key in cell_sources(cell))


def tolerance_text(spec):
    kind, value = next(iter(spec['tolerance'].items()))
    return f'±{value:g}' if kind == 'abs' else f'±{value * 100:g}%'
