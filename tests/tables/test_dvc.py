"""dvc.yaml, the one definition of the table stages, in a throw-away git repository: `dvc repro`
builds the tables, is then a no-op, and after a change reruns only what depends on it; Snakemake's
rules, made from the same stages, write byte-identical tables, and both reproduce the committed demo
snapshot from its result files."""
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cgrseg.io import MARKER   # claims an output folder for its command (docs/security.md)

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / 'tests' / 'fixtures' / 'metrics'
REFERENCE = ROOT / 'results' / 'reference' / 'demo'
COPY = ['dvc.yaml', '.dvcignore', '.dvc/config', '.dvc/.gitignore', 'params.yaml', 'Snakefile', 'workflow',
        'profiles', 'configs/paper', 'src/cgrseg/tables', 'src/cgrseg/layout.py', 'src/cgrseg/params.py']
TABLE_RULES = ['effective_params', 'collect', 'tables', 'diff', 'figure']
# what the table stages write that is plain text (the figure's PDF carries its creation time)
TEXT_OUTPUTS = ['metrics.json', 'diff.md', 'diff.json', 'tables']

pytestmark = pytest.mark.slow
TIMEOUT = 300  # seconds per git/dvc call: a hung subprocess fails the test instead of the CI job


def make_repo(tmp_path, results):
    """A git repository with the table stages' files and ``results`` as results/demo (the preset of
    params.yaml); `cgrseg` on PATH runs the package under test."""
    repo = tmp_path / 'repo'
    for rel in COPY:
        src, dst = ROOT / rel, repo / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copy2(src, dst)
    for part in results:
        shutil.copytree(part, repo / 'results' / 'demo' / part.name)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    shim = bin_dir / 'cgrseg'
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m cgrseg "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
               DVC_NO_ANALYTICS='1', GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@localhost',
               GIT_COMMITTER_NAME='t', GIT_COMMITTER_EMAIL='t@localhost')
    git(repo, env, '-c', 'init.defaultBranch=main', 'init', '-q')
    commit(repo, env, 'fixture')
    return repo, env


def git(repo, env, *args):
    subprocess.run(['git', *args], cwd=repo, env=env, check=True, timeout=TIMEOUT)


def commit(repo, env, message):
    git(repo, env, 'add', '-A')
    git(repo, env, 'commit', '-qm', message)


def dvc(repo, env, *args):
    proc = subprocess.run([sys.executable, '-m', 'dvc', *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def record_params(repo, env):
    """What a Snakemake run leaves for DVC: its effective params."""
    subprocess.run(['cgrseg', 'params', '--out', 'results/demo/params.effective.yaml'], cwd=repo, env=env,
                   check=True, timeout=TIMEOUT)


def ran(output):
    return re.findall(r"Running stage '(\w+)'", output)


def test_dvc_repro_is_a_noop_until_a_metric_changes(tmp_path):
    repo, env = make_repo(tmp_path, sorted((FIXTURE / 'results').iterdir()))
    record_params(repo, env)
    assert ran(dvc(repo, env, 'repro')) == ['collect', 'tables', 'diff', 'figure']
    for rel in ('results/demo/metrics.json', 'results/demo/diff.md', 'results/demo/diff.json',
                'results/demo/tables/ade20k.tex', 'results/demo/figures/miou_vs_gflops.pdf'):
        assert (repo / rel).is_file(), rel
    # Table outputs are cache: false, so they stay in git.
    ignored = subprocess.run(['git', 'check-ignore', '-q', 'results/demo/tables/ade20k.md'], cwd=repo,
                             timeout=TIMEOUT)
    assert ignored.returncode == 1
    commit(repo, env, 'tables')

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

    # a run's params reach DVC through its effective params file: only the stage that reads the key reruns
    effective = repo / 'results/demo/params.effective.yaml'
    assert 'formats: [md, csv, tex]' in effective.read_text()
    effective.write_text(effective.read_text().replace('formats: [md, csv, tex]', 'formats: [md]'))
    assert ran(dvc(repo, env, 'repro')) == ['tables']
    assert sorted(p.name for p in (repo / 'results/demo/tables').iterdir() if p.name != MARKER) == [
        'ade20k.md', 'coco_stuff10k.md', 'pascal_context.md']


def same_text_outputs(one, other):
    for rel in TEXT_OUTPUTS:
        if (one / rel).is_dir():
            compared = filecmp.dircmp(one / rel, other / rel, ignore=['.snakemake_timestamp', MARKER])
            assert not (compared.diff_files or compared.left_only or compared.right_only), rel
            assert all(filecmp.cmp(one / rel / n, other / rel / n, shallow=False)
                       for n in compared.common_files), rel
        else:
            assert filecmp.cmp(one / rel, other / rel, shallow=False), rel


def test_snakemake_and_dvc_regenerate_the_committed_demo_tables(tmp_path, workflow):
    """From the committed demo run's result files, Snakemake's table rules and `dvc repro` write the
    same bytes as each other and as that run (results/reference/demo)."""
    repo, env = make_repo(tmp_path, [REFERENCE / 'runs', REFERENCE / 'measure'])
    done = subprocess.run([str(workflow.SNAKEMAKE), '--workflow-profile', 'none', '--cores', '1',
                           *(f'results/demo/{o}' for o in [*TEXT_OUTPUTS, 'figures/miou_vs_gflops.png']),
                           '--allowed-rules', *TABLE_RULES], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = repo / 'results' / 'demo'
    by_snakemake = tmp_path / 'snakemake'
    shutil.copytree(results, by_snakemake)
    same_text_outputs(by_snakemake, REFERENCE)

    for rel in TEXT_OUTPUTS:
        (shutil.rmtree if (results / rel).is_dir() else os.remove)(results / rel)
    assert ran(dvc(repo, env, 'repro')) == ['collect', 'tables', 'diff', 'figure']
    same_text_outputs(results, by_snakemake)
