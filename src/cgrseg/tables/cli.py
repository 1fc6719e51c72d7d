"""``cgrseg collect | tables | diff | figure``: the last steps of the pipeline, shared by DVC and
Snakemake. Every command reads files and writes its outputs atomically (nothing partial is left
behind on an error). See docs/tables.md.
"""
import argparse
import contextlib
import json
import sys
from pathlib import Path

from cgrseg.errors import CGRSegError
from cgrseg.io import atomic_dir, atomic_path

PAPER = 'configs/paper/results.yaml'
HYPOTHESES = 'configs/paper/hypotheses.yaml'
METRICS = 'results/metrics.json'


def add_parser(subparsers):
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        'collect', formatter_class=fmt, help='gather all result files into one metrics document',
        description='Read results/runs/{dataset}/cgrseg-{v}/metrics.json and\n'
        'results/measure/{dataset}/cgrseg-{v}.{flops,throughput}.json for every dataset and\n'
        'variant in params.yaml (one run per seed), the judged params/GFLOPs\n'
        '(results/measure/judged/) and the measured hypotheses (results/measure/hypotheses/);\n'
        'write one flat JSON document with keys like "ade20k.cgrseg-t.mIoU" (a DVC metrics\n'
        'file). A missing result file adds no keys (the cell shows as pending); a malformed\n'
        'one is an error.')
    source = p.add_mutually_exclusive_group()
    source.add_argument('--params', default='params.yaml', help='default: %(default)s')
    source.add_argument('--params-json', metavar='JSON',
                        help='the effective values of datasets, variants, seeds, measure_shape and '
                             'judged_complexity (Snakemake passes them after --config overrides)')
    p.add_argument('--hypotheses', default=HYPOTHESES, help='default: %(default)s')
    p.add_argument('--results', default='results', help='results root (default: %(default)s)')
    p.add_argument('--out', default=METRICS, help='default: %(default)s')
    p.set_defaults(func=run_collect)

    p = subparsers.add_parser(
        'tables', formatter_class=fmt, help="regenerate the paper's tables (md, csv, tex)",
        description="Write {out}/{ade20k,coco_stuff10k,pascal_context}.{md,csv,tex}: the paper's\n"
        'rows (T, B, L) and columns, each regenerated value next to its paper value. GFLOPs\n'
        "and params judged in every table are the ADE20K model's at 512x512 in the mmcv\n"
        'convention (params.yaml judged_complexity), the figures the paper prints; each\n'
        "dataset's own model (measure_shape) is shown beside them for information.")
    _common(p)
    p.add_argument('--out', default='results/tables',
                   help='output directory (default: %(default)s)')
    p.add_argument('--formats', nargs='+', choices=('md', 'csv', 'tex'),
                   help='default: params.yaml tables.formats if --params is given, else all')
    p.add_argument('--params', help='read tables.formats from this params.yaml')
    p.set_defaults(func=run_tables)

    p = subparsers.add_parser(
        'diff', formatter_class=fmt, help='paper vs regenerated, cell by cell',
        description='Write {out}.md and {out}.json: for every paper cell the regenerated value,\n'
        'delta, tolerance and verdict (ok / OUTSIDE for comparable cells; otherwise why not:\n'
        'pending, demo, other device, other protocol, no paper value).\n\n'
        'Exit status: 0; 1 with --strict (or tables.strict: true in --params) when a\n'
        'comparable cell is outside tolerance (the files are still written); 2 on bad input.')
    _common(p)
    p.add_argument('--out', default='results/diff', help='output prefix (default: %(default)s)')
    p.add_argument('--strict', action='store_true',
                   help='exit 1 if any comparable cell is outside tolerance (for CI)')
    p.add_argument('--params', help='read tables.strict from this params.yaml')
    p.set_defaults(func=run_diff)

    p = subparsers.add_parser(
        'figure', formatter_class=fmt, help='mIoU vs GFLOPs per dataset (PNG + PDF)',
        description='Write {out}.png and {out}.pdf: per dataset, mIoU against GFLOPs for the\n'
        "paper's points and the regenerated ones (demo runs drawn hollow and labelled).")
    _common(p)
    p.add_argument('--out', default='results/figures/miou_vs_gflops',
                   help='output prefix (default: %(default)s)')
    p.set_defaults(func=run_figure)


def _common(p):
    p.add_argument('--metrics', default=METRICS,
                   help='cgrseg collect output (default: %(default)s)')
    p.add_argument('--paper', default=PAPER, help='published numbers (default: %(default)s)')
    p.add_argument('--hypotheses', default=HYPOTHESES,
                   help='measured hypotheses shown with the cells they explain (default: %(default)s)')
    p.add_argument('--results', default='results',
                   help='results root, named in "pending" reasons (default: %(default)s)')


def _judged(args):
    from cgrseg.tables.collect import load_metrics
    from cgrseg.tables.hypotheses import load_hypotheses
    from cgrseg.tables.judge import judge_all
    from cgrseg.tables.paper import load_paper

    paper = load_paper(args.paper)
    hypotheses = load_hypotheses(args.hypotheses)
    return paper, judge_all(paper, load_metrics(args.metrics), args.results, hypotheses)


def _table_params(path):
    from cgrseg.io import load_yaml
    from cgrseg.params import check

    return check(load_yaml(path, 'params'), str(path), keys=('tables',))['tables']


@contextlib.contextmanager
def _writing(path):
    """A write that fails (a full disk, no permission) is one line; atomic_path/atomic_dir have
    already removed their temporary files, so nothing partial is left."""
    try:
        yield
    except OSError as err:
        raise CGRSegError(f'{path}: cannot write: {err.strerror or err}') from None


def _json_text(obj):
    # allow_nan=False: NaN/Infinity are not JSON; the readers reject them, so none can get here
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + '\n'


def _collect_params(args):
    from cgrseg.tables.collect import load_params

    if args.params_json is None:
        return load_params(args.params)
    try:
        params = json.loads(args.params_json)
    except ValueError as err:
        raise CGRSegError(f'--params-json: not valid JSON ({err})') from None
    return load_params(params)


def run_collect(args):
    from cgrseg.tables.collect import collect
    from cgrseg.tables.hypotheses import load_hypotheses

    metrics = collect(_collect_params(args), args.results, load_hypotheses(args.hypotheses))
    with _writing(args.out), atomic_path(args.out) as tmp:
        tmp.write_text(_json_text(metrics))
    print(f'{args.out}: {len(metrics)} values')


def run_tables(args):
    from cgrseg.tables.render import FORMATS, write_tables

    formats = args.formats
    if formats is None and args.params:
        formats = _table_params(args.params)['formats']
    paper, cells = _judged(args)
    with _writing(args.out), atomic_dir(args.out) as tmp:
        write_tables(Path(tmp), paper, cells, formats or FORMATS)
    print(f'{args.out}: {len(paper["tables"])} tables ({", ".join(formats or FORMATS)})')


def run_diff(args):
    from cgrseg.tables.diff import diff_document, diff_markdown
    from cgrseg.tables.judge import OUTSIDE, summarize, summary_line

    strict = args.strict or (bool(_table_params(args.params).get('strict'))
                             if args.params else False)
    paper, cells = _judged(args)
    md, js = Path(f'{args.out}.md'), Path(f'{args.out}.json')
    md_text, js_text = diff_markdown(paper, cells), _json_text(diff_document(paper, cells))
    with _writing(f'{md}, {js}'), atomic_path(md) as tmp_md, atomic_path(js) as tmp_js:
        tmp_md.write_text(md_text)
        tmp_js.write_text(js_text)
    summary = summarize(cells)
    print(f'{md}: {summary_line(summary)}')
    if strict and summary[OUTSIDE]:
        print(f'cgrseg diff: {summary[OUTSIDE]} comparable cell(s) outside tolerance '
              f'(strict; see {md})', file=sys.stderr)
        return 1
    return 0


def run_figure(args):
    from cgrseg.tables.figure import draw, save

    paper, cells = _judged(args)
    png, pdf = Path(f'{args.out}.png'), Path(f'{args.out}.pdf')
    fig = draw(paper, cells)
    with _writing(f'{png}, {pdf}'), atomic_path(png) as tmp_png, atomic_path(pdf) as tmp_pdf:
        save(fig, tmp_png, tmp_pdf)
    print(f'{png}, {pdf}')
