"""Snakemake + snakemake-executor-plugin-slurm + profiles/slurm on a real single-node SLURM cluster
(scripts/slurm-cluster.sh). Skipped, with the reason, where the cluster cannot be started: not root,
or SLURM missing and no apt-get to install it."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / 'scripts' / 'slurm-cluster.sh'
VENV_BIN = Path(os.environ.get('VIRTUAL_ENV') or REPO / '.venv') / 'bin'
WORKFLOW_FILES = ('Snakefile', 'workflow', 'params.yaml', 'profiles', 'configs')
# status checks every few seconds instead of the plugin's 40 s; keep the sbatch logs to inspect them
FAST = ['--slurm-init-seconds-before-status-checks', '2', '--slurm-keep-successful-logs']

pytestmark = pytest.mark.slow

STANDIN = '''
rule all:
    input: "cpu.txt", "gpu.txt"

rule cpu_job:
    output: "cpu.txt"
    resources: mem_mb=200, runtime=5
    shell: "(hostname; env | grep -E '^(SLURM|CUDA)' | sort) > {output}"

rule gpu_job:
    output: "gpu.txt"
    resources: gpu=1, slurm_partition="gpu", mem_mb=200, runtime=5
    shell: "(hostname; env | grep -E '^(SLURM|CUDA)' | sort) > {output}"
'''


def cluster_script(action):
    return subprocess.run(['bash', str(SCRIPT), action], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope='module')
def slurm():
    """A running cluster; stopped afterwards unless it was already running."""
    if os.geteuid() != 0:
        pytest.skip('the local SLURM cluster needs root (it starts munged, slurmctld and slurmd)')
    if shutil.which('slurmctld') is None:
        if shutil.which('apt-get') is None:
            pytest.skip('SLURM is not installed and there is no apt-get to install it')
        done = cluster_script('install')
        assert done.returncode == 0, f'installing SLURM failed:\n{done.stdout}{done.stderr}'
    already = 'slurmctld: running' in cluster_script('status').stdout
    started = cluster_script('start')
    assert started.returncode == 0, f'starting SLURM failed:\n{started.stdout}{started.stderr}'
    yield
    if not already:
        cluster_script('stop')


def snakemake(args, cwd, timeout):
    """The venv's snakemake in ``cwd``, with the venv on PATH as in an activated shell."""
    env = dict(os.environ, PATH=f'{VENV_BIN}{os.pathsep}{os.environ["PATH"]}')
    done = subprocess.run([str(VENV_BIN / 'snakemake'), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f'snakemake failed:\n{done.stdout[-6000:]}{done.stderr[-6000:]}'
    return done


def sbatch_jobs(workdir):
    """{SLURM job id: rule} of the jobs the plugin submitted from ``workdir`` (its sbatch --output
    files: .snakemake/slurm_logs/rule_<rule>/[<wildcards>/]<jobid>.log)."""
    logs = Path(workdir, '.snakemake', 'slurm_logs')
    return {path.stem: path.relative_to(logs).parts[0].removeprefix('rule_')
            for path in logs.rglob('*.log')}


def squeue_partitions(job_ids):
    """{job id: partition} as slurmctld knows the jobs (MinJobAge keeps finished ones listed)."""
    out = subprocess.run(['squeue', '--states=all', '-h', '-o', '%i %P', '-j', ','.join(job_ids)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def read_env(path):
    return dict(line.split('=', 1) for line in Path(path).read_text().splitlines() if '=' in line)


def test_profile_submits_cpu_and_gpu_rules_through_sbatch(slurm, tmp_path):
    (tmp_path / 'Snakefile').write_text(STANDIN)
    snakemake(['--workflow-profile', str(REPO / 'profiles' / 'slurm'), *FAST], tmp_path, timeout=300)

    cpu, gpu = read_env(tmp_path / 'cpu.txt'), read_env(tmp_path / 'gpu.txt')
    jobs = sbatch_jobs(tmp_path)
    assert sorted(jobs.values()) == ['cpu_job', 'gpu_job']
    assert {cpu['SLURM_JOB_ID'], gpu['SLURM_JOB_ID']} == set(jobs)
    assert cpu['SLURM_JOB_PARTITION'] == 'cpu' and 'CUDA_VISIBLE_DEVICES' not in cpu
    assert gpu['SLURM_JOB_PARTITION'] == 'gpu' and gpu['CUDA_VISIBLE_DEVICES'] == '0'
    partitions = squeue_partitions(list(jobs))
    assert {jobs[j]: p for j, p in partitions.items()} == {'cpu_job': 'cpu', 'gpu_job': 'gpu'}


def test_demo_dag_runs_through_slurm(slurm, tmp_path):
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name)
    snakemake(['--workflow-profile', 'profiles/slurm', *FAST], tmp_path, timeout=1800)

    for target in ('results/metrics.json', 'results/diff.md', 'results/diff.json',
                   'results/tables/ade20k.md', 'results/figures/miou_vs_gflops.png'):
        assert (tmp_path / target).is_file(), target
    jobs = sbatch_jobs(tmp_path)
    per_rule = {rule: sum(r == rule for r in jobs.values()) for rule in set(jobs.values())}
    # localrules (synth, download, tables) ran on the submit host; everything else went through sbatch
    assert per_rule == {'prepare': 3, 'train': 9, 'evaluate': 9, 'flops': 9, 'throughput': 9}
    partitions = squeue_partitions(list(jobs))
    assert set(partitions) == set(jobs)
    for job, rule in jobs.items():
        assert partitions[job] == ('gpu' if rule in ('train', 'evaluate', 'throughput') else 'cpu')
