"""Atomic output helpers: write to a temporary sibling, then rename into place."""
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary directory next to ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + '\n')


def write_text(path, text):
    """Write ``text`` atomically; a failed write (full disk, no permission) is one ``CGRSegError``
    naming ``path`` and leaves neither ``path`` nor a temporary file behind."""
    from cgrseg.errors import CGRSegError
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    except OSError as err:
        raise CGRSegError(f'{path}: cannot write: {err.strerror or err}') from None


def file_digests(path, algorithms, chunk=1 << 20):
    """Hex digests of the file at ``path`` for each hashlib algorithm name, in one pass."""
    hashes = {name: hashlib.new(name) for name in set(algorithms)}
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            for h in hashes.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashes.items()}


def sha256_file(path):
    return file_digests(path, ['sha256'])['sha256']


def load_yaml(path, what):
    """Parse a YAML mapping; every expected failure is a one-line ``CGRSegError`` naming the file."""
    import yaml
    from cgrseg.errors import CGRSegError
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CGRSegError(f'{path}: {what} not found') from None
    except OSError as err:
        raise CGRSegError(f'{path}: cannot read {what}: {err.strerror}') from None
    except yaml.YAMLError as err:
        raise CGRSegError(f'{path}: {what} is not valid YAML: {" ".join(str(err).split())}') from None
    if not isinstance(data, dict):
        raise CGRSegError(f'{path}: {what} must be a YAML mapping')
    return data
