"""``cgrseg curves``: each run's training curves from the JSON log mmcv writes into its work dir.

Loss, learning rate and validation mIoU against iterations, one PNG per run, with the evaluate
rule's final mIoU (the data set's official protocol) marked at the last iteration. A run resumed
after an interruption has one log per start: they are read in order, and a later log replaces the
iterations it repeats. Logs are read line by line with limits; a line that is not a JSON object of
finite numbers (a training killed mid-write) is skipped.
"""
import json
import math
import re
from pathlib import Path

from cgrseg.errors import CGRSegError

MAX_LOG = 256 << 20        # bytes per log file (a 160k-iteration log is a few MB)
MAX_LINE = 8 << 20         # the first line holds the whole config, CLASSES and PALETTE
SERIES = ('loss', 'lr', 'mIoU', 'memory')
# a run as the DAG names it: {dataset}/cgrseg-{variant}/seed{seed}
RUN = re.compile(r'(?P<dataset>[a-z0-9_]+)/(?P<model>cgrseg-(?P<variant>[a-z0-9]+))/seed(?P<seed>\d+)')


def parse_run(name):
    match = RUN.fullmatch(name)
    if not match:
        raise CGRSegError(f'run {name!r}: expected DATASET/cgrseg-VARIANT/seedN')
    return match.groupdict()


def log_files(work_dir):
    """The run's mmcv JSON logs, oldest first (their names are the start times)."""
    return sorted(Path(work_dir).glob('*.log.json'))


def _records(path):
    """The JSON objects of one log, one per line, within the limits."""
    size = path.stat().st_size
    if size > MAX_LOG:
        raise CGRSegError(f'{path}: {size} bytes, more than the {MAX_LOG >> 20} MB a training log may have')
    with open(path, 'rb') as f:
        while True:
            line = f.readline(MAX_LINE + 1)
            if not line:
                return
            if len(line) > MAX_LINE:
                raise CGRSegError(f'{path}: a line longer than {MAX_LINE >> 20} MB')
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def _number(value):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def read_history(work_dir):
    """{series: [(iteration, value)]} of a run: training loss, learning rate, validation mIoU (%),
    memory (MB, GPU runs only), and ``meta``: the first log's run description (seed, cgrseg)."""
    history = {name: [] for name in SERIES}
    meta, stamps = {}, []
    for path in log_files(work_dir):
        first = True
        for record in _records(path):
            if 'mode' not in record:
                meta = meta or {k: record.get(k) for k in ('seed', 'exp_name', 'cgrseg')}
                continue
            step = record.get('iter')
            if type(step) is not int or step < 0:
                continue
            if first and record.get('mode') == 'train':   # a resumed start repeats later iterations
                for points in history.values():
                    points[:] = [(i, v) for i, v in points if i < step]
                first = False
            _add(history, record, step)
        stamps.append(path.name.split('.', 1)[0])
    history['meta'] = meta
    history['starts'] = stamps
    return history


def _add(history, record, step):
    if record.get('mode') == 'train':
        for name in ('loss', 'lr', 'memory'):
            value = _number(record.get(name))
            if value is not None:
                history[name].append((step, value))
    elif record.get('mode') == 'val':
        value = _number(record.get('mIoU'))
        if value is not None:   # mmseg 0.x logs a fraction
            history['mIoU'].append((step, 100 * value))


def final_miou(metrics_path):
    """(iterations, official-protocol mIoU %, protocol mode) from the evaluate rule's metrics.json,
    or None when there is none yet."""
    from cgrseg.tables.collect import _read_json
    doc = _read_json(metrics_path)
    if doc is None:
        return None
    miou, iters = _number(doc.get('mIoU')), doc.get('iters')
    if miou is None or type(iters) is not int:
        raise CGRSegError(f'{metrics_path}: needs a numeric "mIoU" and an integer "iters"')
    return iters, miou, str(doc.get('mode', ''))


def draw(history, title, final=None):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(3, 1, figsize=(6.4, 6.4), sharex=True, constrained_layout=True)
    panels = (('loss', 'training loss', None), ('lr', 'learning rate', None),
              ('mIoU', 'mIoU (%)', 'validation'))
    for ax, (name, label, legend) in zip(axes, panels):
        points = history[name]
        if points:
            ax.plot(*zip(*points), marker='.' if len(points) < 30 else None, label=legend)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if final is not None:
        iters, miou, mode = final
        axes[2].plot([iters], [miou], 'r*', markersize=12, label=f'evaluate ({mode}): {miou:.2f}')
    if not history['mIoU']:
        axes[2].text(0.02, 0.9, 'no validation during training', transform=axes[2].transAxes,
                     va='top', fontsize=8, color='0.4')
    if history['mIoU'] or final is not None:
        axes[2].legend(fontsize=8, loc='lower right')
    axes[2].set_xlabel('iteration')
    fig.suptitle(title)
    return fig


def image_name(run):
    """results/<preset>/report/curves/<dataset>_cgrseg-<v>_seed<s>.png (the report's pattern)."""
    part = parse_run(run)
    return f'{part["dataset"]}_{part["model"]}_seed{part["seed"]}.png'


def write_curves(runs, work_root, results, out):
    import matplotlib.pyplot as plt
    from cgrseg.io import atomic_dir
    with atomic_dir(out, 'curves', [work_root]) as tmp:
        for run in runs:
            part = parse_run(run)
            history = read_history(Path(work_root) / run)
            if not history['loss']:
                raise CGRSegError(f'{Path(work_root) / run}: no training log (*.log.json) with loss values')
            final = final_miou(Path(results) / 'runs' / run / 'metrics.json')
            title = f'{part["dataset"]} {part["model"].upper()} seed {part["seed"]}'
            fig = draw(history, title, final)
            fig.savefig(tmp / image_name(run), dpi=90)
            plt.close(fig)
    return len(runs)


def run(args):
    try:
        count = write_curves(args.runs, args.work_root, args.results, args.out)
    except OSError as err:
        raise CGRSegError(f'{args.out}: cannot write: {err.strerror or err}') from None
    print(f'{args.out}: {count} runs')
    return 0


def add_parser(sub):
    p = sub.add_parser('curves', help="each run's training curves (PNG) from its mmcv JSON log",
                       description=__doc__, formatter_class=__import__('argparse').RawDescriptionHelpFormatter)
    p.add_argument('--runs', nargs='+', required=True, metavar='RUN',
                   help='DATASET/cgrseg-VARIANT/seedN, as under --work-root and RESULTS/runs')
    p.add_argument('--work-root', required=True, help='training work directories (results/<preset>/work_dirs)')
    p.add_argument('--results', required=True, help='results root, for RESULTS/runs/RUN/metrics.json')
    p.add_argument('--out', required=True, help='output folder, replaced atomically')
    p.set_defaults(func=run)
