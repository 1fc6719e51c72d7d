"""``cgrseg collect | tables | diff | figure``: the last steps of the pipeline, the stages of dvc.yaml
that `dvc repro` and Snakemake (workflow/rules/tables.smk) both run. Each reads its settings from one
params file, ``--params`` (the run's ``results/<preset>/params.effective.yaml``; by hand,
params.yaml), and finds its inputs and outputs under that preset's results root unless told
otherwise. Every command writes its outputs atomically (nothing partial is left behind on an error).
See docs/tables.md.
"""
import argparse
import contextlib
import json
import sys
from pathlib import Path

from cgrseg import layout
from cgrseg.errors import CGRSegError
from cgrseg.io import atomic_dir, atomic_path, check_output_file

# the params keys tables and diff read (collect: cgrseg.tables.collect.PARAM_KEYS)
TABLES_KEYS = ('tables',)


def add_parser(subparsers):
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        'collect', formatter_class=fmt, help='gather all result files into one metrics document',
        description='Read RESULTS/runs/{dataset}/cgrseg-{v}/seed{s}/metrics.json and\n'
        'RESULTS/measure/{dataset}/cgrseg-{v}.{flops,throughput}.json for every dataset, variant\n'
        'and seed in --params, the judged params/GFLOPs (RESULTS/measure/judged/) and the measured\n'
        'hypotheses (RESULTS/measure/hypotheses/); write one flat JSON document with keys like\n'
        '"ade20k.cgrseg-t.mIoU" (a DVC metrics file). A missing result file adds no keys (the\n'
        'cell shows as pending); a malformed one is an error.')
    _params(p, 'params.yaml')
    p.add_argument('--hypotheses', default=layout.HYPOTHESES, help='default: %(default)s')
    p.add_argument('--out', help='default: RESULTS/metrics.json')
    p.set_defaults(func=run_collect)

    p = subparsers.add_parser(
        'tables', formatter_class=fmt, help="regenerate the paper's tables (md, csv, tex)",
        description="Write {out}/{ade20k,coco_stuff10k,pascal_context}.{md,csv,tex}: the paper's\n"
        'rows (T, B, L) and columns, each regenerated value next to its paper value. GFLOPs\n'
        "and params judged in every table are the ADE20K model's at 512x512 in the mmcv\n"
        'convention (params.yaml judged_complexity), the figures the paper prints; each\n'
        "dataset's own model (measure_shape) is shown beside them for information.")
    _common(p)
    p.add_argument('--out', help='output directory (default: RESULTS/tables)')
    p.add_argument('--formats', nargs='+', choices=('md', 'csv', 'tex'),
                   help='default: tables.formats of --params, else all')
    p.set_defaults(func=run_tables)

    p = subparsers.add_parser(
        'diff', formatter_class=fmt, help='paper vs regenerated, cell by cell',
        description='Write {out}.md and {out}.json: for every paper cell the regenerated value,\n'
        'delta, tolerance and verdict (ok / OUTSIDE for comparable cells; otherwise why not:\n'
        'pending, demo, other device, other protocol, no paper value).\n\n'
        'Exit status: 0; 1 with --strict (or tables.strict: true in --params) when a\n'
        'comparable cell is outside tolerance (the files are still written); 2 on bad input.')
    _common(p)
    p.add_argument('--out', help='output prefix (default: RESULTS/diff)')
    p.add_argument('--strict', action='store_true',
                   help='exit 1 if any comparable cell is outside tolerance (for CI)')
    p.set_defaults(func=run_diff)

    p = subparsers.add_parser(
        'figure', formatter_class=fmt, help='mIoU vs GFLOPs per dataset (PNG + PDF)',
        description='Write {out}.png and {out}.pdf: per dataset, mIoU against GFLOPs for the\n'
        "paper's points and the regenerated ones (demo runs drawn hollow and labelled).")
    _common(p)
    p.add_argument('--out', help='output prefix (default: RESULTS/figures/miou_vs_gflops)')
    p.set_defaults(func=run_figure)


def _params(p, default):
    p.add_argument('--params', default=default,
                   help="params file: a run's params.effective.yaml or params.yaml "
                        f'(default: {default or "none"})')
    p.add_argument('--results',
                   help="results root RESULTS (default: results/<preset> of --params, else results)")


def _common(p):
    _params(p, None)
    p.add_argument('--metrics', help='cgrseg collect output (default: RESULTS/metrics.json)')
    p.add_argument('--paper', default=layout.PAPER_RESULTS, help='published numbers (default: %(default)s)')
    p.add_argument('--hypotheses', default=layout.HYPOTHESES,
                   help='measured hypotheses shown with the cells they explain (default: %(default)s)')


def _settings(args, keys):
    """(params read from --params, or {}; the results root)."""
    from cgrseg.params import load
    params = load(args.params, keys=keys) if args.params else {}
    results = args.results or (layout.results_root(params['preset']) if 'preset' in params
                               else 'results')
    return params, Path(results)


def _judged(args, results):
    from cgrseg.tables.collect import load_metrics
    from cgrseg.tables.hypotheses import load_hypotheses
    from cgrseg.tables.judge import judge_all
    from cgrseg.tables.paper import load_paper

    paper = load_paper(args.paper)
    hypotheses = load_hypotheses(args.hypotheses)
    metrics = load_metrics(args.metrics or results / layout.METRICS)
    return paper, judge_all(paper, metrics, str(results), hypotheses)


@contextlib.contextmanager
def _writing(path):
    """A write that fails (a full disk, no permission) is one line; atomic_path/atomic_dir have
    already removed their temporary files, so nothing partial is left."""
    try:
        yield
    except OSError as err:
        raise CGRSegError(f'{path}: cannot write: {err.strerror or err}') from None


def _inputs(args, results):
    """The files a table command reads: its outputs must never replace one of them. ``results``
    None: the command reads no metrics (collect writes them)."""
    named = [getattr(args, name, None) for name in ('paper', 'hypotheses', 'params')]
    return named if results is None else named + [args.metrics or results / layout.METRICS]


def _check_outputs(args, results, *paths):
    for path in paths:
        check_output_file(path, _inputs(args, results))


def _json_text(obj):
    # allow_nan=False: NaN/Infinity are not JSON; the readers reject them, so none can get here
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + '\n'


def run_collect(args):
    from cgrseg.tables.collect import PARAM_KEYS, collect
    from cgrseg.tables.hypotheses import load_hypotheses

    params, results = _settings(args, PARAM_KEYS)
    out = args.out or results / layout.METRICS
    _check_outputs(args, None, out)
    metrics = collect(params, results, load_hypotheses(args.hypotheses))
    with _writing(out), atomic_path(out) as tmp:
        tmp.write_text(_json_text(metrics))
    print(f'{out}: {len(metrics)} values')


def run_tables(args):
    from cgrseg.tables.render import FORMATS, write_tables

    params, results = _settings(args, TABLES_KEYS)
    formats = args.formats or params.get('tables', {}).get('formats') or FORMATS
    out = args.out or results / layout.TABLES
    paper, cells = _judged(args, results)
    with _writing(out), atomic_dir(out, 'tables', _inputs(args, results)) as tmp:
        write_tables(Path(tmp), paper, cells, formats)
    print(f'{out}: {len(paper["tables"])} tables ({", ".join(formats)})')


def run_diff(args):
    from cgrseg.tables.diff import diff_document, diff_markdown
    from cgrseg.tables.judge import OUTSIDE, summarize, summary_line

    params, results = _settings(args, TABLES_KEYS)
    strict = args.strict or bool(params.get('tables', {}).get('strict'))
    out = args.out or results / layout.DIFF
    md, js = Path(f'{out}.md'), Path(f'{out}.json')
    _check_outputs(args, results, md, js)
    paper, cells = _judged(args, results)
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

    _, results = _settings(args, ())
    out = args.out or results / layout.FIGURE
    png, pdf = Path(f'{out}.png'), Path(f'{out}.pdf')
    _check_outputs(args, results, png, pdf)
    paper, cells = _judged(args, results)
    fig = draw(paper, cells)
    with _writing(f'{png}, {pdf}'), atomic_path(png) as tmp_png, atomic_path(pdf) as tmp_pdf:
        save(fig, tmp_png, tmp_pdf)
    print(f'{png}, {pdf}')
