"""A resumed download must use a 206 reply only when it starts at the offset that was asked for.

A server (or a proxy) may answer ``Range: bytes=N-`` with 206 and another range; its bytes appended
at N would corrupt the archive. The reply is refused, the partial file dropped and the transfer
starts over without a Range.
"""
import hashlib
import io
import shutil
import struct
import sys
import types
import zipfile

import pytest

from conftest import _FileHandler  # noqa: F401  (the shared test server's handler)

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
