"""A resumed download must use a 206 reply only when it starts at the offset that was asked for.

A server (or a proxy) may answer ``Range: bytes=N-`` with 206 and another range; its bytes appended
at N would corrupt the archive. The reply is refused, the partial file dropped and the transfer
starts over without a Range.
"""
import errno
import hashlib
import io
import os
import shutil
import struct
import sys
import threading
import types
import zipfile

import pytest

from conftest import _FileHandler, exactly  # noqa: F401  (the shared test server's handler)

ADE = 'ADEChallengeData2016.zip'


class ShiftedRangeHandler(_FileHandler):
    """Answers a Range request with the range ``shift`` bytes later (labelled honestly)."""

    def _range_start(self):
        start = super()._range_start()
        return start + self.server.shift if start else 0


@pytest.fixture
def shifting_server(http_server, synth_archives):
    http_server.RequestHandlerClass = ShiftedRangeHandler
    http_server.shift = 100
    shutil.copy(synth_archives / ADE, http_server.root / ADE)
    return http_server


def test_a_206_reply_at_another_offset_is_refused_and_the_download_starts_over(run_cli, shifting_server,
                                                                               synth_archives, tmp_path):
    server = shifting_server
    server.cuts = [5000]   # the first transfer breaks off; the resume gets bytes 5100- instead of 5000-
    result = run_cli('download', 'ade20k', '--sources', synth_archives / 'sources.yaml', '--dest', tmp_path,
                     '--url', server.url + ADE, '--retry-wait', 0)
    assert result.code == 0, result.err
    assert [r['range'] for r in server.log] == [None, 'bytes=5000-', None]
    assert "answered bytes=5000- with Content-Range 'bytes 5100-" in result.err
    digest = hashlib.sha256((server.root / ADE).read_bytes()).hexdigest()
    assert hashlib.sha256((tmp_path / ADE).read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == [ADE]


def test_a_206_reply_at_another_offset_gives_up_with_one_line_when_it_persists(run_cli, shifting_server,
                                                                               synth_archives, tmp_path):
    server = shifting_server
    server.cuts = [5000]
    result = run_cli('download', 'ade20k', '--sources', synth_archives / 'sources.yaml', '--dest', tmp_path,
                     '--url', server.url + ADE, '--retry-wait', 0, '--retries', 1)
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert 'answered bytes=5000- with' in result.error_lines[0] and 'gave up after 2' in result.error_lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def served_ade(http_server, synth_archives):
    shutil.copy(synth_archives / ADE, http_server.root / ADE)
    return http_server


def fetch(run_cli, server, synth_archives, dest, *extra):
    return run_cli('download', 'ade20k', '--sources', synth_archives / 'sources.yaml', '--dest', dest,
                   '--url', server.url + ADE, '--retry-wait', 0, *extra)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_part_that_is_already_whole_is_accepted_on_416(run_cli, served_ade, synth_archives, tmp_path):
    """The server answers the resume with 416 and its size, which equals the .part: nothing to fetch."""
    whole = (served_ade.root / ADE).read_bytes()
    (tmp_path / f'{ADE}.part').write_bytes(whole)
    result = fetch(run_cli, served_ade, synth_archives, tmp_path)
    assert result.code == 0, result.err
    assert served_ade.log == [{'path': '/' + ADE, 'range': f'bytes={len(whole)}-'}]
    assert sha256(tmp_path / ADE) == sha256(served_ade.root / ADE) and 'retrying' not in result.err


def test_a_part_longer_than_the_file_starts_over_after_416(run_cli, served_ade, synth_archives, tmp_path):
    size = (served_ade.root / ADE).stat().st_size
    (tmp_path / f'{ADE}.part').write_bytes(b'\0' * (size + 10))   # left by another version of the file
    result = fetch(run_cli, served_ade, synth_archives, tmp_path)
    assert result.code == 0, result.err
    assert [r['range'] for r in served_ade.log] == [f'bytes={size + 10}-', None]
    assert 'server refused to resume; starting over; retrying' in result.err
    assert sha256(tmp_path / ADE) == sha256(served_ade.root / ADE)


def test_a_persistent_416_is_one_line_naming_it(run_cli, served_ade, synth_archives, tmp_path):
    size = (served_ade.root / ADE).stat().st_size
    (tmp_path / f'{ADE}.part').write_bytes(b'\0' * (size + 10))
    result = fetch(run_cli, served_ade, synth_archives, tmp_path, '--retries', 0)
    assert result.code == 2 and result.error_lines == [
        f'cgrseg download: error: {served_ade.url}{ADE}: server refused to resume; starting over; '
        f'gave up after 1 attempt(s)']
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('part', ['half', 'longer'])
def test_a_file_url_resumes_a_part_or_starts_over(run_cli, synth_archives, tmp_path, part):
    source = synth_archives / ADE
    data = source.read_bytes()
    dest = tmp_path / 'raw'
    dest.mkdir()
    (dest / f'{ADE}.part').write_bytes(data[:len(data) // 2] if part == 'half' else b'\0' * (len(data) + 1))
    result = run_cli('download', 'ade20k', '--sources', synth_archives / 'sources.yaml', '--dest', dest)
    assert result.code == 0, result.err
    assert (dest / ADE).read_bytes() == data and sorted(p.name for p in dest.iterdir()) == [ADE]


def test_a_large_file_url_is_copied_in_bounded_memory(tmp_path):
    """A 40 MiB archive is copied in blocks (sources.CHUNK, 1 MiB): Python's allocations stay far below
    its size. (Over HTTP the test server itself holds the whole file, so only file:// is measured.)"""
    import tracemalloc
    from cgrseg.data import download
    big = tmp_path / 'big.tar'
    big.write_bytes(bytes(range(256)) * (40 * 4096))
    archive = {'name': 'big.tar', 'url': None, 'checksum': f'sha256:{sha256(big)}'}
    url = big.as_uri()
    tracemalloc.start()
    try:
        download.fetch(archive, url, tmp_path / 'raw', retry_wait=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sha256(tmp_path / 'raw' / 'big.tar') == sha256(big)
    assert peak < 8 << 20, f'peak {peak / 2**20:.1f} MiB of Python allocations for a 40 MiB archive'


# ---------------------------------------------------------------- replies that cannot be resumed

class NoContentRangeHandler(_FileHandler):
    """Answers a Range request with 206 but without the Content-Range header."""

    def send_header(self, keyword, value):
        if keyword != 'Content-Range':
            super().send_header(keyword, value)


class AlwaysShiftedHandler(_FileHandler):
    """Answers every request, a plain GET too, with 206 and the bytes from ``shift`` on."""

    def _range_start(self):
        return super()._range_start() + self.server.shift


def test_a_206_reply_without_content_range_is_refused_and_the_download_starts_over(
        run_cli, served_ade, synth_archives, tmp_path):
    served_ade.RequestHandlerClass = NoContentRangeHandler
    served_ade.cuts = [5000]
    result = fetch(run_cli, served_ade, synth_archives, tmp_path)
    assert result.code == 0, result.err
    assert [r['range'] for r in served_ade.log] == [None, 'bytes=5000-', None]
    assert 'answered bytes=5000- with Content-Range None; dropped the partial file' in result.err
    assert sha256(tmp_path / ADE) == sha256(served_ade.root / ADE)


def test_a_206_reply_to_a_plain_get_at_another_offset_is_a_transfer_error(run_cli, served_ade,
                                                                        synth_archives, tmp_path):
    """No .part exists yet: refusing the reply has nothing to drop, and retries like any transfer."""
    served_ade.RequestHandlerClass, served_ade.shift = AlwaysShiftedHandler, 100
    size = (served_ade.root / ADE).stat().st_size
    result = fetch(run_cli, served_ade, synth_archives, tmp_path, '--retries', 1)
    assert result.code == 2 and result.error_lines == [
        f"cgrseg download: error: {served_ade.url}{ADE}: the server answered bytes=0- with Content-Range "
        f"'bytes 100-{size - 1}/{size}'; dropped the partial file to start over; gave up after 2 attempt(s)"]
    assert len(served_ade.log) == 2 and list(tmp_path.iterdir()) == []


def test_http_400_is_one_line_without_retries(run_cli, served_ade, synth_archives, tmp_path):
    served_ade.statuses = [400]
    result = fetch(run_cli, served_ade, synth_archives, tmp_path, '--retries', 3)
    assert result.code == 2 and result.error_lines == [
        f'cgrseg download: error: {served_ade.url}{ADE}: HTTP 400 Bad Request']
    assert len(served_ade.log) == 1 and list(tmp_path.iterdir()) == []


def test_a_persistent_503_is_retried_then_one_line_naming_it(run_cli, served_ade, synth_archives, tmp_path):
    served_ade.statuses = [503, 503]
    result = fetch(run_cli, served_ade, synth_archives, tmp_path, '--retries', 1)
    url = f'{served_ade.url}{ADE}'
    assert f'{url}: HTTP 503 Service Unavailable; retrying' in result.err.splitlines()
    assert result.code == 2 and result.error_lines == [
        f'cgrseg download: error: {url}: HTTP 503 Service Unavailable; gave up after 2 attempt(s)']


# ---------------------------------------------------------------- file:// resumes

def pinned(path, name='blob.zip'):
    """An archive entry named ``name`` whose pinned checksum is that of the file at ``path``."""
    return {'name': name, 'url': None, 'checksum': f'sha256:{sha256(path)}'}


def test_a_file_url_resume_appends_the_rest_after_the_part(tmp_path):
    """The .part's bytes are kept as they are (not copied again): only the source's rest is appended."""
    from cgrseg.data import download
    source = tmp_path / 'source.bin'
    source.write_bytes(bytes(range(256)) * 40)
    dest = tmp_path / 'raw'
    dest.mkdir()
    (dest / 'blob.zip.part').write_bytes(b'x' * 1000)   # differs from the source's first 1000 bytes
    expected = tmp_path / 'expected'
    expected.write_bytes(b'x' * 1000 + source.read_bytes()[1000:])
    final = download.fetch(pinned(expected), source.as_uri(), dest, retry_wait=0)
    assert final.read_bytes() == expected.read_bytes()


def test_a_file_url_part_as_long_as_the_source_is_taken_whole(tmp_path):
    from cgrseg.data import download
    source = tmp_path / 'source.bin'
    source.write_bytes(bytes(range(256)) * 40)
    dest = tmp_path / 'raw'
    dest.mkdir()
    part = dest / 'blob.zip.part'
    part.write_bytes(b'y' * source.stat().st_size)
    final = download.fetch(pinned(part), source.as_uri(), dest, retry_wait=0)
    assert final.read_bytes() == b'y' * source.stat().st_size


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize('how', ['file', 'http'])
def test_on_a_terminal_the_progress_bar_names_the_part_and_reaches_100_percent_on_resume(
        monkeypatch, served_ade, synth_archives, tmp_path, how):
    from cgrseg.data import download
    source = synth_archives / ADE
    data = source.read_bytes()
    (tmp_path / f'{ADE}.part').write_bytes(data[:len(data) // 2])
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, 'stderr', terminal)
    url = source.as_uri() if how == 'file' else served_ade.url + ADE
    final = download.fetch(pinned(source, ADE), url, tmp_path, retry_wait=0)
    assert final.read_bytes() == data
    last = terminal.getvalue().strip().split('\r')[-1]
    assert last.startswith(f'{ADE}.part: 100%|'), repr(terminal.getvalue())


# ---------------------------------------------------------------- what a downloaded file is

def problem(tmp_path, name, data):
    from cgrseg.data.download import format_problem
    path = tmp_path / name
    path.write_bytes(data)
    return format_problem(path, name)


HTML = 'it is an HTML/XML page: an error page served with status 200?'


@pytest.mark.parametrize('name', ['ADEChallengeData2016.zip', 'VOCtrainval_03-May-2010.tar',
                                  'trainval_merged.json'])
def test_a_real_archive_of_each_kind_has_no_format_problem(synth_archives, tmp_path, name):
    assert problem(tmp_path, name, (synth_archives / name).read_bytes()) is None


@pytest.mark.parametrize('data', [b'{"a": [1]}', b'[1, 2]', b' \n\t{"a": 1}', b'\n[]'])
def test_json_may_start_with_whitespace_then_an_object_or_a_list(tmp_path, data):
    assert problem(tmp_path, 'a.json', data) is None


def test_a_name_of_another_kind_is_never_judged(tmp_path):
    assert problem(tmp_path, 'a.tar.gz', b'<html>') is None


@pytest.mark.parametrize('name, data, expected', [
    ('a.zip', b'  \n<!DOCTYPE html><html>Not found</html>', f'not a zip archive ({HTML})'),
    ('a.tar', b'\n<html>Service unavailable</html>', f'not a tar archive ({HTML})'),
    ('a.json', b'\r\n <?xml version="1.0"?><error/>', f'not a JSON file ({HTML})'),
    ('a.json', b'"a string" and more', "not a JSON file (it starts with b'\"a string\" and m')"),
    ('a.tar', bytes(range(1, 100)) * 10, "not a tar archive (it starts with b'\\x01\\x02\\x03\\x04\\x05"
                                         "\\x06\\x07\\x08\\t\\n\\x0b\\x0c\\r\\x0e\\x0f\\x10')"),
    # read from its first 512 bytes only: a JSON whose first 512 bytes are blank is not one
    ('a.json', b' ' * 512 + b'{}', f"not a JSON file (it starts with b'{' ' * 16}')"),
])
def test_a_file_that_is_not_its_kind_is_named_so_with_what_it_looks_like(tmp_path, name, data, expected):
    assert problem(tmp_path, name, data) == expected


def zip_bytes(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        for member in members:
            archive.writestr(member, b'data')
    return buffer.getvalue()


def test_a_zip_without_members_or_with_bytes_before_it_is_not_a_dataset_zip(tmp_path):
    empty = zip_bytes([])
    assert problem(tmp_path, 'a.zip', empty) == f'not a zip archive (it starts with {empty[:16]!r})'
    prefixed = b'#!/bin/sh junk\n\n' + zip_bytes(['a.txt'])   # zipfile itself reads it (a self-extractor)
    assert problem(tmp_path, 'b.zip', prefixed) == (
        "not a zip archive (it starts with b'#!/bin/sh junk\\n\\n')")


def test_a_zip_whose_directory_is_too_large_is_refused_before_zipfile_reads_it(tmp_path):
    from cgrseg.data.common import MAX_DIRECTORY_BYTES
    size = MAX_DIRECTORY_BYTES + 1
    end = struct.pack('<4s4H2LH', b'PK\x05\x06', 0, 0, 1, 1, size, 0, 0)   # an end record that lies
    assert problem(tmp_path, 'a.zip', b'PK\x03\x04' + end) == (
        f'its central directory has {size} bytes, more than the {MAX_DIRECTORY_BYTES} a dataset '
        'archive needs')


# ---------------------------------------------------------------- the minimum rate, on a fake clock

@pytest.fixture
def clock(monkeypatch):
    """``clock.now``: the time download's RateGuard sees (seconds)."""
    from cgrseg.data import download
    fake = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(download.time, 'monotonic', lambda: fake.now)
    return fake


def feed(guard, clock, *steps):
    """Send ``count`` bytes at each ``(time, count)``."""
    for now, count in steps:
        clock.now = now
        guard.update(count)


def test_the_rate_is_checked_once_a_window_has_passed_and_counts_every_byte(clock):
    from cgrseg.data.download import RateGuard, TransferError
    guard = RateGuard(100, 2)
    feed(guard, clock, (1.0, 50), (2.0, 150))   # 50 B/s in the first second: not yet checked; 200 B in 2 s
    feed(guard, clock, (3.0, 100), (4.0, 100))   # the next window starts afresh: 200 B in 2 s again
    with pytest.raises(TransferError, match=r'^too slow: 199 bytes in 2\.0 s, below --min-rate 100 bytes/s$'):
        feed(guard, clock, (5.0, 100), (6.0, 99))
    with pytest.raises(TransferError, match=r'^too slow: 199 bytes in 2\.0 s, below --min-rate 100 bytes/s$'):
        feed(RateGuard(100, 2), clock, (7.0, 150), (8.0, 49))   # the first window, one byte short


def test_a_window_under_one_second_is_honoured(clock):
    from cgrseg.data.download import RateGuard, TransferError
    with pytest.raises(TransferError, match=r'^too slow: 49 bytes in 0\.5 s, below --min-rate 100 bytes/s$'):
        feed(RateGuard(100, 0.5), clock, (0.5, 49))


def test_a_min_rate_of_0_never_gives_up(clock):
    from cgrseg.data.download import RateGuard
    feed(RateGuard(0, 2), clock, (100.0, 0), (1000.0, 0))


# ---------------------------------------------------------------- the body, in bounded blocks

class FakeRaw:
    """urllib3's response body: ``read1(amt)`` returns what has arrived, at most ``amt`` (None: all)."""

    def __init__(self, data):
        self.data, self.asked = data, []

    def read1(self, amt=None):
        self.asked.append(amt)
        amt = len(self.data) if amt is None else amt
        block, self.data = self.data[:amt], self.data[amt:]
        return block


def test_the_body_is_read_in_blocks_of_at_most_chunk_bytes():
    from cgrseg.data import download, sources
    data = bytes(range(256)) * (3 * sources.CHUNK // 256) + b'tail'
    raw = FakeRaw(data)
    blocks = list(download._blocks(types.SimpleNamespace(raw=raw)))
    assert b''.join(blocks) == data and max(map(len, blocks)) == sources.CHUNK
    assert set(raw.asked) == {sources.CHUNK}


# ---------------------------------------------------------------- exact messages, on the API

@pytest.fixture
def transfers(monkeypatch):
    """download's transfers replaced: each call is recorded as (url, part, timeout, min_rate) and runs
    ``transfers.effect(part)`` (default: raise TransferError('boom')); waits are recorded, not slept."""
    from cgrseg.data import download

    def boom(part):
        raise download.TransferError('boom')

    fake = types.SimpleNamespace(calls=[], waits=[], effect=boom)

    def transfer(url, part, timeout, min_rate):
        fake.calls.append((url, part, timeout, min_rate))
        fake.effect(part)
    monkeypatch.setattr(download, '_transfer', transfer)
    monkeypatch.setattr(download.time, 'sleep', fake.waits.append)
    return fake


def test_plan_splits_name_equals_url_at_the_first_equals_sign():
    from cgrseg.data import download
    two = [{'name': 'a.zip', 'url': 'http://x/a.zip', 'checksum': None},
           {'name': 'b.json', 'url': 'http://x/b.json', 'checksum': None}]
    plan = download.plan(two, ['b.json=http://m/get?file=b.json&v=2'])
    assert [url for _, url in plan] == ['http://x/a.zip', 'http://m/get?file=b.json&v=2']


def test_plan_errors_name_the_value_and_the_archives():
    from cgrseg.data import download
    from cgrseg.errors import CGRSegError
    one = [{'name': 'a.zip', 'url': 'http://x/a.zip', 'checksum': None}]
    two = one + [{'name': 'b.json', 'url': 'http://x/b.json', 'checksum': None}]
    with pytest.raises(CGRSegError, match=exactly(
            '--url http://m/a.zip: this dataset has several archives (a.zip, b.json); '
            'use --url NAME=URL or a folder URL ending in /')):
        download.plan(two, ['http://m/a.zip'])
    with pytest.raises(CGRSegError, match=exactly("b.json: URL 'ftp://m/b.json' must be http://, https:// "
                                                  "or file://")):
        download.plan(two, ['b.json=ftp://m/b.json'])


def test_a_default_fetch_tries_six_times_waiting_2_to_32_s_with_a_60_s_timeout(transfers, capsys, tmp_path):
    from cgrseg.data import download
    from cgrseg.errors import CGRSegError
    url = 'http://user:secret@example.org/blob.zip'
    with pytest.raises(CGRSegError, match=exactly(f'{url}: boom; gave up after 6 attempt(s)')):
        download.fetch({'name': 'blob.zip', 'url': url, 'checksum': None}, url, tmp_path / 'raw')
    part = tmp_path / 'raw' / 'blob.zip.part'
    assert transfers.calls == [(url, part, 60, download.MIN_RATE)] * 6
    assert transfers.waits == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert capsys.readouterr().err.splitlines() == ['http://***@example.org/blob.zip: boom; retrying'] * 5


def test_retry_waits_double_from_retry_wait_and_the_last_failure_keeps_the_part(transfers, tmp_path):
    from cgrseg.data import download
    from cgrseg.errors import CGRSegError

    def half(part):   # some bytes arrive, then the transfer breaks
        with open(part, 'ab') as f:
            f.write(b'x' * 10)
        raise download.TransferError('connection closed')
    transfers.effect = half
    dest = tmp_path / 'raw'
    with pytest.raises(CGRSegError, match=exactly(
            f'file:///b.zip: connection closed; gave up after 4 attempt(s) ({dest / "b.zip.part"} is kept: '
            'run again to resume)')):
        download.fetch({'name': 'b.zip', 'url': None, 'checksum': None}, 'file:///b.zip', dest, retries=3,
                       retry_wait=1.5, timeout=7, min_rate=5)
    assert transfers.waits == [1.5, 3.0, 6.0]
    assert [call[2:] for call in transfers.calls] == [(7, 5)] * 4
    assert (dest / 'b.zip.part').read_bytes() == b'x' * 40


@pytest.mark.parametrize('code', ['ENOSPC', 'EDQUOT', 'EFBIG'])
@pytest.mark.parametrize('written', [0, 10])
def test_a_full_disk_is_one_line_naming_the_folder_and_a_kept_part(transfers, tmp_path, code, written):
    from cgrseg.data import download
    from cgrseg.errors import CGRSegError
    number = getattr(errno, code)

    def full(part):
        if written:
            part.write_bytes(b'x' * written)
        raise OSError(number, os.strerror(number), str(part))
    transfers.effect = full
    dest = tmp_path / 'raw'
    kept = f' ({dest / "b.zip.part"} is kept: free space and run again to resume)' if written else ''
    with pytest.raises(CGRSegError, match=exactly(f'{dest}: cannot write: {os.strerror(number)}{kept}')):
        download.fetch({'name': 'b.zip', 'url': None, 'checksum': None}, 'file:///b.zip', dest)
    assert transfers.waits == []   # a full disk is not retried


@pytest.mark.parametrize('error, expected', [
    (OSError(errno.EACCES, 'Permission denied', '/data/raw/b.zip.part'), '/data/raw/b.zip.part: Permission denied'),
    (OSError(errno.EACCES, 'Permission denied'), '{dest}: Permission denied'),
    (OSError('a device without errno'), '{dest}: a device without errno'),
])
def test_another_os_error_is_one_line_naming_its_file_or_the_folder(transfers, tmp_path, error, expected):
    from cgrseg.data import download
    from cgrseg.errors import CGRSegError

    def fail(part):
        raise error
    transfers.effect = fail
    dest = tmp_path / 'raw'
    with pytest.raises(CGRSegError, match=exactly(expected.format(dest=dest))):
        download.fetch({'name': 'b.zip', 'url': None, 'checksum': None}, 'file:///b.zip', dest)


def test_an_archive_already_present_is_verified_and_said_so_on_stderr(transfers, capsys, tmp_path):
    from cgrseg.data import download
    (tmp_path / 'b.zip').write_bytes(zip_bytes(['a.txt']))
    final = download.fetch(pinned(tmp_path / 'b.zip', 'b.zip'), 'http://x/b.zip', tmp_path)
    assert final == tmp_path / 'b.zip' and transfers.calls == []
    assert capsys.readouterr() == ('', f'{final}: present, checksum verified\n')


def test_fetch_makes_a_missing_dest_with_its_parents(tmp_path):
    from cgrseg.data import download
    source = tmp_path / 'b.zip'
    source.write_bytes(zip_bytes(['a.txt']))
    dest = tmp_path / 'a' / 'b' / 'raw'
    assert download.fetch(pinned(source, 'b.zip'), source.as_uri(), dest).read_bytes() == source.read_bytes()


# ---------------------------------------------------------------- verification, word for word

def served_file(tmp_path, data, name='b.zip'):
    """A file:// source holding ``data`` and an empty DEST."""
    source = tmp_path / 'source' / name
    source.parent.mkdir()
    source.write_bytes(data)
    return source, tmp_path / 'raw'


def test_a_pinned_mismatch_of_a_download_names_both_digests_and_drops_the_part(tmp_path):
    """The file is a good zip (no format problem to hint at), and was just downloaded (nothing to delete)."""
    from cgrseg.data import download
    from cgrseg.errors import CGRSegError
    source, dest = served_file(tmp_path, zip_bytes(['a.txt']))
    wrong = '0' * 64
    with pytest.raises(CGRSegError, match=exactly(
            f'b.zip.part: checksum mismatch: expected sha256:{wrong}, got sha256:{sha256(source)}')):
        download.fetch({'name': 'b.zip', 'url': None, 'checksum': f'sha256:{wrong}'}, source.as_uri(), dest)
    assert list(dest.iterdir()) == []


def test_an_md5_pinned_archive_is_verified_by_its_md5(tmp_path):
    from cgrseg.data import download
    from cgrseg.errors import CGRSegError
    source, dest = served_file(tmp_path, zip_bytes(['a.txt']))
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    archive = {'name': 'b.zip', 'url': None, 'checksum': f'md5:{md5}'}
    assert download.fetch(archive, source.as_uri(), dest).read_bytes() == source.read_bytes()
    (dest / 'b.zip').write_bytes(zip_bytes(['other.txt']))
    other = hashlib.md5((dest / 'b.zip').read_bytes()).hexdigest()
    with pytest.raises(CGRSegError, match=exactly(
            f'b.zip: checksum mismatch: expected md5:{md5}, got md5:{other}; delete {dest / "b.zip"} to '
            'download it again')):
        download.fetch(archive, source.as_uri(), dest)


def test_a_present_archive_against_a_wrong_record_says_both_ways_out(tmp_path):
    from cgrseg.data import download
    from cgrseg.errors import CGRSegError
    source, dest = served_file(tmp_path, zip_bytes(['a.txt']))
    dest.mkdir()
    shutil.copy(source, dest / 'b.zip')
    record = dest / 'b.zip.sha256'
    record.write_text(f'{"0" * 64}  b.zip\n')   # recorded from a bad download
    with pytest.raises(CGRSegError, match=exactly(
            f'b.zip: checksum mismatch: expected sha256:{"0" * 64}  (recorded in {record}), got sha256:'
            f'{sha256(source)}; delete {dest / "b.zip"} to download it again; if the recorded checksum is '
            f'the wrong one (recorded from a bad download), delete {record} and download again')):
        download.fetch({'name': 'b.zip', 'url': None, 'checksum': None}, source.as_uri(), dest)


def test_an_unpinned_archive_of_the_wrong_format_is_refused_saying_what_to_check(tmp_path):
    from cgrseg.data import download
    from cgrseg.errors import CGRSegError
    page = b'<html>Not found</html>'
    source, dest = served_file(tmp_path, page)
    archive = {'name': 'b.zip', 'url': None, 'checksum': None}
    tail = f'not a zip archive ({HTML}); no checksum recorded.'
    advice = 'the URL (--url) or fetch the archive yourself (--from-dir)'
    with pytest.raises(CGRSegError, match=exactly(f'b.zip: {tail} check {advice}')):
        download.fetch(archive, source.as_uri(), dest)
    assert list(dest.iterdir()) == []
    (dest / 'b.zip').write_bytes(page)   # put there by hand
    with pytest.raises(CGRSegError, match=exactly(f'b.zip: {tail} delete {dest / "b.zip"}, then check {advice}')):
        download.fetch(archive, source.as_uri(), dest)
    assert sorted(p.name for p in dest.iterdir()) == ['b.zip']


def test_an_unpinned_archive_gets_its_sha256_recorded_and_the_line_to_pin_it(tmp_path, capsys):
    from cgrseg.data import download
    source, dest = served_file(tmp_path, zip_bytes(['a.txt']))
    download.fetch({'name': 'b.zip', 'url': None, 'checksum': None}, source.as_uri(), dest)
    digest = sha256(source)
    assert (dest / 'b.zip.sha256').read_text() == f'{digest}  b.zip\n'
    assert capsys.readouterr().err.splitlines()[-1] == (
        f'b.zip: no published checksum; recorded sha256 in {dest / "b.zip.sha256"}. Pin it in the data file: '
        f'checksum: sha256:{digest}')


# ---------------------------------------------------------------- what is sent, and what breaks

class HeaderLogHandler(_FileHandler):
    """Also logs the Accept-Encoding header of each request; waits for ``server.go`` (an Event) first."""

    def do_GET(self):  # noqa: N802 (http.server API)
        self.server.encodings.append(self.headers.get('Accept-Encoding'))
        self.server.go.wait(10)
        return super().do_GET()


@pytest.fixture
def logging_server(served_ade):
    served_ade.RequestHandlerClass, served_ade.encodings = HeaderLogHandler, []
    served_ade.go = threading.Event()
    served_ade.go.set()
    yield served_ade
    served_ade.go.set()


def test_every_request_asks_for_the_identity_encoding_and_a_resume_for_the_rest(logging_server, synth_archives,
                                                                              tmp_path):
    """Compressed bodies would make Range offsets and Content-Length count other bytes than the .part's."""
    from cgrseg.data import download
    server = logging_server
    server.cuts = [5000]
    url = server.url + ADE
    download.fetch(pinned(synth_archives / ADE, ADE), url, tmp_path, retry_wait=0)
    assert [r['range'] for r in server.log] == [None, 'bytes=5000-']
    assert server.encodings == ['identity', 'identity']


def test_a_server_that_does_not_answer_within_the_timeout_is_a_failed_transfer(logging_server, synth_archives,
                                                                             tmp_path):
    from cgrseg.data import download
    from cgrseg.errors import CGRSegError
    server = logging_server
    server.go.clear()   # the server holds its answer (10 s at most)
    url = server.url + ADE
    with pytest.raises(CGRSegError, match=exactly(f'{url}: transfer failed (ReadTimeout); gave up after 1 '
                                                  'attempt(s)')):
        download.fetch(pinned(synth_archives / ADE, ADE), url, tmp_path, retries=0, timeout=0.2)


def test_a_request_that_cannot_be_made_is_one_line_naming_its_exception(tmp_path):
    from cgrseg.data import download
    from cgrseg.errors import CGRSegError
    url = 'http:///b.zip'
    with pytest.raises(CGRSegError, match=exactly(f"{url}: InvalidURL: Invalid URL '{url}': No host supplied")):
        download.fetch({'name': 'b.zip', 'url': url, 'checksum': None}, url, tmp_path, retries=3)


def test_a_body_shorter_than_its_content_length_is_retried_naming_both_sizes(served_ade, synth_archives,
                                                                            tmp_path):
    from cgrseg.data import download
    from cgrseg.errors import CGRSegError
    served_ade.cuts = [5000]
    url = served_ade.url + ADE
    size = (synth_archives / ADE).stat().st_size
    with pytest.raises(CGRSegError, match=exactly(
            f'{url}: connection closed after 5000 of {size} bytes (ProtocolError); gave up after 1 attempt(s) '
            f'({tmp_path / ADE}.part is kept: run again to resume)')):
        download.fetch(pinned(synth_archives / ADE, ADE), url, tmp_path, retries=0)


def test_a_connection_broken_after_the_announced_length_is_still_a_failed_transfer(monkeypatch, served_ade,
                                                                                  synth_archives, tmp_path):
    """Every byte arrived, but the response did not end cleanly: it is retried (the resume then finds
    the .part whole), never taken as it is."""
    import urllib3
    from cgrseg.data import download
    from cgrseg.errors import CGRSegError
    blocks = download._blocks

    def broken(response):
        yield from blocks(response)
        raise urllib3.exceptions.ProtocolError('Connection broken')
    monkeypatch.setattr(download, '_blocks', broken)
    url = served_ade.url + ADE
    size = (synth_archives / ADE).stat().st_size
    with pytest.raises(CGRSegError, match=exactly(
            f'{url}: connection closed after {size} of {size} bytes (ProtocolError); gave up after 1 '
            f'attempt(s) ({tmp_path / ADE}.part is kept: run again to resume)')):
        download.fetch(pinned(synth_archives / ADE, ADE), url, tmp_path, retries=0)
