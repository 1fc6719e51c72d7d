"""Shared pytest fixtures (generic: add your own below, keep them independent of one another)."""
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from cgrseg import cli

# scripts/mutation.py: mutmut forks every mutant's test session from a server that collected the tests;
# what the tests import only when they run (mmseg, the models: seconds) is imported there once instead
if os.environ.get('CGRSEG_TEST_PRELOAD'):
    import gc
    for _module in os.environ['CGRSEG_TEST_PRELOAD'].split():
        __import__(_module)
    gc.freeze()   # pytest's gc.collect() at each session's end then skips these long-lived objects


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """scripts/mutation.py: a mutant's tests run fastest first, as mutmut means them to (its fork runner sorts
    them; its forkserver runner, which we use, passes them in set order, so a mutant that a 0.01 s test kills
    often ran a 6 s test first). Only in a mutant's session: the statistics run measures every test."""
    stats = os.environ.get('CGRSEG_MUTATION_STATS')
    if stats and os.environ.get('MUTANT_UNDER_TEST', '') not in ('', 'stats', 'fail'):
        import json
        seconds = json.loads(Path(stats).read_text())['duration_by_test']
        items.sort(key=lambda item: seconds.get(item.nodeid, 0.0))


def pytest_report_header(config):
    """Where the run's code and temporaries are, and what the machine had left: a CI log that shows
    failures starts (and ends, below) with the facts that explain many of them (another checkout's
    cgrseg, a full disk, little memory)."""
    import cgrseg
    package = Path(cgrseg.__file__).resolve().parent
    here = '' if package == REPO / 'src' / 'cgrseg' else f' (NOT this checkout, {REPO})'
    return [f'cgrseg: {package}{here}; cwd {Path.cwd()}', _machine()]


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f'at the end, {_machine()}')


def _machine():
    import tempfile
    tmp = tempfile.gettempdir()
    free = shutil.disk_usage(tmp).free / 2 ** 30
    meminfo = Path('/proc/meminfo')
    available = next((f', {int(line.split()[1]) / 2 ** 20:.1f} GiB memory available'
                      for line in (meminfo.read_text().splitlines() if meminfo.is_file() else ())
                      if line.startswith('MemAvailable:')), '')
    from cgrseg.data.prepare import _cpu_count   # the CPUs this process may use, as prepare counts them
    return f'machine: {_cpu_count()} CPUs{available}, {free:.1f} GiB free in {tmp}, uid {os.geteuid()}'


def exactly(message):
    """``pytest.raises(..., match=exactly(m))``: the whole message is ``m``."""
    return f'^{re.escape(str(message))}$'


class CliResult:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    @property
    def error_lines(self):
        return [line for line in self.err.splitlines() if ': error: ' in line]


@pytest.fixture
def run_cli(capsys):
    """``run_cli('prepare', 'ade20k', ...)`` -> CliResult(code, stdout, stderr) of cgrseg in-process."""
    def run(*argv):
        capsys.readouterr()
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)
    return run


class _FileHandler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_GET(self):  # noqa: N802 (http.server API)
        server = self.server
        server.log.append({'path': self.path, 'range': self.headers.get('Range')})
        if server.statuses:
            return self._error(server.statuses.pop(0))
        if self.path in server.redirects:
            return self._redirect(server.redirects[self.path])
        path = server.root / unquote(urlsplit(self.path).path.lstrip('/'))  # a query names no file
        if not path.is_file():
            return self._error(404)
        data = path.read_bytes()
        start = self._range_start() if server.honour_range else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header('Content-Range', f'bytes */{len(data)}')
            self.send_header('Content-Length', '0')
            self.end_headers()
            return None
        body = data[start:]
        self.send_response(206 if start else 200)
        if server.chunked:
            return self._send_chunked(body, start, len(data))
        self.send_header('Content-Length', server.content_length or str(len(body)))
        self.send_header('Accept-Ranges', 'bytes')
        if start:
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        self.end_headers()
        cut = server.cuts.pop(0) if server.cuts else None
        if server.drip:
            return self._drip(body)
        if cut is None:
            self.wfile.write(body)
        else:   # announce the full length, send part of it, hang up
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        return None

    def _send_chunked(self, body, start, size):
        """The body in chunks without Content-Length (Transfer-Encoding: chunked)."""
        self.send_header('Transfer-Encoding', 'chunked')
        if start:
            self.send_header('Content-Range', f'bytes {start}-{size - 1}/{size}')
        self.end_headers()
        for offset in range(0, len(body), 4096):
            piece = body[offset:offset + 4096]
            self.wfile.write(f'{len(piece):x}\r\n'.encode() + piece + b'\r\n')
        self.wfile.write(b'0\r\n\r\n')

    def _drip(self, body):
        """Send ``server.drip = (bytes, seconds)``: that many bytes, then a pause, and so on."""
        size, pause = self.server.drip
        try:
            for offset in range(0, len(body), size):
                self.wfile.write(body[offset:offset + size])
                self.wfile.flush()
                time.sleep(pause)
        except OSError:   # the client gave up
            self.close_connection = True

    def _redirect(self, location):
        self.send_response(302)
        self.send_header('Location', location)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def _range_start(self):
        value = self.headers.get('Range', '')
        return int(value[len('bytes='):].split('-')[0]) if value.startswith('bytes=') else 0

    def _error(self, status):
        self.send_response(status)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path_factory):
    """A file server on 127.0.0.1 over ``server.root`` (default: a fresh folder) with faults to inject:

    - ``server.cuts``: per response, send only this many body bytes then drop the connection
      (``None`` entries send everything);
    - ``server.statuses``: per request, answer with this HTTP status instead;
    - ``server.honour_range = False``: ignore Range requests (always 200 with the whole file);
    - ``server.chunked = True``: send bodies chunked, without Content-Length;
    - ``server.drip = (n, seconds)``: send n body bytes, pause, repeat (a slow server);
    - ``server.redirects``: request path -> Location of a 302 answer (e.g. a loop);
    - ``server.content_length``: send this Content-Length header value instead of the true one;
    - ``server.log``: the requests seen ({'path', 'range'}); ``server.url``: base URL ending in /.
    """
    server = ThreadingHTTPServer(('127.0.0.1', 0), _FileHandler)
    server.root = tmp_path_factory.mktemp('served')
    server.cuts, server.statuses, server.log, server.honour_range = [], [], [], True
    server.chunked, server.drip, server.redirects, server.content_length = False, None, {}, None
    server.url = f'http://127.0.0.1:{server.server_address[1]}/'
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def make_synth_archives(folder):
    from cgrseg.data import DATASETS
    from cgrseg.data.synth import synthesize
    for dataset in DATASETS:
        synthesize(dataset, folder)
    return Path(folder)


def make_prepared_datasets(synth, raw, out, datasets=None, jobs=2):
    """``datasets`` (default: all) fetched from ``synth`` into ``raw`` and prepared into ``out``."""
    from cgrseg.data import DATASETS, download, sources
    from cgrseg.data.prepare import prepare
    doc = sources.load(Path(synth) / 'sources.yaml')
    for dataset in datasets or DATASETS:
        for archive, url in download.plan(doc['datasets'][dataset]['archives']):
            download.fetch(archive, url, raw, retry_wait=0)  # file:// URLs: no reason to wait
        prepare(dataset, raw, out, jobs=jobs)
    return Path(out)


def _made_once(variable, folder):
    """A copy of the session input that scripts/mutation.py made once, before the mutants, with the
    unmutated code (in ``$variable``): each mutant's test session would otherwise spend seconds
    remaking it. None when the variable is unset (every ordinary run)."""
    made = os.environ.get(variable)
    if not made:
        return None
    shutil.copytree(made, folder, dirs_exist_ok=True)
    sources = Path(folder) / 'sources.yaml'
    if sources.exists():   # its file:// URLs name the folder it was made in
        sources.write_text(sources.read_text().replace(f'{Path(made).resolve().as_uri()}/',
                                                       f'{Path(folder).resolve().as_uri()}/'))
    return Path(folder)


@pytest.fixture(scope='session')
def synth_archives(tmp_path_factory):
    """Synthetic archives of every dataset (cgrseg synth, default size and seed) in one folder, with
    its sources.yaml; made once per session -- copy before modifying."""
    folder = tmp_path_factory.mktemp('synth')
    return _made_once('CGRSEG_TEST_SYNTH', folder) or make_synth_archives(folder)


# the official archive names of the three datasets (configs/data/sources.yaml)
ARCHIVES = ('ADEChallengeData2016.zip', 'cocostuff-10k-v1.1.zip', 'VOCtrainval_03-May-2010.tar',
            'trainval_merged.json')


@pytest.fixture
def raw(tmp_path, synth_archives):
    """A private copy of the synthetic archives, as `cgrseg prepare --raw` takes them."""
    folder = tmp_path / 'raw'
    folder.mkdir()
    for name in ARCHIVES:
        shutil.copy(synth_archives / name, folder / name)
    return folder


@pytest.fixture(scope='session')
def prepared_datasets(synth_archives, tmp_path_factory):
    """Root folder (the ``data/prepared`` of the configs) holding every synthetic dataset prepared
    by cgrseg download + prepare, with ``<dataset>.manifest.json``; made once per session."""
    raw, out = tmp_path_factory.mktemp('raw'), tmp_path_factory.mktemp('prepared')
    return _made_once('CGRSEG_TEST_PREPARED', out) or make_prepared_datasets(synth_archives, raw, out)


def _tmpfs(folder, options, why):
    """A tmpfs mounted on the new ``folder`` with mount(8) ``options``, unmounted afterwards. Mounting
    needs root and mount(8): elsewhere the test is skipped, saying ``why`` (CI runs as root)."""
    if os.geteuid() != 0 or shutil.which('mount') is None:
        pytest.skip(f'{why}, which needs root and mount(8)')
    folder.mkdir()
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(folder)],
                             capture_output=True, text=True, timeout=60)
    if mounted.returncode != 0:
        pytest.skip(f'cannot mount a tmpfs ({options}) here: {mounted.stderr.strip()}')
    try:
        yield folder
    finally:
        subprocess.run(['umount', '--lazy', str(folder)], check=True, timeout=60)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 kB tmpfs: a disk that fills up at once."""
    yield from _tmpfs(tmp_path / 'disk', 'size=64k', 'a full disk is simulated with a small tmpfs')


@pytest.fixture
def read_only(tmp_path):
    """A folder that even root cannot write (root writes through permission bits): a read-only tmpfs."""
    yield from _tmpfs(tmp_path / 'ro', 'ro,size=64k', 'a folder read-only for root is a read-only mount')


# ---- the Snakemake workflow -------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


class Workflow:
    """The repository's workflow files copied into a folder, run with the venv's snakemake, and what
    a dry run (`-n -p`) prints, parsed."""
    FILES = ('Snakefile', 'workflow', 'params.yaml', 'profiles', 'configs', 'dvc.yaml')
    SNAKEMAKE = Path(sys.executable).parent / 'snakemake'

    def copy(self, root):
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        for name in self.FILES:
            src = REPO / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / name)
        return root

    def run(self, root, *args, timeout=300):
        return subprocess.run([str(self.SNAKEMAKE), *map(str, args)], cwd=root, capture_output=True,
                              text=True, timeout=timeout)

    def dry_run(self, root, *config, check=True):
        args = ['-n', '--workflow-profile', 'none', '--cores', '2', '-p']
        done = self.run(root, *args, *(['--config', *config] if config else []))
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done if not check else done.stdout + done.stderr

    @staticmethod
    def job_counts(output):
        """The 'Job stats' table of a dry run as {rule: count}."""
        if 'Job stats:' not in output:   # 'Nothing to be done'
            return {}
        table = output.split('Job stats:', 1)[1].split('\n\n', 1)[0]
        rows = (line.split() for line in table.splitlines()[3:])
        return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[0] != 'total'}

    @staticmethod
    def job_blocks(output):
        """The dry run's job descriptions (rules and localrules), each starting with the rule name."""
        return re.split(r'\n(?:local)?rule ', output)[1:]

    @staticmethod
    def commands(output, prefix=''):
        """The shell commands of a dry run that start with ``prefix``."""
        lines = [line.split('Shell command: ', 1)[1] for line in output.splitlines()
                 if line.startswith('Shell command: ') and line != 'Shell command: None']
        return [line for line in lines if line.startswith(prefix)]

    @staticmethod
    def option(command, name):
        """The value after ``name`` in a shell command (None without it)."""
        words = shlex.split(command)
        return words[words.index(name) + 1] if name in words else None


@pytest.fixture(scope='session')
def workflow():
    return Workflow()


@pytest.fixture(scope='session')
def demo_dag(workflow, tmp_path_factory):
    """The demo DAG's dry run, printed commands included (one per session)."""
    return workflow.dry_run(workflow.copy(tmp_path_factory.mktemp('demo-dag')))
