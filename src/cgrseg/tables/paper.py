"""Load and check ``configs/paper/results.yaml``: the published numbers and their sources."""
import math
import numbers

from cgrseg.errors import CGRSegError
from cgrseg.io import load_yaml

COLUMNS = ('mIoU', 'params_M', 'gflops', 'img_per_s')
MIOU_MODES = ('ss', 'ms', 'ms_flip')
VARIANTS = ('t', 'b', 'l')


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
    for key, source in data['sources'].items():
        if not isinstance(source, dict) or not _is_text(source.get('cite')):
            return f'sources.{key}: must be a mapping with a "cite" text'
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
        if not isinstance(spec, dict):
            return f'columns.{name}: must be a mapping with a tolerance'
        if 'label' in spec and not _is_text(spec['label']):
            return f'columns.{name}.label: must be a text'
        if not isinstance(tol, dict) or len(tol) != 1 or next(iter(tol)) not in ('abs', 'rel'):
            return f'columns.{name}.tolerance: must be {{abs: X}} or {{rel: X}}'
        value = next(iter(tol.values()))
        if not _is_number(value) or value < 0:
            return f'columns.{name}.tolerance: must be a non-negative number, got {value!r}'
    return None


def _check_table(table, columns, sources):
    if not isinstance(table, dict):
        return 'must be a mapping'
    if not _is_text(table.get('title')):
        return 'missing "title" (the table\'s caption)'
    cols = table.get('columns')
    if not isinstance(cols, list) or not cols:
        return 'missing "columns" list'
    unknown = [c for c in cols if not isinstance(c, str) or c not in columns]
    if unknown:
        return f'columns {unknown} have no entry under the top-level "columns"'
    if table.get('mIoU_mode') not in MIOU_MODES:
        return f'mIoU_mode must be one of {", ".join(MIOU_MODES)}'
    problem = _check_cell(table.get('gflops_input'), sources, kind=_is_hw)
    if problem:
        return f'gflops_input: {problem}'
    throughput = table.get('throughput') or {}
    if not isinstance(throughput, dict):
        return 'throughput: must be a mapping'
    for key, cell in throughput.items():
        if key not in THROUGHPUT_FACTS:
            return f'throughput.{key}: unknown (known: {", ".join(THROUGHPUT_FACTS)})'
        problem = _check_cell(cell, sources, kind=THROUGHPUT_FACTS[key])
        if problem:
            return f'throughput.{key}: {problem}'
    rows = table.get('rows')
    if not isinstance(rows, dict) or not rows:
        return 'missing "rows" mapping'
    for variant, row in rows.items():
        if variant not in VARIANTS:
            return f'rows.{variant}: unknown variant (known: {", ".join(VARIANTS)})'
        if row is not None and not isinstance(row, dict):
            return f'rows.{variant}: must be a mapping of column -> cell'
        for col in cols:
            problem = _check_cell((row or {}).get(col), sources)
            if problem:
                return f'rows.{variant}.{col}: {problem}'
    return None


def _check_cell(cell, sources, kind=None):
    if not isinstance(cell, dict) or 'value' not in cell or 'source' not in cell:
        return 'must be {value: ..., source: ...}'
    value = cell['value']
    kind = kind or _is_number
    if value is not None and not kind(value):
        return f'value must be {KIND_TEXT[kind]} or null, got {value!r}'
    src = cell['source']
    if not (_is_text(src) or (isinstance(src, list) and src and all(map(_is_text, src)))):
        return f'source must be a source name or a list of them, got {src!r}'
    for key in cell_sources(cell):
        if key not in sources:
            return f'source "{key}" is not listed under "sources"'
    return None


def _is_number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_text(value):
    return isinstance(value, str) and bool(value.strip())


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_hw(value):
    return isinstance(value, list) and len(value) == 2 and all(map(_is_count, value))


THROUGHPUT_FACTS = {'device_name': _is_text, 'batch_size': _is_count, 'input_shape': _is_hw}
KIND_TEXT = {_is_number: 'a number', _is_text: 'a text', _is_count: 'a positive integer',
             _is_hw: '[H, W]'}


def cell_sources(cell):
    src = cell['source']
    return [src] if isinstance(src, str) else list(src)


def cite(paper, cell):
    """The human-readable citation of a paper cell, e.g. "authors' README, text tables"."""
    return '; '.join(paper['sources'][key]['cite'] for key in cell_sources(cell))


def tolerance_text(spec):
    kind, value = next(iter(spec['tolerance'].items()))
    return f'±{value:g}' if kind == 'abs' else f'±{value * 100:g}%'
