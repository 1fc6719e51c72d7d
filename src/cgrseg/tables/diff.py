"""``results/diff.md`` and ``results/diff.json``: every paper cell against its regenerated value."""
import pandas as pd

from cgrseg.tables import judge
from cgrseg.tables.render import DIGITS, fmt, paper_text, value_text

VERDICT = {judge.WITHIN: 'ok', judge.OUTSIDE: 'OUTSIDE', judge.PENDING: 'pending',
           judge.DEMO: 'demo', judge.OTHER_DEVICE: 'other device',
           judge.NOT_COMPARABLE: 'other protocol', judge.NO_PAPER_VALUE: 'no paper value'}


def diff_document(paper, cells):
    """diff.json: a summary mapping (DVC reads its numbers as metrics) and the cells."""
    return {
        'summary': judge.summarize(cells),
        'tolerances': {name: spec['tolerance'] for name, spec in paper['columns'].items()},
        'cells': cells,
    }


def _delta_text(cell):
    if cell['status'] not in judge.COMPARABLE:
        return ''
    return f'{cell["delta"]:+.{DIGITS[cell["column"]]}f}'


def _why(cell):
    if cell['status'] != judge.OUTSIDE:
        return cell['reason']
    return '; '.join(filter(None, [cell['reason'], 'hypotheses tried: ' + hypotheses_text(cell)]))


def _frame(cells):
    return pd.DataFrame([{
        'Model': judge.display_model(c['variant']),
        'Column': c['label'],
        'Paper': paper_text(c['paper']),
        'Ours': '–' if c['ours'] is None else value_text(c),
        'Δ': _delta_text(c),
        'Tol.': c['tolerance'],
        'Verdict': VERDICT[c['status']],
        'Why / how': _why(c),
    } for c in cells])


def hypotheses_text(cell):
    """What was tried to explain a cell: each hypothesis, its measured value, its verdict."""
    tried = cell.get('hypotheses') or []
    if not tried:
        return 'none tried (configs/paper/hypotheses.yaml)'
    parts = []
    for hyp in tried:
        options = ', '.join(f'{k}={v}' for k, v in hyp['cfg_options'].items())
        if hyp['measured'] is None:
            parts.append(f'{hyp["name"]} ({options}): {hyp["status"]}')
            continue
        verdict = {True: 'reproduces the paper', False: 'does not reproduce the paper',
                   None: 'no paper value'}[hyp['reproduces']]
        parts.append(f'{hyp["name"]} ({options}): {fmt(hyp["measured"], cell["column"])}, '
                     f'{verdict}')
    return '; '.join(parts)


def diff_markdown(paper, cells):
    summary = judge.summarize(cells)
    lines = ['# CGRSeg: paper vs regenerated', '', f'**{judge.summary_line(summary)}**', '',
             'Verdicts: **ok** / **OUTSIDE** = comparable cell within / outside tolerance; '
             '*pending* = not run yet; *demo* = demo run, never compared; *other device* = '
             'throughput not on the paper\'s GPU model; *other protocol* = e.g. single-scale vs '
             'multi-scale. Paper sources: configs/paper/results.yaml; hypotheses measured for '
             'cells outside tolerance: configs/paper/hypotheses.yaml.', '']
    outside = [c for c in cells if c['status'] == judge.OUTSIDE]
    if outside:
        frame = _frame(outside)
        frame.insert(0, 'Dataset', [paper['tables'][c['dataset']]['title'] for c in outside])
        lines += ['## Outside tolerance', '',
                  frame.to_markdown(index=False, disable_numparse=True), '']
    for dataset, table in paper['tables'].items():
        mine = [c for c in cells if c['dataset'] == dataset]
        lines += [f'## {table["title"]}', '',
                  _frame(mine).to_markdown(index=False, disable_numparse=True), '']
    return '\n'.join(lines)
