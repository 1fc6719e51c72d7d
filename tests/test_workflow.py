"""The Snakemake workflow: params.yaml -> rule arguments (cgrseg.workflow) and the DAG (dry runs)."""
import copy
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from cgrseg import workflow as wf

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ('Snakefile', 'workflow', 'params.yaml', 'profiles', 'configs')
PARAMS = yaml.safe_load((REPO / 'params.yaml').read_text())


def params(**changes):
    config = copy.deepcopy(PARAMS)
    config.update(changes)
    return config


# ---- cgrseg.workflow: the decisions behind the rule arguments -------------------------------

def test_demo_trains_short_on_cpu_without_pretrained_weights():
    args = wf.train_args(params(profile='demo'), 't').split()
    demo = PARAMS['profiles']['demo']
    assert args[args.index('--gpus') + 1] == '0'
    assert args[args.index('--iters') + 1] == str(wf.train_iters(params(profile='demo'), 't'))
    assert args[args.index('--crop') + 1] == str(demo['crop'])
    assert args[args.index('--samples-per-gpu') + 1] == str(demo['samples_per_gpu'])
    assert '--no-pretrained' in args


def test_paper_keeps_the_configs_schedule_and_pretrained_backbone():
    config = params(profile='paper', sources='real')
    args = wf.train_args(config, 't').split()
    assert '--iters' not in args and '--crop' not in args
    # batch: the authors' 4 GPUs x 4 images as 1 GPU x 16
    assert args[args.index('--samples-per-gpu') + 1] == str(PARAMS['profiles']['paper']['samples_per_gpu']) == '16'
    assert '--no-pretrained' not in args
    assert wf.pretrained_inputs(config, 'b') == ['checkpoints/efficientformerv2_s2.pth']
    assert wf.pretrained_inputs(params(profile='demo'), 'b') == []


def test_demo_flag_marks_synthetic_data_or_a_shortened_schedule():
    assert wf.is_demo(params(profile='demo', sources='real'))
    assert wf.is_demo(params(profile='paper', sources='synthetic'))
    assert not wf.is_demo(params(profile='paper', sources='real'))
    assert wf.evaluate_args(params(profile='paper', sources='real'), 'ade20k') == ''


def test_only_pascal_context_is_evaluated_multi_scale_flip():
    config = params(profile='paper', sources='real')
    assert wf.evaluate_args(config, 'pascal_context') == '--aug-test'
    assert '--aug-test' not in wf.evaluate_args(config, 'coco_stuff10k')


def test_download_source_follows_params():
    assert wf.download_args(params(sources='synthetic'), 'ade20k') == \
        '--sources results/demo/data/synthetic/ade20k/sources.yaml'
    assert wf.download_inputs(params(sources='synthetic'), 'ade20k') == \
        ['results/demo/data/synthetic/ade20k/sources.yaml']
    assert wf.download_args(params(sources='real', archive_dir=None), 'ade20k') == ''
    assert wf.download_inputs(params(sources='real'), 'ade20k') == []
    assert wf.download_args(params(sources='real', archive_dir='/mnt/my archives'), 'ade20k') == \
        "--from-dir '/mnt/my archives'"


def test_synthetic_and_real_archives_never_share_a_folder():
    assert wf.raw_root(params(sources='real')) == 'data/raw'
    assert wf.raw_root(params(sources='synthetic')) != 'data/raw'


def test_measure_shapes():
    assert wf.flops_shape(params(profile='demo'), 'pascal_context') == '480 480'
    assert wf.throughput_args(params(profile='paper'), 'pascal_context').endswith('--shape 480 480')
    crop = PARAMS['profiles']['demo']['crop']
    assert wf.throughput_args(params(profile='demo'), 'ade20k').endswith(f'--shape {crop} {crop}')


def test_rule_resources_fall_back_to_the_profiles_default():
    config = params(profile='paper', resources={'paper': {
        'default': {'threads': 2, 'mem_mb': 1000, 'runtime': 10},
        'train': {'threads': 8, 'runtime': 600}}})
    assert wf.threads(config, 'train') == 8
    assert wf.resources(config, 'train') == {'mem_mb': 1000, 'runtime': 600}
    assert wf.threads(config, 'flops') == 2
    assert wf.resources(config, 'flops') == {'mem_mb': 1000, 'runtime': 10}
    assert wf.gpus(params(profile='demo')) == 1   # the scheduler still places training on a GPU node


@pytest.mark.parametrize('changes, message', [
    ({'profile': 'fast'}, "profile 'fast'"),
    ({'sources': 'web'}, "sources must be 'synthetic' or 'real'"),
    ({'datasets': ['ade20k', 'cityscapes']}, "['cityscapes']"),
    ({'variants': ['t', 'xl']}, "['xl']"),
])
def test_check_names_the_bad_key(changes, message):
    with pytest.raises(wf.ConfigError, match=re.escape(message)):
        wf.check(params(**changes))


def test_rules_find_cgrseg_next_to_the_interpreter(monkeypatch):
    monkeypatch.setenv('PATH', '/usr/bin')
    wf.put_interpreter_on_path()
    assert os.environ['PATH'].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    wf.put_interpreter_on_path()
    assert os.environ['PATH'].count(str(Path(sys.executable).parent)) == 1


# ---- the DAG, by dry runs of a copy of the workflow ----------------------------------------

def workflow_copy(root):
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / name)
    return root


def dry_run(root, *config):
    snakemake = Path(sys.executable).parent / 'snakemake'
    args = [str(snakemake), '-n', '--workflow-profile', 'none', '--cores', '2', '-p']
    if config:
        args += ['--config', *config]
    done = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def job_counts(output):
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = output.split('Job stats:', 1)[1].split('\n\n', 1)[0]
    rows = (line.split() for line in table.splitlines()[3:])
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[0] != 'total'}


def job_blocks(output):
    """The dry run's job descriptions (rules and localrules), each starting with the rule name."""
    return re.split(r'\n(?:local)?rule ', output)[1:]


def shell_commands(output):
    return [line.split('Shell command: ', 1)[1] for line in output.splitlines()
            if line.startswith('Shell command: ') and line != 'Shell command: None']


@pytest.fixture(scope='module')
def demo_dag(tmp_path_factory):
    return dry_run(workflow_copy(tmp_path_factory.mktemp('demo')))


@pytest.fixture(scope='module')
def paper_dag(tmp_path_factory):
    return dry_run(workflow_copy(tmp_path_factory.mktemp('paper')), 'profile=paper', 'sources=real')


def test_paper_profile_runs_9_trainings_and_9_evaluations(paper_dag):
    counts = job_counts(paper_dag)
    assert counts['train'] == 9 and counts['evaluate'] == 9
    assert counts['pretrained'] == 3 and counts['download'] == 3 and counts['prepare'] == 3
    assert 'synth' not in counts
    assert counts['flops'] == 9 and counts['throughput'] == 9


def test_demo_profile_runs_the_whole_dag_from_synthetic_archives(demo_dag):
    counts = job_counts(demo_dag)
    assert counts == {'synth': 3, 'download': 3, 'prepare': 3, 'train': 9, 'evaluate': 9,
                      'flops': 9, 'throughput': 9, 'collect': 1, 'tables': 1, 'diff': 1,
                      'figure': 1, 'all': 1}
    evaluations = [c for c in shell_commands(demo_dag) if c.startswith('cgrseg evaluate')]
    assert all('--demo' in c for c in evaluations)
    assert sorted('--aug-test' in c for c in evaluations) == [False] * 6 + [True] * 3
    assert all('--aug-test' in c for c in evaluations if 'pascal_context' in c)


def test_every_job_is_one_logged_cgrseg_call(demo_dag, paper_dag):
    for dag in (demo_dag, paper_dag):
        commands = shell_commands(dag)
        assert commands
        for command in commands:
            assert re.fullmatch(r'cgrseg [a-z]+ .* > results/(demo|paper)/logs/\S+\.log 2>&1', command), command
        blocks = [b for b in job_blocks(dag) if 'Shell command: None' not in b]
        assert len(blocks) == len(commands)
        assert all(re.search(r'benchmark: results/(demo|paper)/benchmarks/', b) for b in blocks)


def test_gpu_rules_ask_slurm_for_a_gpu_partition(paper_dag):
    partition = PARAMS['slurm_gpu_partition']
    for block in job_blocks(paper_dag):
        rule = block.split(':', 1)[0]
        resources = re.search(r'resources: (.*)', block)
        gpu = rule in ('train', 'evaluate', 'throughput')
        assert ('gpu=1' in resources.group(1)) == gpu, block
        assert (f'slurm_partition={partition}' in resources.group(1)) == gpu, block
        if rule in ('train', 'evaluate', 'throughput', 'prepare', 'flops'):
            assert 'mem_mb=' in resources.group(1) and 'runtime=' in resources.group(1)
