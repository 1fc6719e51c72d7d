"""No secrets in output (issue 16, item 4; docs/security.md): a mirror URL with user:password@ or a
token-like query value never appears in what cgrseg prints, logs or writes, whatever happens to the
transfer (retried, refused, unreachable, malformed). Each command runs as a Snakemake rule runs it,
in a subprocess with stdout and stderr sent to a log file, against a server on 127.0.0.1."""
import shutil
import socket
import subprocess
import sys

import pytest
import yaml

ADE = 'ADEChallengeData2016.zip'
SECRETS = ('s3cret-pass', 'tok-0451', 'sig-9f2e')


def credentialed(base):
    """``base`` (http://127.0.0.1:port/) with a user, a password and secret query values."""
    return base.replace('http://', 'http://alice:s3cret-pass@') + f'{ADE}?token=tok-0451&X-Amz-Signature=sig-9f2e&x=1'


def cgrseg_logged(log, *argv):
    with open(log, 'w') as f:
        return subprocess.run([sys.executable, '-m', 'cgrseg.cli', *map(str, argv)], stdout=f,
                              stderr=subprocess.STDOUT, timeout=600).returncode


def assert_no_secret(*roots):
    for root in roots:
        for path in [root] if root.is_file() else sorted(p for p in root.rglob('*') if p.is_file()):
            data = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in data, f'{secret} in {path}: {data[-400:]!r}'


@pytest.fixture
def served(http_server, synth_archives, tmp_path):
    shutil.copy(synth_archives / ADE, http_server.root / ADE)
    sources = tmp_path / 'sources.yaml'
    doc = yaml.safe_load((synth_archives / 'sources.yaml').read_text())
    doc['datasets'] = {'ade20k': doc['datasets']['ade20k']}
    doc['datasets']['ade20k']['archives'][0]['url'] = credentialed(http_server.url)
    sources.write_text(yaml.safe_dump(doc))
    return http_server, sources


def test_retries_errors_and_records_carry_no_credentials(served, tmp_path):
    server, sources = served
    out = tmp_path / 'out'
    out.mkdir()
    # retried (503), then refused (404), then downloaded and prepared
    server.statuses = [503]
    assert cgrseg_logged(out / 'retry.log', 'download', 'ade20k', '--sources', sources, '--dest',
                         out / 'raw', '--retry-wait', 0) == 0
    assert 'retrying' in (out / 'retry.log').read_text()
    assert '***@127.0.0.1' in (out / 'retry.log').read_text()   # the URL is still named
    missing = credentialed(server.url).replace(ADE, 'missing.zip')
    assert cgrseg_logged(out / '404.log', 'download', 'ade20k', '--sources', sources, '--dest',
                         out / 'raw404', '--url', missing, '--retry-wait', 0) == 2
    assert 'HTTP 404' in (out / '404.log').read_text()
    assert cgrseg_logged(out / 'prepare.log', 'prepare', 'ade20k', '--raw', out / 'raw', '--out',
                         out / 'prepared', '--jobs', 1) == 0
    assert_no_secret(out)


def test_unreachable_and_malformed_urls_carry_no_credentials(served, tmp_path):
    _, sources = served
    with socket.socket() as sock:   # a port that nothing listens on
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    out = tmp_path / 'out'
    out.mkdir()
    cases = {'unreachable': credentialed(f'http://127.0.0.1:{port}/'),
             'malformed': credentialed('http://[127.0.0.1/'),
             'bad scheme': credentialed('ftp://127.0.0.1/')}
    for name, url in cases.items():
        log = out / f'{name}.log'
        assert cgrseg_logged(log, 'download', 'ade20k', '--sources', sources, '--dest',
                             out / 'raw', '--url', url, '--retries', 1, '--retry-wait', 0) == 2
        assert 'cgrseg download: error: ' in log.read_text(), log.read_text()
    assert_no_secret(out)


def test_a_data_file_with_a_bad_credentialed_url_is_one_redacted_line(served, tmp_path):
    _, sources = served
    sources.write_text(sources.read_text().replace('url: http://', 'url: gopher://'))
    log = tmp_path / 'bad.log'
    assert cgrseg_logged(log, 'download', 'ade20k', '--sources', sources, '--dest', tmp_path / 'raw') == 2
    assert 'must be http://, https:// or file://' in log.read_text()
    assert_no_secret(log)
