"""dvc.yaml on the fixture results, in a throw-away git repository: `dvc repro` builds the tables,
is then a no-op, and after a change reruns only what depends on it."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / 'tests' / 'fixtures' / 'metrics'
COPY = ['dvc.yaml', '.dvcignore', '.dvc/config', '.dvc/.gitignore', 'params.yaml',
        'configs/paper/results.yaml', 'configs/paper/hypotheses.yaml', 'src/cgrseg/tables',
        'src/cgrseg/params.py']

pytestmark = pytest.mark.slow
TIMEOUT = 300  # seconds per git/dvc call: a hung subprocess fails the test instead of the CI job


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / 'repo'
    for rel in COPY:
        src, dst = ROOT / rel, repo / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copy2(src, dst)
    # dvc.yaml reads results/${profile}: params.yaml's profile (demo)
    shutil.copytree(FIXTURE / 'results', repo / 'results' / 'demo')
    # dvc.yaml runs `cgrseg`: the package under test, whichever python runs these tests.
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    shim = bin_dir / 'cgrseg'
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m cgrseg "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
               DVC_NO_ANALYTICS='1', GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@localhost',
               GIT_COMMITTER_NAME='t', GIT_COMMITTER_EMAIL='t@localhost')
    git = ['git', '-c', 'init.defaultBranch=main']
    subprocess.run([*git, 'init', '-q'], cwd=repo, env=env, check=True, timeout=TIMEOUT)
    subprocess.run(['git', 'add', '-A'], cwd=repo, env=env, check=True, timeout=TIMEOUT)
    subprocess.run(['git', 'commit', '-qm', 'fixture'], cwd=repo, env=env, check=True,
                   timeout=TIMEOUT)
    return repo, env


def dvc(repo, env, *args):
    proc = subprocess.run([sys.executable, '-m', 'dvc', *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def ran(output):
    return re.findall(r"Running stage '(\w+)'", output)


def test_dvc_repro_is_a_noop_until_a_metric_changes(repo):
    repo, env = repo
    assert ran(dvc(repo, env, 'repro')) == ['collect', 'tables', 'diff', 'figure']
    for rel in ('results/demo/metrics.json', 'results/demo/diff.md', 'results/demo/diff.json',
                'results/demo/tables/ade20k.tex', 'results/demo/figures/miou_vs_gflops.pdf'):
        assert (repo / rel).is_file(), rel
    # Table outputs are cache: false, so they stay in git.
    ignored = subprocess.run(['git', 'check-ignore', '-q', 'results/demo/tables/ade20k.md'], cwd=repo,
                             timeout=TIMEOUT)
    assert ignored.returncode == 1
    subprocess.run(['git', 'add', '-A'], cwd=repo, env=env, check=True, timeout=TIMEOUT)
    subprocess.run(['git', 'commit', '-qm', 'tables'], cwd=repo, env=env, check=True,
                   timeout=TIMEOUT)

    assert ran(dvc(repo, env, 'repro')) == []
    assert 'up to date' in dvc(repo, env, 'status')
    within = json.loads((repo / 'results/demo/diff.json').read_text())['summary']['within']

    # A new file next to the metrics (a training log) reruns collect, whose output is unchanged.
    (repo / 'results/demo/runs/ade20k/cgrseg-t/seed0/train.log').write_text('iter 1\n')
    assert ran(dvc(repo, env, 'repro')) == ['collect']

    metrics = repo / 'results/demo/runs/ade20k/cgrseg-t/seed0/metrics.json'
    metrics.write_text(metrics.read_text().replace('43.71', '44.2'))
    assert ran(dvc(repo, env, 'repro')) == ['collect', 'tables', 'diff', 'figure']
    assert '44.20' in (repo / 'results/demo/tables/ade20k.md').read_text()
    changes = dvc(repo, env, 'metrics', 'diff')
    assert re.search(r'ade20k\.cgrseg-t\.mIoU\s+43\.71\s+44\.2', changes), changes
    # 43.71 is within the paper's 43.6 +- 0.5 (configs/paper/results.yaml), 44.2 is not
    assert re.search(rf'summary\.within\s+{within}\s+{within - 1}', changes), changes
