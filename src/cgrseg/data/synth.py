"""``cgrseg synth``: small synthetic archives in the official formats, so that download -> prepare
-> train -> evaluate run on the real code paths without the real data.

Each archive carries a marker file (common.MARKER) at its dataset root that the converters detect;
images show their label regions as colours plus noise (learnable, not trivial). Same seed, same
bytes: the archives are reproducible.
"""
import math
import os
import shutil
import tempfile
from pathlib import Path

from .. import ranges as R
from ..errors import CGRSegError
from ..io import output_dir, write_text
from . import sources as src
from .prepare import module


def split_counts(images):
    """Train/val sizes for ``--images N``: N training images, half as many (at least 2) for val."""
    R.require(images, R.SYNTH_IMAGES, '--images')
    return {'train': images, 'val': max(2, (images + 1) // 2)}


def _mb(size):
    return math.ceil(size / (1 << 20) * 1000) / 1000 or 0.001


def synthesize(dataset, out, images=8, seed=0):
    """Write the dataset's synthetic archives into ``out``; register them in ``out/sources.yaml``."""
    spec = module(dataset)
    out = output_dir(out, 'synth').resolve()  # never over archives it did not write
    counts = split_counts(images)
    scratch = Path(tempfile.mkdtemp(prefix=f'.{dataset}.', suffix='.tmp', dir=out))
    try:
        names = spec.synthesize(scratch, counts, seed)
        for name in names:
            os.replace(scratch / name, out / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    digests = {name: src.file_digests(out / name, ['sha256'])['sha256'] for name in names}
    write_text(out / f'{dataset}.SHA256SUMS',
               ''.join(f'{digest}  {name}\n' for name, digest in digests.items()))
    sizes = {name: (out / name).stat().st_size for name in names}
    entry = {
        'synthetic': True,
        'archives': [{'name': name, 'url': (out / name).as_uri(), 'checksum': f'sha256:{digest}',
                      'size_mb': _mb(sizes[name])}
                     for name, digest in digests.items()],
        # the official file's two size fields (cgrseg doctor reserves disk from them): decoded
        # images and labels take at most about twice their archives
        'prepared_mb': _mb(2 * sum(sizes.values())),
        'counts': counts,
        'num_classes': spec.NUM_CLASSES,
    }
    src.write_entry(out / 'sources.yaml', dataset, entry)
    return out / 'sources.yaml'
