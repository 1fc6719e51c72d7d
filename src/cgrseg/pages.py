"""``cgrseg pages``: the HTML pages of the Snakemake report (``snakemake --report``).

The diff (its OUTSIDE cells first, as diff.md has them, marked red), the paper's tables, the FLOPs
records (three conventions and the operators each one skips) with the throughput records, and the
model-zoo entries. Each page is self-contained (inline style, no scripts, nothing fetched); every
text from a result file is HTML-escaped, so a record cannot put markup or scripts into the report.
"""
import html
import re
from pathlib import Path

from cgrseg.errors import CGRSegError

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.2em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr.outside td { background: #fde2e2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.4em; }
p.note { color: #555; max-width: 70em; }
"""


def page(title, body):
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
            f'</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n')


def markdown_page(text, title):
    """Markdown of ours (the diff, a table) as a page; raw HTML in it is shown as text, and table
    rows holding an OUTSIDE verdict are marked."""
    import markdown
    body = markdown.markdown(html.escape(text, quote=False), extensions=['tables'])
    return page(title, re.sub(r'<tr>(.*?)</tr>', _mark_outside, body, flags=re.S))


def _mark_outside(row):
    cells = row.group(1)
    return f'<tr class="outside">{cells}</tr>' if re.search(r'<td[^>]*>OUTSIDE</td>', cells) else row.group(0)


def _table(frame):
    return frame.to_html(index=False, escape=True, na_rep='–', border=0)


def _read(path):
    from cgrseg.tables.collect import _read_json
    doc = _read_json(path)
    if doc is None:
        raise CGRSegError(f'{path}: not found')
    return doc


def flops_rows(paths):
    import pandas as pd
    rows = []
    for path in paths:
        doc = _read(path)
        g = doc.get('gflops') or {}
        shape = doc.get('input_shape') or [None, None, None]
        rows.append({'record': str(path), 'model': doc.get('model'), 'dataset': doc.get('dataset'),
                     'input': f'{shape[1]}x{shape[2]}', 'classes': doc.get('num_classes'),
                     'params (M)': doc.get('params_M'), 'GFLOPs mmcv (judged)': g.get('mmcv'),
                     'conv+linear MACs': g.get('conv_linear_macs'), 'fvcore': g.get('fvcore'),
                     'matmul MACs': g.get('matmul_macs'),
                     'cfg options': ', '.join(f'{k}={v}' for k, v in (doc.get('cfg_options') or {}).items())})
    return pd.DataFrame(rows)


def skipped_table(doc):
    """One row per operator some convention skips: the fvcore GFLOPs each convention leaves out."""
    import pandas as pd
    skipped = doc.get('skipped_operators') or {}
    ops = sorted({op for per in skipped.values() if isinstance(per, dict) for op in per})
    rows = []
    for op in ops:
        row = {'operator (aten)': op}
        for convention in ('mmcv', 'conv_linear_macs', 'fvcore'):
            per = skipped.get(convention) or {}
            if op not in per:
                row[convention] = 'counted'
            else:
                row[convention] = 'skipped' + ('' if per[op] is None else f' ({per[op]} G by fvcore)')
        rows.append(row)
    return pd.DataFrame(rows)


def throughput_rows(paths):
    import pandas as pd
    rows = []
    for path in paths:
        doc = _read(path)
        for name, protocol in (doc.get('protocols') or {}).items():
            if not isinstance(protocol, dict):
                continue
            rows.append({'model': doc.get('model'), 'dataset': doc.get('dataset'), 'protocol': name,
                         'img/s': protocol.get('img_per_s'), 'device': doc.get('device_name'),
                         'batch': protocol.get('batch_size'), 'dtype': protocol.get('dtype'),
                         'threads': doc.get('threads'), 'note': doc.get('note')})
    return pd.DataFrame(rows)


def measure_page(flops, throughput):
    judged = [p for p in flops if '/judged/' in str(p)]
    parts = ['<h1>FLOPs and throughput records</h1>',
             '<p class="note">GFLOPs in three conventions, 1 multiply-accumulate = 1 FLOP. '
             '<b>mmcv</b> (mmseg 0.x tools/get_flops.py) is the one the paper prints and the diff '
             'judges; <b>conv+linear MACs</b> and <b>fvcore</b> (which counts the attention matmuls) '
             'are shown, never judged. docs/model.md explains them.</p>',
             '<h2>FLOPs records</h2>', _table(flops_rows(flops))]
    for path in judged:
        doc = _read(path)
        parts += [f'<h2>Operators each convention skips: {html.escape(str(doc.get("model")))} '
                  f'(judged model, {html.escape(str(doc.get("dataset")))})</h2>',
                  _table(skipped_table(doc))]
    parts += ['<h2>Throughput records</h2>',
              '<p class="note">img/s per protocol: mmseg_benchmark is the paper protocol (mmseg 0.x '
              'tools/benchmark.py); fixed_size and *_deploy are shown beside it. Only a run on the '
              "paper's GPU model is compared with the paper.</p>",
              _table(throughput_rows(throughput))]
    return page('FLOPs and throughput', '\n'.join(parts))


def zoo_page(metafile):
    import pandas as pd
    import yaml
    from cgrseg.doctor import read_text
    doc = yaml.safe_load(read_text(metafile, 'metafile')) or {}
    rows = []
    for model in doc.get('Models') or []:
        meta = model.get('Metadata') or {}
        times = meta.get('inference time (ms/im)') or [{}]
        result = (model.get('Results') or [{}])[0]
        rows.append({'Name': model.get('Name'), 'Dataset': result.get('Dataset'),
                     **{k: v for k, v in (result.get('Metrics') or {}).items()},
                     'lr schd': meta.get('lr schd'), 'crop size': meta.get('crop size'),
                     'batch size': meta.get('batch size'), 'GPUs': meta.get('GPUs'),
                     'ms/im': times[0].get('value'), 'hardware': times[0].get('hardware'),
                     'Training Memory (GB)': meta.get('Training Memory (GB)'),
                     'Weights': Path(str(model.get('Weights'))).name})
    body = ['<h1>Model zoo</h1>',
            f'<p class="note">{html.escape(str(metafile))} (OpenMMLab metafile convention, checked with '
            'the model-index package); checkpoints published as mmseg 0.x .dev/gather_models.py '
            'does: optimizer state removed, first 8 hex digits of the sha256 in the file name.</p>',
            _table(pd.DataFrame(rows))]
    return page('Model zoo', '\n'.join(body))


def write_pages(args):
    from cgrseg.io import atomic_dir, write_text
    from cgrseg.tables.cli import _judged
    from cgrseg.tables.diff import diff_markdown
    from cgrseg.tables.render import markdown as table_markdown
    paper, cells = _judged(args, Path(args.results))   # what cgrseg diff and cgrseg tables write, as Markdown
    out = Path(args.out)
    write_text(out / 'diff.html', markdown_page(diff_markdown(paper, cells), 'Paper vs regenerated'))
    with atomic_dir(out / 'tables', 'pages', [args.metrics]) as tmp:
        for dataset, table in paper['tables'].items():
            text = table_markdown([c for c in cells if c['dataset'] == dataset], table, dataset)
            (tmp / f'{dataset}.html').write_text(markdown_page(text, table['title']))
    write_text(out / 'measure.html', measure_page(list(map(Path, args.flops)), list(map(Path, args.throughput))))
    write_text(out / 'zoo.html', zoo_page(args.zoo))


def run(args):
    try:
        write_pages(args)
    except OSError as err:
        raise CGRSegError(f'{args.out}: cannot write: {err.strerror or err}') from None
    print(f'{args.out}: diff.html, tables/, measure.html, zoo.html')
    return 0


def add_parser(sub):
    p = sub.add_parser('pages', help='HTML pages of the Snakemake report (diff, tables, measurements, zoo)',
                       description=__doc__, formatter_class=__import__('argparse').RawDescriptionHelpFormatter)
    p.add_argument('--metrics', required=True, help='cgrseg collect output (metrics.json)')
    p.add_argument('--paper', required=True, help='published numbers (configs/paper/results.yaml)')
    p.add_argument('--hypotheses', required=True, help='configs/paper/hypotheses.yaml')
    p.add_argument('--results', required=True, help='results root, named in "pending" reasons')
    p.add_argument('--flops', nargs='+', required=True, help='flops.json records')
    p.add_argument('--throughput', nargs='+', required=True, help='throughput.json records')
    p.add_argument('--zoo', required=True, help='the metafile written by cgrseg zoo')
    p.add_argument('--out', required=True, help='output folder (results/<preset>/report)')
    p.set_defaults(func=run)
