"""``cgrseg download``: fetch a dataset's archives, resumably, and verify them before they get
their final names.

Each archive streams into ``DEST/<name>.part``; an interrupted transfer is resumed with an HTTP
Range request (or a seek for file:// URLs) on the next attempt or the next run. Only an archive
whose checksum matches is renamed to ``DEST/<name>``; a mismatching ``.part`` is deleted.
"""
import errno
import os
import re
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests
import urllib3
from tqdm import tqdm

from ..errors import CGRSegError
from ..io import check_output_dir, redact, write_text
from . import sources as src
from .common import open_tar, zip_directory_problem

RETRY_STATUS = {408, 429, 500, 502, 503, 504}
MIN_RATE = 1024   # bytes/s, averaged over each --timeout window; 0 turns the check off


class TransferError(Exception):
    """A transfer failed in a way worth retrying (connection lost, short body, 5xx)."""


def plan(archives, urls=(), from_dir=None):
    """[(archive entry, URL to fetch it from)], applying ``--url`` and ``--from-dir`` overrides.

    A ``--url`` value is ``NAME=URL`` (one archive), a URL ending in ``/`` (a mirror folder: every
    archive is ``URL + name``), or a plain URL (only when the dataset has a single archive).
    """
    chosen = {a['name']: a['url'] for a in archives}
    if from_dir is not None:
        chosen = {name: Path(from_dir).resolve().joinpath(name).as_uri() for name in chosen}
    for value in urls:
        name, sep, rest = value.partition('=')
        if sep and name in chosen:
            chosen[name] = rest
        elif value.endswith('/'):
            chosen = {name: value + name for name in chosen}
        elif len(chosen) == 1:
            chosen = {name: value for name in chosen}
        else:
            raise CGRSegError(f'--url {value}: this dataset has several archives '
                           f'({", ".join(chosen)}); use --url NAME=URL or a folder URL ending in /')
    for name, url in chosen.items():
        if src.scheme(url) not in src.SCHEMES:
            raise CGRSegError(f'{name}: URL {url!r} must be http://, https:// or file://')
    return [(a, chosen[a['name']]) for a in archives]


ARCHIVE_SUFFIXES = ('.zip', '.tar', '.tgz', '.tar.gz', '.json')   # .json: Pascal Context's annotations


def _downloaded(name, names):
    """A name download writes: an archive of the data file (``names``), or of another data file."""
    base = name.removesuffix('.part').removesuffix('.sha256')
    return name in names or base.endswith(ARCHIVE_SUFFIXES)


def check_dest(dest, doc, inputs=()):
    """``--dest`` may hold only what download writes there: archives (of the data file ``doc`` or
    another), their ``.part`` and ``.sha256`` (an archive already there is verified, never replaced)."""
    names = {f'{a["name"]}{suffix}' for entry in doc['datasets'].values()
             for a in entry['archives'] for suffix in ('', '.part', '.sha256')}
    check_output_dir(dest, 'download', inputs, recognised=lambda folder: all(
        p.is_file() and _downloaded(p.name, names) for p in folder.iterdir()))


def fetch(archive, url, dest, retries=5, retry_wait=2.0, timeout=60, min_rate=MIN_RATE):
    """Download one archive into ``dest`` and verify it; returns its final path."""
    dest = Path(dest)
    part = dest / f'{archive["name"]}.part'
    try:
        return _fetch(archive, url, dest, part, retries, retry_wait, timeout, min_rate)
    except OSError as err:   # a full disk, a read-only or foreign folder: one line
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            kept = f' ({part} is kept: free space and run again to resume)' if part.exists() else ''
            raise CGRSegError(f'{dest}: cannot write: {err.strerror}{kept}') from None
        raise CGRSegError(f'{err.filename or dest}: {err.strerror or err}') from None


def _fetch(archive, url, dest, part, retries, retry_wait, timeout, min_rate):
    final = dest / archive['name']
    if final.exists():
        _verify(final, archive, dest, existing=True)
        print(f'{final}: present, checksum verified', file=sys.stderr)
        return final
    dest.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, timeout, min_rate)
            break
        except TransferError as err:
            if attempt == retries:
                kept = f' ({part} is kept: run again to resume)' if part.exists() else ''
                raise CGRSegError(f'{url}: {err}; gave up after {retries + 1} attempt(s){kept}') from None
            print(redact(f'{url}: {err}; retrying'), file=sys.stderr)
            time.sleep(retry_wait * 2 ** attempt)
    try:
        _verify(part, archive, dest)
    except CGRSegError:
        part.unlink()
        raise
    os.replace(part, final)
    return final


def _verify(path, archive, dest, existing=False):
    """Check ``path`` against the pinned checksum, or against (else into) DEST/<name>.sha256; an
    archive whose checksum is not pinned must at least have its format before one is recorded."""
    pinned = src.parse_checksum(archive['checksum'])
    record = dest / f'{archive["name"]}.sha256'
    algorithms = {'sha256'} | ({pinned[0]} if pinned else set())
    actual = src.file_digests(path, algorithms)
    recorded = pinned is None and record.exists()
    if recorded:
        pinned = ('sha256', src.read_record(record))
        archive = dict(archive, checksum=f'sha256:{pinned[1]}  (recorded in {record})')
    if pinned and actual[pinned[0]] != pinned[1]:
        advice = f'; delete {path} to download it again' if existing else ''
        problem = format_problem(path, archive['name'])
        hint = f'; {problem}' if problem else ''
        if recorded:
            advice += (f'; if the recorded checksum is the wrong one (recorded from a bad download), '
                       f'delete {record} and download again')
        raise CGRSegError(f'{path.name}: checksum mismatch: expected {archive["checksum"]}, '
                       f'got {pinned[0]}:{actual[pinned[0]]}{hint}{advice}')
    if pinned is None:
        problem = format_problem(path, archive['name'])
        if problem:
            advice = f'delete {path}, then check' if existing else 'check'
            raise CGRSegError(f'{archive["name"]}: {problem}; no checksum recorded. {advice} the URL '
                              '(--url) or fetch the archive yourself (--from-dir)')
        write_text(record, f'{actual["sha256"]}  {archive["name"]}\n')  # enforced later: never half-written
        print(f'{archive["name"]}: no published checksum; recorded sha256 in {record}. Pin it in the '
              f'data file: checksum: sha256:{actual["sha256"]}', file=sys.stderr)


def format_problem(path, name):
    """Why the file at ``path`` is not an archive of the kind its ``name`` says (zip, uncompressed
    tar, JSON), or None. Reads its header and directory only."""
    with open(path, 'rb') as f:
        head = f.read(512)
    kind = next((k for k in ('zip', 'tar', 'json') if name.endswith(f'.{k}')), None)
    if kind is None:
        return None
    looks = _looks_like(head)
    if kind == 'json':
        return None if head.lstrip()[:1] in (b'{', b'[') else f'not a JSON file ({looks})'
    try:
        if kind == 'zip':
            problem = zip_directory_problem(path)
            if problem:
                return problem
            with zipfile.ZipFile(path) as archive:
                readable = bool(archive.infolist()) and head[:4] == b'PK\x03\x04'
        else:
            with open_tar(path) as archive:
                readable = archive.next() is not None   # a header with a valid checksum
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, ValueError, OSError):
        readable = False
    return None if readable else f'not a {kind} archive ({looks})'


def _looks_like(head):
    if head.lstrip().startswith(b'<'):
        return 'it is an HTML/XML page: an error page served with status 200?'
    return f'it starts with {head[:16]!r}'


def _transfer(url, part, timeout, min_rate):
    if urlparse(url).scheme == 'file':
        _copy_file(Path(unquote(urlparse(url).path)), part)
    else:
        _http_get(url, part, timeout, min_rate)


def _copy_file(source, part):
    if not source.is_file():
        raise CGRSegError(f'{source}: no such file')
    total = source.stat().st_size
    offset = part.stat().st_size if part.exists() else 0
    offset = offset if offset <= total else 0
    with open(source, 'rb') as fin, open(part, 'ab' if offset else 'wb') as fout, \
            _progress(part.name, total, offset) as bar:
        fin.seek(offset)
        for block in iter(lambda: fin.read(src.CHUNK), b''):
            fout.write(block)
            bar.update(len(block))


def _http_get(url, part, timeout, min_rate):
    offset = part.stat().st_size if part.exists() else 0
    # identity: Range offsets and Content-Length must count the bytes we store
    headers = {'Accept-Encoding': 'identity'}
    if offset:
        headers['Range'] = f'bytes={offset}-'
    total, broken = None, ''
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
            if response.status_code == 416 and offset:
                return _check_complete(response, part, offset)
            _raise_for_status(url, response)
            if response.status_code == 206 and not _resumes_at(response, offset):
                _refuse_range(response, part, offset)
            if response.status_code != 206:
                offset = 0   # the server sent the whole file
            length = _content_length(url, response)
            total = offset + length if length is not None else None
            rate = RateGuard(min_rate, timeout)
            with open(part, 'ab' if offset else 'wb') as f, \
                    _progress(part.name, total, offset) as bar:
                for block in _blocks(response):
                    f.write(block)
                    bar.update(len(block))
                    rate.update(len(block))
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError) as err:
        broken = f' ({type(err).__name__})'
        if total is None:
            raise TransferError(f'transfer failed{broken}') from None
    except requests.TooManyRedirects as err:
        raise CGRSegError(f'{url}: too many redirects (a redirect loop?): {err}') from None
    except requests.RequestException as err:
        raise CGRSegError(f'{url}: {type(err).__name__}: {" ".join(str(err).split())}') from None
    size = part.stat().st_size
    if broken or (total is not None and size != total):
        raise TransferError(f'connection closed after {size} of {total} bytes{broken}')
    # without Content-Length (chunked), a body that ended cleanly is complete as far as HTTP can
    # tell: the checksum, or for an unpinned archive its format, decides
    return None


class RateGuard:
    """Raise TransferError when fewer than ``min_rate`` bytes/s arrive over a ``window`` of seconds
    (a server that trickles bytes never trips the read timeout)."""

    def __init__(self, min_rate, window):
        self.min_rate, self.window = min_rate, max(float(window), 1e-3)
        self.start, self.bytes = time.monotonic(), 0

    def update(self, count):
        self.bytes += count
        elapsed = time.monotonic() - self.start
        if not self.min_rate or elapsed < self.window:
            return
        if self.bytes < self.min_rate * elapsed:
            raise TransferError(f'too slow: {self.bytes} bytes in {elapsed:.1f} s, below --min-rate '
                                f'{self.min_rate:g} bytes/s')
        self.start, self.bytes = time.monotonic(), 0


def _blocks(response):
    """The body as it arrives, so that bytes received before a broken connection are kept; at most
    ``sources.CHUNK`` bytes a block (urllib3 >= 2.1 has ``read1``: envs/requirements.lock pins 2.8)."""
    while True:
        block = response.raw.read1(src.CHUNK)
        if not block:
            return
        yield block


def _raise_for_status(url, response):
    if response.status_code in RETRY_STATUS:
        raise TransferError(f'HTTP {response.status_code} {response.reason}')
    if response.status_code >= 400:
        raise CGRSegError(f'{url}: HTTP {response.status_code} {response.reason}')


def _content_length(url, response):
    """The body's announced size in bytes, or None (chunked); a value that is not a byte count is
    a broken server (or a hostile one), not a transfer to retry."""
    value = response.headers.get('Content-Length')
    if value is None:
        return None
    if not re.fullmatch('[0-9]{1,19}', value.strip()):   # no sign, no "1,2", no "1e9", no "²"
        raise CGRSegError(f'{url}: the server sent Content-Length {value[:40]!r}, not a byte count')
    return int(value)


def _resumes_at(response, offset):
    return response.headers.get('Content-Range', '').startswith(f'bytes {offset}-')


def _refuse_range(response, part, offset):
    """206 with a range that does not start where the .part ends: its bytes cannot be appended."""
    part.unlink(missing_ok=True)
    raise TransferError(f'the server answered bytes={offset}- with Content-Range '
                        f'{response.headers.get("Content-Range")!r}; dropped the partial file to start over')


def _check_complete(response, part, offset):
    """416 on resume: the .part is already whole if the server's size equals it."""
    if response.headers.get('Content-Range', '') == f'bytes */{offset}':
        return
    part.unlink()
    raise TransferError('server refused to resume; starting over')


def _progress(name, total, initial):
    return tqdm(total=total, initial=initial, desc=name, unit='B', unit_scale=True,
                unit_divisor=1024, disable=None, file=sys.stderr)
