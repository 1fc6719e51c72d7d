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
