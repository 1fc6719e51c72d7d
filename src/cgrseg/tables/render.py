"""The paper's tables regenerated: one per dataset, as Markdown, CSV and LaTeX (booktabs).

Rows follow the paper (T, B, L), columns follow the paper; every regenerated cell sits right after
its paper value. Markdown and LaTeX show a short marker where a value is not comparable; the CSV
keeps raw numbers with a status column instead.
"""
import pandas as pd
from tabulate import tabulate

from cgrseg.tables import judge

FORMATS = ('md', 'csv', 'tex')
DIGITS = {'mIoU': 2, 'params_M': 3, 'gflops': 3, 'img_per_s': 1}
# Shown beside a judged column, never judged: (column, metrics name, title).
BESIDE = (('mIoU', 'mIoU_ss', 'mIoU single scale ours'), ('img_per_s', 'img_per_s_deploy', 'img/s deploy ours'))
SHORT = {'mIoU': 'mIoU', 'params_M': 'Params (M)', 'gflops': 'GFLOPs', 'img_per_s': 'img/s'}
MARK = {judge.DEMO: 'demo', judge.OTHER_DEVICE: 'other device',
        judge.NOT_COMPARABLE: 'other protocol', judge.NO_PAPER_VALUE: 'no paper value'}


def column_title(column, table):
    if column == 'mIoU' and table['mIoU_mode'] == 'ms_flip':
        return 'mIoU (MS)'
    return SHORT[column]


def fmt(value, column):
    return '–' if value is None else f'{value:.{DIGITS[column]}f}'


def paper_text(value):
    # str() keeps the paper's own precision (4.0, 73.0), which :g would drop.
    return '–' if value is None else str(value)


def value_text(cell):
    """The regenerated value; mIoU as mean +- std (n) over the seeds' runs."""
    text = fmt(cell['ours'], cell['column'])
    if cell['column'] == 'mIoU' and cell.get('mIoU_n'):
        if cell.get('mIoU_std') is not None:
            text += f' ± {cell["mIoU_std"]:.2f}'
        text += f' (n={cell["mIoU_n"]})'
    return text


def ours_text(cell):
    if cell['status'] == judge.PENDING:
        return 'pending' if cell['ours'] is None else f'{value_text(cell)} (pending)'
    text = value_text(cell)
    if cell['status'] == judge.OUTSIDE:
        return f'{text} (!)'
    return f'{text} ({MARK[cell["status"]]})' if cell['status'] in MARK else text


INFO = {'gflops': 'gflops_dataset', 'params_M': 'params_M_dataset'}


def dataset_model_differs(cells, dataset):
    """True when this table's own model is not the judged one (another head or resolution)."""
    return any(c.get('flops_dataset') not in (None, dataset) for c in cells)


def display_frame(cells, table, dataset=None):
    """Model column, then "<col> paper" / "<col> ours" pairs, as display strings; params and
    GFLOPs of the dataset's own model follow as information where it differs from the judged."""
    info = dataset is not None and dataset_model_differs(cells, dataset)
    rows = {}
    beside = _beside_columns(cells, table)
    for cell in cells:
        row = rows.setdefault(cell['variant'], {'Model': judge.display_model(cell['variant'])})
        title = column_title(cell['column'], table)
        row[f'{title} paper'] = paper_text(cell['paper'])
        row[f'{title} ours'] = ours_text(cell)
        for name, beside_title in beside.get(cell['column'], ()):
            row[beside_title] = beside_text(cell, name)
        if info and cell['column'] in INFO:
            row[f'{title} ours, this dataset'] = fmt(cell.get(INFO[cell['column']]),
                                                      cell['column'])
    return pd.DataFrame(list(rows.values()))


CSV_EXTRAS = ('mIoU_std', 'mIoU_n', 'mIoU_seeds', 'mIoU_mode', 'mIoU_ss', 'gflops_convention',
              'flops_dataset', 'flops_classes', 'flops_input', 'gflops_mmcv', 'gflops_conv_linear_macs',
              'gflops_fvcore', 'params_M_dataset', 'gflops_dataset', 'flops_input_dataset', 'num_classes_dataset',
              'throughput_device_name', 'throughput_protocol', 'img_per_s_fixed', 'img_per_s_deploy')


def _beside_columns(cells, table):
    """{judged column: [(name, title)]} of the BESIDE values some run of this table measured;
    single scale is left out where the official protocol is single scale already."""
    out = {}
    for column, name, title in BESIDE:
        if name == 'mIoU_ss' and table['mIoU_mode'] == 'ss':
            continue
        if any(c.get(name) is not None for c in cells):
            out.setdefault(column, []).append((name, title))
    return out


def beside_text(cell, name):
    if cell.get(name) is None:
        return '–' if cell['status'] != judge.PENDING else 'pending'
    text = fmt(cell[name], cell['column'])
    return f'{text} ({MARK[cell["status"]]})' if cell['status'] in (judge.DEMO, judge.OTHER_DEVICE) else text


def csv_frame(cells):
    rows = {}
    for cell in cells:
        row = rows.setdefault(cell['variant'], {'model': cell['model']})
        col = cell['column']
        row[f'{col}_paper'] = cell['paper']
        row[f'{col}_ours'] = cell['ours']
        row[f'{col}_status'] = cell['status']
        for extra in CSV_EXTRAS:
            if extra in cell:
                row[extra] = cell[extra]
    return pd.DataFrame(list(rows.values()))


def notes(cells, table, dataset=None):
    """Footnotes that say how the regenerated columns were measured and what was judged."""
    lines = ['"ours": regenerated by this pipeline; "(!)": outside tolerance; "demo": demo run, '
             'never compared; "pending": not run yet. Verdicts and reasons: results/diff.md.']
    if 'mIoU' in table['columns']:
        lines.append('mIoU (ours): mean ± sample standard deviation over the seeds\' runs '
                     '(n = runs); the mean is judged.')
    judged = next((c for c in cells if c.get('flops_dataset')), None)
    if {'gflops', 'params_M'} & set(table['columns']):
        if judged is None:
            lines.append('Params and GFLOPs (ours): not measured yet.')
        else:
            lines.append(
                'Params and GFLOPs (ours, judged): '
                f'{judge.judged_model_text(judged["flops_dataset"], judged["flops_classes"])} at '
                f'{judged["flops_input"]}, GFLOPs in the {judged["gflops_convention"]} convention '
                '(mmseg 0.x tools/get_flops.py), because the paper prints the ADE20K model\'s '
                'figures (150-class head, 512x512) in all three tables.')
        other = next((c for c in cells if c.get('flops_input_dataset')), None)
        if other and dataset is not None and dataset_model_differs(cells, dataset):
            lines.append(f'"ours, this dataset": this dataset\'s own model '
                         f'({other["num_classes_dataset"]} classes) at '
                         f'{other["flops_input_dataset"]}, for information, not judged.')
        if 'gflops' in table['columns'] and table['gflops_input']['value'] is None:
            lines.append('The paper does not state the input size of its GFLOPs.')
    devices = sorted({c['throughput_device_name'] for c in cells
                      if c.get('throughput_device_name')})
    if devices:
        lines.append(f'Throughput (ours) measured on {", ".join(devices)}, by the paper protocol (mmseg '
                     "tools/benchmark.py: batch 1, real test images, fp32); \"img/s deploy\": the same "
                     'protocol on the deploy-mode model (BatchNorms folded), shown only, never judged.')
    lines.append(MIOU_NOTES[table['mIoU_mode']])
    return lines


MIOU_NOTES = {
    'ss': 'mIoU (ours): single scale, no flip, the official protocol of this data set.',
    'ms': "mIoU (ours): 6 scales (0.5-1.75), no flip, the official protocol of this data set (the authors' "
          'test pipeline); "mIoU single scale": the same run at one scale, shown only.',
    'ms_flip': "mIoU (MS): 6 scales (0.5-1.75) + flip, the official protocol of this data set (the authors' "
               'test pipeline); "mIoU single scale": the same run at one scale, shown only.',
}


def markdown(cells, table, dataset=None):
    body = display_frame(cells, table, dataset).to_markdown(index=False, disable_numparse=True)
    foot = '\n'.join(f'- {line}' for line in notes(cells, table, dataset))
    return f'## {table["title"]}\n\n{body}\n\n{foot}\n'


def latex(cells, table, dataset):
    frame = display_frame(cells, table, dataset).replace('–', '--')
    frame = frame.replace('±', '+/-', regex=True)
    body = tabulate(frame, headers='keys', tablefmt='latex_booktabs',
                    showindex=False, disable_numparse=True)
    caption = _tex_escape(f'{table["title"]}: paper vs regenerated. '
                          + ' '.join(notes(cells, table, dataset)))
    return ('\\begin{table}[t]\n\\centering\n\\small\n'
            f'\\caption{{{caption}}}\n\\label{{tab:{dataset}}}\n{body}\n\\end{{table}}\n')


def _tex_escape(text):
    for char, repl in (('\\', r'\textbackslash{}'), ('&', r'\&'), ('%', r'\%'), ('_', r'\_'),
                       ('#', r'\#'), ('$', r'\$'), ('{', r'\{'), ('}', r'\}'), ('–', '--'),
                       ('"', "''"), ('±', '+/-')):
        text = text.replace(char, repl)
    return text


def write_tables(out_dir, paper, cells, formats=FORMATS):
    """Write ``{dataset}.{fmt}`` for every table of the paper into ``out_dir``."""
    for dataset, table in paper['tables'].items():
        mine = [c for c in cells if c['dataset'] == dataset]
        if 'md' in formats:
            (out_dir / f'{dataset}.md').write_text(markdown(mine, table, dataset))
        if 'csv' in formats:
            csv_frame(mine).to_csv(out_dir / f'{dataset}.csv', index=False)
        if 'tex' in formats:
            (out_dir / f'{dataset}.tex').write_text(latex(mine, table, dataset))
