"""cgrseg download against a local HTTP server (127.0.0.1) and file:// sources."""
import hashlib
import shutil
import socket

import pytest
import yaml

from cgrseg.errors import CGRSegError
from cgrseg.data import download

ADE = 'ADEChallengeData2016.zip'


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served(http_server, synth_archives):
    """The server, serving every synthetic archive, and the synthetic data file."""
    for path in synth_archives.iterdir():
        if path.suffix in ('.zip', '.tar', '.json'):
            shutil.copy(path, http_server.root / path.name)
    return http_server, synth_archives / 'sources.yaml'


def fetch_ade(run_cli, server, sources, dest, *extra):
    return run_cli('download', 'ade20k', '--sources', sources, '--dest', dest,
                   '--url', server.url + ADE, '--retry-wait', 0, *extra)


def assert_one_error(result, *fragments):
    assert result.code == 2
    assert len(result.error_lines) == 1, result.err
    assert result.error_lines[0].startswith('cgrseg download: error: ')
    for fragment in fragments:
        assert fragment in result.error_lines[0]


def test_download_verifies_and_names_the_archive(run_cli, served, tmp_path):
    server, sources = served
    result = fetch_ade(run_cli, server, sources, tmp_path / 'raw')
    assert result.code == 0, result.err
    assert sha256(tmp_path / 'raw' / ADE) == sha256(server.root / ADE)
    assert sorted(p.name for p in (tmp_path / 'raw').iterdir()) == [ADE]
    assert server.log == [{'path': '/' + ADE, 'range': None}]


def test_download_resumes_with_range_after_a_cut_connection(run_cli, served, tmp_path):
    server, sources = served
    server.cuts = [5000]
    result = fetch_ade(run_cli, server, sources, tmp_path)
    assert result.code == 0, result.err
    assert [r['range'] for r in server.log] == [None, 'bytes=5000-']
    assert sha256(tmp_path / ADE) == sha256(server.root / ADE)


def test_download_resumes_a_part_left_by_an_earlier_run(run_cli, served, tmp_path):
    server, sources = served
    server.cuts = [7000]
    first = fetch_ade(run_cli, server, sources, tmp_path, '--retries', 0)
    assert_one_error(first, 'connection closed after 7000 of', 'run again to resume')
    assert not (tmp_path / ADE).exists()
    assert (tmp_path / f'{ADE}.part').stat().st_size == 7000
    second = fetch_ade(run_cli, server, sources, tmp_path)
    assert second.code == 0, second.err
    assert server.log[-1]['range'] == 'bytes=7000-'
    assert sha256(tmp_path / ADE) == sha256(server.root / ADE)
    assert not (tmp_path / f'{ADE}.part').exists()


def test_download_starts_over_when_the_server_ignores_range(run_cli, served, tmp_path):
    server, sources = served
    server.cuts, server.honour_range = [3000], False
    result = fetch_ade(run_cli, server, sources, tmp_path)
    assert result.code == 0, result.err
    assert sha256(tmp_path / ADE) == sha256(server.root / ADE)


def test_download_retries_server_errors(run_cli, served, tmp_path):
    server, sources = served
    server.statuses = [503, 500]
    result = fetch_ade(run_cli, server, sources, tmp_path)
    assert result.code == 0, result.err
    assert len(server.log) == 3


def test_download_checksum_mismatch_names_both_digests(run_cli, served, tmp_path):
    server, sources = served
    (server.root / ADE).write_bytes(b'not the archive')
    expected = yaml.safe_load(sources.read_text())['datasets']['ade20k']['archives'][0]['checksum']
    result = fetch_ade(run_cli, server, sources, tmp_path)
    actual = hashlib.sha256(b'not the archive').hexdigest()
    assert_one_error(result, 'checksum mismatch', f'expected {expected}', f'got sha256:{actual}')
    assert list(tmp_path.iterdir()) == []


def test_download_404_is_one_error_without_retries(run_cli, served, tmp_path):
    server, sources = served
    # --retry-wait 0: were 404 retried, the default waits (2+4+..+32 s) would stall the suite
    result = run_cli('download', 'ade20k', '--sources', sources, '--dest', tmp_path,
                     '--url', server.url + 'missing.zip', '--retry-wait', 0)
    assert_one_error(result, 'missing.zip', 'HTTP 404')
    assert len(server.log) == 1
    assert list(tmp_path.iterdir()) == []


def test_download_gives_up_on_a_server_that_always_closes_early(run_cli, served, tmp_path):
    server, sources = served
    server.cuts = [1000] * 3
    result = fetch_ade(run_cli, server, sources, tmp_path, '--retries', 2)
    assert_one_error(result, 'gave up after 3 attempt(s)')
    assert [r['range'] for r in server.log] == [None, 'bytes=1000-', 'bytes=2000-']
    assert not (tmp_path / ADE).exists()


def test_download_unreachable_server(run_cli, served, tmp_path):
    _, sources = served
    with socket.socket() as sock:   # a port that nothing listens on
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    result = run_cli('download', 'ade20k', '--sources', sources, '--dest', tmp_path, '--url',
                     f'http://127.0.0.1:{port}/{ADE}', '--retries', 1, '--retry-wait', 0)
    assert_one_error(result, 'transfer failed (ConnectionError); gave up after 2 attempt(s)')
    assert 'is kept' not in result.err and list(tmp_path.iterdir()) == []


def test_download_folder_url_fetches_every_archive(run_cli, served, tmp_path):
    server, sources = served
    result = run_cli('download', 'pascal_context', '--sources', sources, '--dest', tmp_path,
                     '--url', server.url)
    assert result.code == 0, result.err
    names = ('VOCtrainval_03-May-2010.tar', 'trainval_merged.json')
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert all(sha256(tmp_path / n) == sha256(server.root / n) for n in names)


def test_download_file_urls_and_from_dir(run_cli, synth_archives, tmp_path):
    sources = synth_archives / 'sources.yaml'
    assert run_cli('download', 'coco_stuff10k', '--sources', sources, '--dest', tmp_path / 'a').code == 0
    result = run_cli('download', 'coco_stuff10k', '--sources', sources, '--dest', tmp_path / 'b',
                     '--from-dir', tmp_path / 'a')
    assert result.code == 0, result.err
    name = 'cocostuff-10k-v1.1.zip'
    assert sha256(tmp_path / 'b' / name) == sha256(synth_archives / name)
    missing = run_cli('download', 'ade20k', '--sources', sources, '--dest', tmp_path / 'c',
                      '--from-dir', tmp_path / 'a')
    assert_one_error(missing, f'{tmp_path / "a" / ADE}: no such file')


def test_download_records_and_then_enforces_an_unpublished_checksum(run_cli, served, tmp_path):
    server, _ = served
    name = 'cocostuff-10k-v1.1.zip'
    sources = tmp_path / 'sources.yaml'
    sources.write_text(yaml.safe_dump({'version': 1, 'datasets': {'coco_stuff10k': {
        'archives': [{'name': name, 'url': server.url + name, 'checksum': None}],
        'counts': {'train': 8, 'val': 4}}}}))
    first = run_cli('download', 'coco_stuff10k', '--sources', sources, '--dest', tmp_path / 'raw')
    assert first.code == 0, first.err
    record = tmp_path / 'raw' / f'{name}.sha256'
    assert record.read_text() == f'{sha256(server.root / name)}  {name}\n'
    assert f'checksum: sha256:{sha256(server.root / name)}' in first.err
    (tmp_path / 'raw' / name).unlink()
    (server.root / name).write_bytes(b'a different file')
    again = run_cli('download', 'coco_stuff10k', '--sources', sources, '--dest', tmp_path / 'raw')
    assert_one_error(again, 'checksum mismatch', str(record))
    assert not (tmp_path / 'raw' / name).exists()


def test_download_checks_an_archive_already_present(run_cli, served, tmp_path):
    server, sources = served
    assert fetch_ade(run_cli, server, sources, tmp_path).code == 0
    assert fetch_ade(run_cli, server, sources, tmp_path).code == 0
    assert len(server.log) == 1   # verified, not fetched again
    (tmp_path / ADE).write_bytes(b'damaged')
    result = fetch_ade(run_cli, server, sources, tmp_path)
    assert_one_error(result, 'checksum mismatch', f'delete {tmp_path / ADE}')
    assert (tmp_path / ADE).read_bytes() == b'damaged'   # never deleted silently


def test_plan_url_forms():
    one = [{'name': 'a.zip', 'url': 'http://x/a.zip', 'checksum': None}]
    two = one + [{'name': 'b.json', 'url': 'http://x/b.json', 'checksum': None}]
    urls = lambda plan: [url for _, url in plan]  # noqa: E731
    assert urls(download.plan(one, ['http://m/a.zip?x=1'])) == ['http://m/a.zip?x=1']
    assert urls(download.plan(two, ['http://m/d/'])) == ['http://m/d/a.zip', 'http://m/d/b.json']
    assert urls(download.plan(two, ['b.json=file:///d/b.json'])) == ['http://x/a.zip',
                                                                      'file:///d/b.json']
    with pytest.raises(CGRSegError, match='several archives'):
        download.plan(two, ['http://m/a.zip'])
    with pytest.raises(CGRSegError, match='must be http'):
        download.plan(one, ['ftp://m/a.zip'])


# ---------------------------------------------------------------- slow, chunked, wrong and looping

def test_download_gives_up_on_a_trickle_and_keeps_the_part(run_cli, served, tmp_path):
    server, sources = served
    server.drip = (1, 0.3)   # one byte every 0.3 s: never trips the read timeout
    result = fetch_ade(run_cli, server, sources, tmp_path, '--retries', 0, '--timeout', 2,
                       '--min-rate', 100)
    assert_one_error(result, 'too slow:', 'below --min-rate 100 bytes/s',
                     f'{tmp_path / ADE}.part is kept: run again to resume')
    kept = (tmp_path / f'{ADE}.part').stat().st_size
    assert 1 <= kept < 20 and not (tmp_path / ADE).exists()
    server.drip = None
    again = fetch_ade(run_cli, server, sources, tmp_path)
    assert again.code == 0, again.err
    assert server.log[-1]['range'] == f'bytes={kept}-'
    assert sha256(tmp_path / ADE) == sha256(server.root / ADE)


def test_download_accepts_a_chunked_body_without_content_length(run_cli, served, tmp_path):
    server, sources = served
    server.chunked = True
    result = fetch_ade(run_cli, server, sources, tmp_path, '--retries', 0)
    assert result.code == 0, result.err
    assert sha256(tmp_path / ADE) == sha256(server.root / ADE)


def unpinned_coco(server, tmp_path):
    name = 'cocostuff-10k-v1.1.zip'
    sources = tmp_path / 'sources.yaml'
    sources.write_text(yaml.safe_dump({'version': 1, 'datasets': {'coco_stuff10k': {
        'archives': [{'name': name, 'url': server.url + name, 'checksum': None}],
        'counts': {'train': 8, 'val': 4}}}}))
    return name, sources


def test_download_accepts_a_chunked_unpinned_archive_by_its_format(run_cli, served, tmp_path):
    server, _ = served
    server.chunked = True
    name, sources = unpinned_coco(server, tmp_path)
    result = run_cli('download', 'coco_stuff10k', '--sources', sources, '--dest', tmp_path / 'raw',
                     '--retries', 0)
    assert result.code == 0, result.err
    assert (tmp_path / 'raw' / f'{name}.sha256').read_text().split()[0] == sha256(server.root / name)


def test_download_never_records_the_checksum_of_an_error_page(run_cli, served, tmp_path):
    server, _ = served
    name, sources = unpinned_coco(server, tmp_path)
    real = (server.root / name).read_bytes()
    (server.root / name).write_bytes(b'<!DOCTYPE html><html><body>Service unavailable</body></html>')
    raw = tmp_path / 'raw'
    result = run_cli('download', 'coco_stuff10k', '--sources', sources, '--dest', raw)
    assert_one_error(result, f'{name}: not a zip archive', 'HTML', 'no checksum recorded')
    assert list(raw.iterdir()) == []   # neither the page nor a .sha256 of it
    (server.root / name).write_bytes(real)   # the server recovers: the real archive is accepted
    assert run_cli('download', 'coco_stuff10k', '--sources', sources, '--dest', raw).code == 0


def test_download_mismatch_with_a_recorded_checksum_says_how_to_reset_it(run_cli, served, tmp_path):
    server, _ = served
    name, sources = unpinned_coco(server, tmp_path)
    raw = tmp_path / 'raw'
    raw.mkdir()
    (raw / f'{name}.sha256').write_text(f'{"0" * 64}  {name}\n')   # recorded from a bad download
    result = run_cli('download', 'coco_stuff10k', '--sources', sources, '--dest', raw)
    assert_one_error(result, 'checksum mismatch', f'delete {raw / name}.sha256 and download again')


def test_download_pinned_mismatch_says_what_the_file_is(run_cli, served, tmp_path):
    server, sources = served
    (server.root / ADE).write_bytes(b'<html><body>Not found</body></html>')
    result = fetch_ade(run_cli, server, sources, tmp_path)
    assert_one_error(result, 'checksum mismatch', 'not a zip archive', 'HTML')


def test_download_redirect_loop_is_one_line(run_cli, served, tmp_path):
    server, sources = served
    server.redirects = {'/' + ADE: server.url + ADE}
    result = fetch_ade(run_cli, server, sources, tmp_path)
    assert_one_error(result, f'{server.url}{ADE}: too many redirects')
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('value', ['abc', '-5', '1e9', '12x', '\u00b2', '9' * 5000])
def test_download_content_length_that_is_not_a_byte_count_is_one_line(run_cli, served, tmp_path,
                                                                       value):
    server, sources = served
    server.content_length = value
    result = fetch_ade(run_cli, server, sources, tmp_path)
    assert_one_error(result, server.url + ADE, 'Content-Length', 'not a byte count')
    assert not list(tmp_path.iterdir())   # not even a .part
