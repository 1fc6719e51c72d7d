"""A resumed download must use a 206 reply only when it starts at the offset that was asked for.

A server (or a proxy) may answer ``Range: bytes=N-`` with 206 and another range; its bytes appended
at N would corrupt the archive. The reply is refused, the partial file dropped and the transfer
starts over without a Range.
"""
import hashlib
import shutil

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
