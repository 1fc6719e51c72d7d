"""Snakemake + snakemake-executor-plugin-slurm + profiles/slurm on a real single-node SLURM cluster
(scripts/slurm-cluster.sh). Skipped, with the reason, where the cluster cannot be started: not root,
or SLURM missing and no apt-get to install it."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / 'scripts' / 'slurm-cluster.sh'
VENV_BIN = Path(os.environ.get('VIRTUAL_ENV') or REPO / '.venv') / 'bin'
# status checks every few seconds instead of the plugin's 40 s; keep the sbatch logs to inspect them
FAST = ['--slurm-init-seconds-before-status-checks', '2', '--slurm-keep-successful-logs']

# the cluster's start (900 s at most) and a SLURM run of the demo DAG are bounded by their own timeouts below
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

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


def test_demo_dag_runs_through_slurm(slurm, workflow, tmp_path):
    workflow.copy(tmp_path)
    snakemake(['--workflow-profile', 'profiles/slurm', *FAST], tmp_path, timeout=1800)

    for target in ('results/demo/metrics.json', 'results/demo/diff.md', 'results/demo/diff.json',
                   'results/demo/tables/ade20k.md', 'results/demo/figures/miou_vs_gflops.png'):
        assert (tmp_path / target).is_file(), target
    jobs = sbatch_jobs(tmp_path)
    per_rule = {rule: sum(r == rule for r in jobs.values()) for rule in set(jobs.values())}
    # localrules (synth, download, effective params, tables) ran on the submit host; everything else
    # went through sbatch
    # (ADE20K's own flops at 512x512 are the judged ones: flops_judged; one hypothesis)
    assert per_rule == {'prepare': 3, 'train': 9, 'evaluate': 9, 'flops': 6, 'flops_judged': 3,
                        'hypothesis': 1, 'throughput': 9}
    partitions = squeue_partitions(list(jobs))
    assert set(partitions) == set(jobs)
    for job, rule in jobs.items():
        assert partitions[job] == ('gpu' if rule in ('train', 'evaluate', 'throughput') else 'cpu')


PREEMPTIBLE = '''
rule train:
    output: "work/latest.pth"
    threads: 2
    resources:
        mem_mb=4000,
        # the first attempt runs into its time limit; the resubmitted one has time to finish
        runtime=lambda wc, attempt: 2 if attempt == 1 else 30,
        try_=lambda wc, attempt: attempt,
    shell: "exec cgrseg {ARGS} > logs/attempt{resources.try_}.log 2>&1"
'''
# SLURM may send the --signal up to a minute early; 45 s before a 2-minute limit leaves the first
# attempt time to start training (the profile's 300 s is for real runtimes)
SIGNAL_LEAD = "train:slurm_extra='--signal=TERM@45'"


def preempt_args(work, prepared, iters):
    # batch 8 of the 8 synthetic images: every iteration ends an epoch (mmcv pauses 2 s there), so an
    # iteration takes at least 2 s even on a fast machine
    return ['train', REPO / 'configs/cgrseg/cgrseg-t_ade20k_160k.py', '--work-dir', work, '--data-root', prepared,
            '--iters', iters, '--crop', 64, '--samples-per-gpu', 8, '--gpus', 0, '--no-pretrained',
            '--workers', 0, '--no-validate', '--checkpoint-interval', 1]


def test_training_stopped_at_its_time_limit_resumes_to_the_same_weights(slurm, tmp_path):
    import json
    import math

    import torch
    import yaml

    from cgrseg import cli

    def cgrseg(*argv):
        return cli.main([str(a) for a in argv])

    profile = yaml.safe_load((REPO / 'profiles/slurm/config.yaml').read_text())
    assert '--signal=TERM@300' in profile['set-resources']['train']['slurm_extra'] and profile['retries'] >= 1

    data = tmp_path / 'data'
    assert cgrseg('synth', 'ade20k', '--out', data / 'synth') == 0
    assert cgrseg('download', 'ade20k', '--dest', data / 'raw', '--sources', data / 'synth/sources.yaml') == 0
    assert cgrseg('prepare', 'ade20k', '--raw', data / 'raw', '--out', data / 'prepared') == 0
    prepared = data / 'prepared'
    # enough iterations to outlast the signal (about 75 s after the start) twice over
    calibrate = tmp_path / 'calibrate'
    assert cgrseg(*preempt_args(calibrate, prepared, 2)) == 0
    records = [json.loads(line) for line in next(calibrate.glob('*.log.json')).read_text().splitlines()]
    # the slowest: every iteration here ends an epoch, and mmcv's 2 s pause lands in the next one's
    # data time, so the fastest record (the first) would size the run ~7x too long
    per_iter = max(r['time'] for r in records if r.get('mode') == 'train')
    iters = min(400, max(8, math.ceil(150 / per_iter)))

    baseline = tmp_path / 'baseline'
    assert cgrseg(*preempt_args(baseline, prepared, iters)) == 0

    flow = tmp_path / 'flow'
    (flow / 'logs').mkdir(parents=True)
    argv = ' '.join(str(a) for a in preempt_args('work', prepared, iters))
    (flow / 'Snakefile').write_text(PREEMPTIBLE.replace('{ARGS}', argv))
    snakemake(['--workflow-profile', str(REPO / 'profiles' / 'slurm'), *FAST, '--set-resources', SIGNAL_LEAD],
              flow, timeout=3600)

    first = (flow / 'logs/attempt1.log').read_text()
    stopped = [line for line in first.splitlines() if 'stopped by SIGTERM after iteration' in line]
    assert len(stopped) == 1, first[-3000:]
    done = int(stopped[0].split('after iteration ')[1].split(',')[0])
    assert 1 <= done < iters
    assert ': error: ' not in (flow / 'logs/attempt2.log').read_text()
    assert any(f'continuing after iteration {done}' in log.read_text() for log in (flow / 'work').glob('*.log'))
    assert sorted(sbatch_jobs(flow).values()) == ['train', 'train']     # submitted twice by Snakemake
    mine = torch.load(flow / f'work/iter_{iters}.pth', map_location='cpu', weights_only=False)
    theirs = torch.load(baseline / f'iter_{iters}.pth', map_location='cpu', weights_only=False)
    for key, tensor in theirs['state_dict'].items():
        assert torch.equal(tensor, mine['state_dict'][key]), key
