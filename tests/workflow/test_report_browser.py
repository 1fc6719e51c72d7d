"""`snakemake --report` after a (reduced) demo run, opened in headless Chromium as a user would:
clicking a category and a result's view button shows the diff table and the figure.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe), so nothing
listens on a port. Skipped, saying why, where no Chromium is installed (scripts/setup.sh installs
the Debian package as root). The screenshots are kept in the test's folder.
"""
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

# the demo, cut down to one run: CGRSeg-T on ADE20K, 4 iterations (the hypothesis still measures B)
SMALL = ['datasets=[ade20k]', 'variants=[t]', 'presets={demo: {iters: {t: 4}}}']
CHROMIUM = next(filter(None, map(shutil.which, ('chromium', 'chromium-browser', 'google-chrome'))), None)
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  # data: URL frames in the page's own process, where the protocol session reaches them
                  '--disable-site-isolation-trials', '--window-size=1400,1000']
TIMEOUT = 60

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason='no Chromium (as root, scripts/setup.sh '
                                                          'installs the Debian package chromium)')]


class Browser:
    """Headless Chromium and one page, driven over the DevTools protocol on file descriptors 3/4."""

    def __init__(self, profile):
        commands_r, self._commands = os.pipe()
        self._replies, replies_w = os.pipe()

        def onto_3_and_4():   # above 9 first: the pipe ends may themselves be 3 or 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_r, replies_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f'--user-data-dir={profile}', '--remote-debugging-pipe',
             'about:blank'], preexec_fn=onto_3_and_4, close_fds=False,   # keeps 3 and 4 open
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(commands_r)
        os.close(replies_w)
        self._next, self._buffer = 0, b''
        page = next(t for t in self.call('Target.getTargets')['targetInfos'] if t['type'] == 'page')
        self.session = self.call('Target.attachToTarget', targetId=page['targetId'], flatten=True)['sessionId']
        self.call('Page.enable', session=True)

    def call(self, method, session=False, **params):
        self._next += 1
        message = {'id': self._next, 'method': method, 'params': params}
        if session:
            message['sessionId'] = self.session
        os.write(self._commands, json.dumps(message).encode() + b'\0')
        while True:
            reply = self._read()
            if reply.get('id') == self._next:
                if 'error' in reply:
                    raise AssertionError(f'{method}: {reply["error"]}')
                return reply['result']

    def _read(self):
        deadline = time.monotonic() + TIMEOUT
        while b'\0' not in self._buffer:
            ready, _, _ = select.select([self._replies], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._replies, 1 << 20) if ready else b''
            assert chunk, 'Chromium did not answer'
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b'\0', 1)
        return json.loads(message)

    def evaluate(self, expression, context=None):
        params = {'expression': expression, 'returnByValue': True, 'awaitPromise': True}
        if context is not None:
            params['contextId'] = context
        result = self.call('Runtime.evaluate', session=True, **params)
        assert 'exceptionDetails' not in result, result['exceptionDetails']
        return result['result'].get('value')

    def wait_for(self, expression, context=None):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            value = self.evaluate(expression, context)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f'timed out waiting for {expression}')

    def click_text(self, text):
        """Click the link whose text is ``text`` (a category in the report's menu)."""
        found = self.evaluate(f'''(() => {{
            const a = [...document.querySelectorAll('a')].find(x => x.textContent.trim() === {json.dumps(text)});
            if (a) a.click();
            return !!a; }})()''')
        assert found, f'no link {text!r}'

    def view(self, name):
        """Click the view button of the result named ``name`` in the shown list."""
        self.wait_for(f'''[...document.querySelectorAll('tr')].some(r => r.textContent.includes({json.dumps(name)}))''')
        self.evaluate(f'''[...document.querySelectorAll('tr')].find(r => r.textContent.includes({json.dumps(name)}))
                         .querySelector('a[type=button]').click()''')

    def frame_context(self):
        """An execution context inside the page's (one) iframe: the report shows HTML results there."""
        tree = self.call('Page.getFrameTree', session=True)['frameTree']
        frame = tree['childFrames'][0]['frame']['id']
        return self.call('Page.createIsolatedWorld', session=True, frameId=frame)['executionContextId']

    def screenshot(self, path):
        data = self.call('Page.captureScreenshot', session=True, format='png')['data']
        Path(path).write_bytes(base64.b64decode(data))

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._commands)
        os.close(self._replies)


@pytest.fixture(scope='module')
def report(workflow, tmp_path_factory):
    """results/demo/report.html of a finished, reduced demo run in a copy of the workflow."""
    root = workflow.copy(tmp_path_factory.mktemp('flow'))
    for args in (['report', '--cores', '2'], ['report', '--report', 'results/demo/report.html']):
        done = workflow.run(root, '--workflow-profile', 'none', *args, '--config', *SMALL, timeout=1800)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return root / 'results' / 'demo' / 'report.html'


@pytest.fixture
def browser(tmp_path):
    opened = Browser(tmp_path / 'chromium-profile')
    yield opened
    opened.close()


def open_report(browser, report):
    browser.call('Page.navigate', session=True, url=report.as_uri())
    browser.wait_for("[...document.querySelectorAll('a')].some(a => a.textContent.trim() === '1. Paper vs regenerated')")


def test_the_report_is_one_self_contained_file(report):
    text = report.read_text()
    assert 'src="http' not in text and "src='http" not in text   # nothing fetched from the network
    assert [p.name for p in report.parent.glob('report.*')] == ['report.html']   # no side files


def test_the_diff_table_renders_in_chromium(report, browser, tmp_path):
    open_report(browser, report)
    browser.click_text('1. Paper vs regenerated')
    browser.view('diff.html')
    browser.wait_for("!!document.querySelector('iframe[src^=\"data:text/html\"]')")
    inside = browser.frame_context()
    rows = browser.wait_for("document.readyState === 'complete' && [...document.querySelectorAll('table tr')]"
                            ".map(r => r.innerText)", inside)
    assert rows[0].split('\t')[:3] == ['Model', 'Column', 'Paper']
    assert any(r.startswith('CGRSeg-T\tmIoU (%)\t43.6\t') and '\tdemo\t' in r for r in rows), rows
    assert any(r.startswith('CGRSeg-T\tGFLOPs\t4.0\t3.998') and '\tok\t' in r for r in rows), rows
    browser.screenshot(tmp_path / 'diff.png')


def test_a_figure_renders_in_chromium(report, browser, tmp_path):
    open_report(browser, report)
    browser.click_text('3. Figure')
    browser.view('miou_vs_gflops.png')
    size = browser.wait_for("(() => { const img = document.querySelector('img[src^=\"data:image/png\"]');"
                            " return img && img.complete && [img.naturalWidth, img.naturalHeight]; })()")
    assert size[0] > 300 and size[1] > 200
    browser.screenshot(tmp_path / 'figure.png')
