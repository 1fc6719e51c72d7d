"""The README's first command on a fresh clone: the whole demo DAG runs, and every file it writes
lies under results/demo/ (gitignored), never on top of the committed snapshot results/reference/."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Workflow

REPO = Path(__file__).resolve().parents[2]
# 3 datasets x 3 variants x 1 seed; ADE20K's own flops at 512x512 are the judged ones (flops_judged),
# and configs/paper/hypotheses.yaml holds one hypothesis; the run records its effective params;
# the doctor gates downloads and trainings (curves, zoo and pages belong to the `report` target)
DEMO_JOBS = {'doctor': 1, 'synth': 3, 'download': 3, 'prepare': 3, 'train': 9, 'evaluate': 9, 'flops': 6,
             'flops_judged': 3, 'hypothesis': 1, 'throughput': 9, 'effective_params': 1, 'collect': 1,
             'tables': 1, 'diff': 1, 'figure': 1, 'all': 1}


def tracked_files():
    """What a clone of this checkout holds: tracked files plus new ones git would commit."""
    if not (REPO / '.git').exists():
        pytest.skip('not a git checkout')
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [name for name in listed.split('\0')
            if name and (REPO / name).is_file() and not (REPO / name).is_symlink()]


@pytest.fixture(scope='module')
def clone(tmp_path_factory):
    root = tmp_path_factory.mktemp('clone')
    for name in tracked_files():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    return root


def dry_run(root, *config):
    """`snakemake -n` as the README runs it: the workflow's default profile, no options."""
    args = [str(Path(sys.executable).parent / 'snakemake'), '-n']
    if config:
        args += ['--config', *config]
    done = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def written_paths(output):
    """Every output, log and benchmark file of the dry run's jobs."""
    paths = []
    for line in output.splitlines():
        found = re.match(r'\s+(output|log|benchmark): (.*)', line)
        if found:
            paths += found.group(2).split(', ')
    return paths


def test_first_command_on_a_fresh_clone_runs_every_job(clone):
    assert Workflow.job_counts(dry_run(clone)) == DEMO_JOBS


def test_demo_writes_only_under_results_demo_which_git_ignores(clone):
    paths = written_paths(dry_run(clone))
    assert len(paths) > 100
    assert [p for p in paths if not p.startswith('results/demo/')] == []
    ignored = subprocess.run(['git', 'check-ignore', '--no-index', 'results/demo/metrics.json',
                              'results/demo/work_dirs/ade20k/cgrseg-t/latest.pth'],
                             cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == ['results/demo/metrics.json',
                                      'results/demo/work_dirs/ade20k/cgrseg-t/latest.pth']


def test_paper_run_shares_only_real_data_and_imagenet_weights(clone):
    paths = written_paths(dry_run(clone, 'preset=paper', 'sources=real'))
    outside = {p.split('/')[0] for p in paths if not p.startswith('results/paper/')}
    assert outside == {'data', 'checkpoints'}
    checkpoints = [p for p in paths if p.endswith('latest.pth')]
    assert len(checkpoints) == 9
    assert all(p.startswith('results/paper/work_dirs/') for p in checkpoints)


def test_committed_reference_snapshot_is_outside_every_preset(clone):
    assert (clone / 'results/reference/demo/metrics.json').is_file()
    assert not (clone / 'results/demo').exists()
