"""mIoU vs GFLOPs per dataset, paper and regenerated points (after the paper's Fig. 1)."""
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (backend first: no display on nodes)

from cgrseg.tables import judge  # noqa: E402
from cgrseg.tables.render import column_title  # noqa: E402


def _points(cells, dataset, variants):
    """{variant: (gflops_cell, miou_cell)} for one dataset."""
    by = {(c['variant'], c['column']): c for c in cells if c['dataset'] == dataset}
    return {v: (by.get((v, 'gflops')), by.get((v, 'mIoU'))) for v in variants}


def _series(points, field):
    xs, ys, names = [], [], []
    for variant, (g, m) in points.items():
        if g and m and g[field] is not None and m[field] is not None:
            xs.append(g[field])
            ys.append(m[field])
            names.append(variant.upper())
    return xs, ys, names


def _plot_dataset(ax, paper, cells, dataset):
    table = paper['tables'][dataset]
    points = _points(cells, dataset, list(table['rows']))
    xs, ys, names = _series(points, 'paper')
    ax.plot(xs, ys, 'o-', color='tab:blue', label='paper')
    for x, y, name in zip(xs, ys, names):
        ax.annotate(name, (x, y), textcoords='offset points', xytext=(4, -10), color='tab:blue')
    groups = (
        ('regenerated', dict(color='tab:red'), lambda st: st in judge.COMPARABLE),
        ('regenerated (demo run)', dict(color='tab:gray', markerfacecolor='none'),
         lambda st: st == judge.DEMO),
        ('regenerated (other protocol)', dict(color='tab:orange', markerfacecolor='none'),
         lambda st: st == judge.NOT_COMPARABLE),
    )
    for label, style, wanted in groups:
        group = {v: p for v, p in points.items() if p[1] and wanted(p[1]['status'])}
        gx, gy, gnames = _series(group, 'ours')
        if gx:
            ax.plot(gx, gy, 's--', label=label, **style)
            for x, y, name in zip(gx, gy, gnames):
                ax.annotate(name, (x, y), textcoords='offset points', xytext=(4, 4),
                            color=style['color'])
    missing = [v.upper() for v, (g, m) in points.items()
               if not (g and m and g['ours'] is not None and m['ours'] is not None)]
    if missing:
        ax.text(0.98, 0.02, f'pending: {", ".join(missing)}', transform=ax.transAxes,
                ha='right', va='bottom', fontsize=8, color='tab:gray')
    inputs = sorted({g['flops_input'] for g, _ in points.values() if g and g.get('flops_input')})
    ax.set_title(table['title'] + (f'\nours at {", ".join(inputs)}' if inputs else ''), fontsize=9)
    ax.set_xlabel('GFLOPs')
    ax.set_ylabel(column_title('mIoU', table) + ' (%)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='best')


def draw(paper, cells):
    datasets = [d for d, t in paper['tables'].items() if 'gflops' in t['columns']]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        _plot_dataset(ax, paper, cells, dataset)
    fig.suptitle('CGRSeg: mIoU vs GFLOPs, paper and regenerated', fontsize=10)
    fig.tight_layout()
    return fig


def save(fig, png_path, pdf_path):
    # No timestamps in the files, so an unchanged figure is byte-identical (git, DVC).
    fig.savefig(png_path, format='png', dpi=150, metadata={'Software': None})
    fig.savefig(pdf_path, format='pdf', metadata={'CreationDate': None, 'Producer': None,
                                                  'Creator': None})
    plt.close(fig)
