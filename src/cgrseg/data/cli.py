"""Subcommands ``synth``, ``download`` and ``prepare`` (see docs/data.md)."""
import sys
from pathlib import Path

from cgrseg.cli import optional

from .. import ranges as R
from . import DATASETS


def add_parser(subparsers):
    synth = subparsers.add_parser(
        'synth', help='write small synthetic archives in the official formats',
        description='Write small synthetic archives of DATASET in the official formats into OUT, '
                    'plus OUT/sources.yaml (file:// URLs, checksums) and OUT/DATASET.SHA256SUMS.')
    synth.add_argument('dataset', choices=DATASETS)
    synth.add_argument('--out', required=True, type=Path, help='folder for the archives')
    synth.add_argument('--images', type=R.option(R.SYNTH_IMAGES), default=8,
                       help='training images (validation: half as many, at least 2); default 8')
    synth.add_argument('--seed', type=R.option(R.SEED), default=0)
    synth.set_defaults(func=_synth)

    download = subparsers.add_parser(
        'download', help="download and verify a dataset's archives",
        description='Download the archives of DATASET into DEST, resuming interrupted transfers, '
                    'and verify their checksums before giving them their final names.')
    download.add_argument('dataset', choices=DATASETS)
    download.add_argument('--dest', required=True, type=Path, help='folder for the archives')
    download.add_argument('--sources', type=Path,
                          help='data file (default: configs/data/sources.yaml)')
    download.add_argument('--url', action='append', default=[], metavar='URL',
                          help='mirror: URL (single-archive datasets), NAME=URL, or a folder URL '
                               'ending in / that holds every archive under its name; repeatable')
    download.add_argument('--from-dir', type=optional(Path), metavar='DIR|none',
                          help='take the archives from DIR (pre-downloaded), verifying them '
                               '(none: download them; write ./none for a folder of that name)')
    download.add_argument('--retries', type=R.option(R.RETRIES), default=5, help='retries per archive (default 5)')
    download.add_argument('--retry-wait', type=R.option(R.WAIT), default=2.0, metavar='SECONDS',
                          help='first wait between retries, doubled each time (default 2)')
    download.add_argument('--timeout', type=R.option(R.TIMEOUT), default=60.0, metavar='SECONDS',
                          help='connect/read timeout, and the window of --min-rate (default 60)')
    download.add_argument('--min-rate', type=R.option(R.RATE), default=1024, metavar='BYTES_PER_S',
                          help='give the attempt up (keeping the .part to resume from) when fewer '
                               'bytes/s arrive over a --timeout window; 0: never (default 1024)')
    download.set_defaults(func=_download)

    prepare = subparsers.add_parser(
        'prepare', help="convert downloaded archives to mmseg's layout",
        description="Extract and convert DATASET's archives from RAW into mmseg's layout under OUT "
                    'and write OUT/DATASET.manifest.json.')
    prepare.add_argument('dataset', choices=DATASETS)
    prepare.add_argument('--raw', required=True, type=Path, help='folder holding the archives')
    prepare.add_argument('--out', required=True, type=Path, help='root of the prepared datasets')
    prepare.add_argument('--sources', type=Path,
                         help='data file with expected counts and checksums of the real archives '
                              '(default: configs/data/sources.yaml)')
    prepare.add_argument('--jobs', type=R.option(R.PROCESSES), help='worker processes (default: all CPUs)')
    prepare.add_argument('--force', action='store_true',
                         help='convert again even if the manifest matches the archives')
    prepare.set_defaults(func=_prepare)


def _synth(args):
    from .synth import synthesize
    path = synthesize(args.dataset, args.out, images=args.images, seed=args.seed)
    print(path)


def _download(args):
    from . import download, sources
    doc_path = args.sources or sources.default_path()
    doc = sources.load(doc_path)
    entry = sources.dataset_entry(doc, args.dataset, doc_path)
    download.check_dest(args.dest, doc, inputs=(doc_path, args.from_dir))
    for archive, url in download.plan(entry['archives'], args.url, args.from_dir):
        final = download.fetch(archive, url, args.dest, retries=args.retries,
                               retry_wait=args.retry_wait, timeout=args.timeout,
                               min_rate=args.min_rate)
        print(final)


def _prepare(args):
    from .prepare import prepare
    print(prepare(args.dataset, args.raw, args.out, sources=args.sources, jobs=args.jobs,
                  force=args.force), file=sys.stdout)
