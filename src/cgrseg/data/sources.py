"""The data file (configs/data/sources.yaml): archives, checksums and expected counts per dataset."""
import contextlib
import fcntl
import re
from pathlib import Path
from urllib.parse import urlparse

import yaml

from ..errors import CGRSegError
from ..io import file_digests, load_yaml, write_text  # noqa: F401  (file_digests: used as sources.file_digests)
from . import DATASETS

DEFAULT = Path('configs', 'data', 'sources.yaml')
ALGORITHMS = {'md5': 32, 'sha1': 40, 'sha256': 64}   # name -> hex length
SCHEMES = ('http', 'https', 'file')
CHUNK = 1 << 20

HEADER = ('# Written by `cgrseg synth`: synthetic archives in the official formats (schema: '
          'configs/data/sources.yaml).\n')


def scheme(url):
    """The scheme of ``url``, or None when it is not a URL at all (``http://[x/`` raises in urllib)."""
    try:
        return urlparse(str(url)).scheme
    except ValueError:
        return None


def default_path():
    """configs/data/sources.yaml under the current directory, else under the repository that holds
    this (editable-installed) package."""
    candidates = [Path.cwd() / DEFAULT, Path(__file__).resolve().parents[3] / DEFAULT]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CGRSegError(f'no data file at {candidates[0]} or {candidates[1]}; pass --sources FILE')


def load(path=None):
    """The validated document of the data file at ``path`` (default: :func:`default_path`)."""
    path = Path(path) if path else default_path()
    doc = load_yaml(path, 'data file')
    _check_document(doc, path)
    return doc


def dataset_entry(doc, dataset, path='data file'):
    try:
        return doc['datasets'][dataset]
    except KeyError:
        raise CGRSegError(f'{path}: no entry for dataset {dataset!r}') from None


def parse_checksum(text):
    """``"sha1:<hex>"`` -> ``("sha1", "<hex>")``; None stays None."""
    if text is None:
        return None
    algo, _, digest = str(text).partition(':')
    if ALGORITHMS.get(algo) != len(digest) or not re.fullmatch('[0-9a-f]+', digest):
        raise ValueError(f'checksum {text!r} is not "<md5|sha1|sha256>:<lowercase hex>"')
    return algo, digest


def read_record(path):
    """The sha256 that `cgrseg download` recorded in ``path`` (``<hex>  <name>``)."""
    try:
        with open(path, 'rb') as f:   # '<64 hex digits>  <name>\n': a few hundred bytes at most
            digest = f.read(4096).decode('ascii').split()[0]
        parse_checksum(f'sha256:{digest}')
    except (UnicodeDecodeError, IndexError, ValueError):
        raise CGRSegError(f'{path}: not a recorded sha256 ("<64 hex digits>  <name>"); delete it and '
                          'run `cgrseg download` again') from None
    except OSError as err:
        raise CGRSegError(f'{path}: cannot read the recorded sha256: {err.strerror}') from None
    return digest


def _check_document(doc, path):
    if not isinstance(doc, dict) or not isinstance(doc.get('datasets'), dict):
        raise CGRSegError(f'{path}: expected a mapping with a "datasets" mapping')
    for name, entry in doc['datasets'].items():
        problem = _entry_problem(name, entry)
        if problem:
            raise CGRSegError(f'{path}: datasets.{name}: {problem}')


def _entry_problem(name, entry):
    if name not in DATASETS:
        return f'unknown dataset (known: {", ".join(DATASETS)})'
    if not isinstance(entry, dict) or not isinstance(entry.get('archives'), list) \
            or not entry['archives']:
        return 'needs a non-empty "archives" list'
    for archive in entry['archives']:
        problem = _archive_problem(archive)
        if problem:
            return problem
    counts = entry.get('counts')
    if not isinstance(counts, dict) or sorted(counts) != ['train', 'val'] \
            or not all(isinstance(n, int) and n > 0 for n in counts.values()):
        return '"counts" must be {train: N, val: N} with positive integers'
    return None


def _archive_problem(archive):
    if not isinstance(archive, dict) or not {'name', 'url', 'checksum'} <= set(archive):
        return 'each archive needs name, url and checksum (null if unpublished)'
    name = archive['name']
    if not isinstance(name, str) or not name or '/' in name or name.startswith('.'):
        return f'archive name {name!r} must be a plain file name'
    if scheme(archive['url']) not in SCHEMES:
        return f'{name}: url {archive["url"]!r} must be http://, https:// or file://'
    try:
        parse_checksum(archive['checksum'])
    except ValueError as err:
        return f'{name}: {err}'
    return None


@contextlib.contextmanager
def _locked(path):
    """Serialise writers of ``path`` (several `cgrseg synth` may share one output folder)."""
    lock = path.with_name(f'.{path.name}.lock')
    with open(lock, 'w') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def write_entry(path, dataset, entry):
    """Set ``datasets[dataset]`` of the data file at ``path`` (created if absent), keeping the rest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        doc = {'version': 1, 'datasets': {}}
        if path.exists():
            doc = load(path)
        doc['datasets'][dataset] = entry
        _check_document(doc, path)
        write_text(path, HEADER + yaml.safe_dump(doc, sort_keys=False))
