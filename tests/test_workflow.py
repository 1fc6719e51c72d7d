"""The Snakemake workflow: params.yaml -> rule arguments (cgrseg.workflow) and the DAG (dry runs)."""
import copy
import json
import os
import re
import shlex
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


def test_the_test_protocols_come_from_the_dataset_configs_not_from_params():
    config = params(profile='paper', sources='real')
    assert 'aug_test' not in PARAMS
    assert {wf.evaluate_args(config, d) for d in ('ade20k', 'coco_stuff10k', 'pascal_context')} == {''}


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


def with_profile(**changes):
    config = params()
    config['profiles'] = copy.deepcopy(PARAMS['profiles'])
    config['profiles']['demo'].update(changes)
    return config


@pytest.mark.parametrize('config, message', [
    (params(profile='fast'), "profile: 'fast' is not one of the profiles (demo, paper)"),
    (params(sources='web'), "sources: 'web' is not one of ['synthetic', 'real']"),
    (params(datasets=['ade20k', 'cityscapes']), "datasets.1: 'cityscapes' is not one of"),
    (params(variants=['t', 'xl']), "variants.1: 'xl' is not one of ['t', 'b', 'l']"),
    (with_profile(iters=0), 'profiles.demo.iters: 0 is less than the minimum of 1'),
    (with_profile(iters=-5), 'profiles.demo.iters: -5 is less than the minimum of 1'),
    (with_profile(iters='abc'), "profiles.demo.iters: 'abc' is not of type 'integer', 'null'"),
    (with_profile(crop=8), 'profiles.demo.crop: 8 is less than the minimum of 32'),
    (with_profile(crop=48), 'profiles.demo.crop: 48 is not a multiple of 32'),
    (params(measure_shape={**PARAMS['measure_shape'], 'pascal_context': [480, 500]}),
     'measure_shape.pascal_context.1: 500 is not a multiple of 32'),
    (with_profile(samples_per_gpu=0), 'profiles.demo.samples_per_gpu: 0 is less than the minimum'),
    (with_profile(gpus=-1), 'profiles.demo.gpus: -1 is less than the minimum of 0'),
    (params(seeds='abc'), "seeds: 'abc' is not of type 'array'"),
    (params(seeds=['abc']), "seeds.0: 'abc' is not of type 'integer'"),
    (params(seed=0), 'seed: replaced by "seeds"'),
    (params(synth_images=0), 'synth_images: 0 is less than the minimum of 1'),
    (params(synth_images=-3), 'synth_images: -3 is less than the minimum of 1'),
    (params(tables={'formats': ['pdf']}),
     "tables.formats.0: 'pdf' is not one of ['md', 'csv', 'tex']"),
    (params(measure_shape={**PARAMS['measure_shape'], 'ade20k': 512}),
     "measure_shape.ade20k: 512 is not of type 'array'"),
    (params(measure_shape={'ade20k': [512, 512]}), 'measure_shape.coco_stuff10k: missing'),
    (params(judged_complexity={'dataset': 'ade20k', 'shape': [512, 512], 'gflops': 'fvcore'}),
     "judged_complexity.gflops: 'fvcore' is not one of ['mmcv', 'conv_linear_macs']"),
    (params(resources={'demo': {'train': {'threads': 'x'}}}),
     "resources.demo.train.threads: 'x' is not of type 'integer'"),
])
def test_check_names_the_bad_key(config, message):
    with pytest.raises(wf.ConfigError) as err:
        wf.check(config)
    lines = str(err.value).splitlines()
    assert any(line.startswith(f'params.yaml: {message}') for line in lines), lines


def test_every_problem_is_reported_at_once():
    config = with_profile(iters=0, crop=8)
    config['seeds'] = 'abc'
    with pytest.raises(wf.ConfigError) as err:
        wf.check(config)
    assert [line.split(':')[1].strip() for line in str(err.value).splitlines()] == [
        'profiles.demo.crop', 'profiles.demo.iters', 'seeds']


def test_config_strings_are_read_as_numbers_where_numbers_belong():
    # what Snakemake's --config profiles='{demo: {iters: 100}}' seeds='[0, 1]' gives
    config = with_profile(iters='100', crop='null')
    config.update(seeds=['0', '1'], tables={'formats': ['md'], 'strict': 'true'})
    fixed = wf.params_schema.coerce(config)
    assert fixed['seeds'] == [0, 1] and fixed['tables']['strict'] is True
    assert fixed['profiles']['demo']['iters'] == 100 and fixed['profiles']['demo']['crop'] is None
    assert fixed['tables']['formats'] == ['md'] and fixed['data_root'] == 'data'
    wf.check(fixed)


def test_the_tables_get_the_effective_values():
    config = params(tables={'formats': ['csv'], 'strict': True})
    assert wf.tables_args(config) == '--formats csv'
    assert wf.diff_args(config) == '--strict' and wf.diff_args(params()) == ''
    args = wf.collect_args(params(seeds=[0, 3]))
    assert args.startswith('--params-json ')
    doc = yaml.safe_load(shlex.split(args)[1])
    assert doc['seeds'] == [0, 3] and doc['measure_shape'] == PARAMS['measure_shape']
    assert set(doc) == {'datasets', 'variants', 'seeds', 'measure_shape', 'judged_complexity'}


def test_the_judged_dataset_at_the_judged_shape_is_measured_once():
    outputs = wf.dataset_flops_outputs(params())
    assert 'results/measure/judged/cgrseg-t.flops.json' in outputs
    assert not any(o.startswith('results/measure/ade20k/') for o in outputs)
    assert 'results/measure/pascal_context/cgrseg-l.flops.json' in outputs
    other = params(measure_shape={**PARAMS['measure_shape'], 'ade20k': [640, 640]})
    assert 'results/measure/ade20k/cgrseg-t.flops.json' in wf.dataset_flops_outputs(other)


def test_hypotheses_are_measured_on_the_judged_model():
    from cgrseg.tables.hypotheses import load_hypotheses
    hyps = load_hypotheses(REPO / 'configs/paper/hypotheses.yaml')
    config = params()
    assert wf.hypothesis_config(config, hyps, 'b_next_repeat_5') == \
        'configs/cgrseg/cgrseg-b_ade20k_160k.py'
    assert wf.hypothesis_args(config, hyps, 'b_next_repeat_5') == \
        '--shape 512 512 --cfg-options model.decode_head.next_repeat=5'
    assert wf.judged_config(config, 't') == 'configs/cgrseg/cgrseg-t_ade20k_160k.py'


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


def snakemake_n(root, *config):
    snakemake = Path(sys.executable).parent / 'snakemake'
    args = [str(snakemake), '-n', '--workflow-profile', 'none', '--cores', '2', '-p']
    if config:
        args += ['--config', *config]
    return subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=300)


def dry_run(root, *config):
    done = snakemake_n(root, *config)
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
    assert counts['flops'] == 6 and counts['throughput'] == 9  # ADE20K's own = the judged count
    assert counts['flops_judged'] == 3 and counts['hypothesis'] == 1


def test_demo_profile_runs_the_whole_dag_from_synthetic_archives(demo_dag):
    counts = job_counts(demo_dag)
    assert counts == {'synth': 3, 'download': 3, 'prepare': 3, 'train': 9, 'evaluate': 9,
                      'flops': 6, 'flops_judged': 3, 'hypothesis': 1, 'throughput': 9,
                      'collect': 1, 'tables': 1, 'diff': 1, 'figure': 1, 'all': 1}
    trainings = [c for c in shell_commands(demo_dag) if c.startswith('cgrseg train')]
    assert all(re.search(r'--work-dir work_dirs/\w+/cgrseg-[tbl]/seed0 .*--seed 0 ', c)
               for c in trainings), trainings
    hypothesis = next(c for c in shell_commands(demo_dag) if 'hypotheses/' in c)
    assert hypothesis.startswith('cgrseg flops configs/cgrseg/cgrseg-b_ade20k_160k.py --shape 512 '
                                 '512 --cfg-options model.decode_head.next_repeat=5 --out ')
    evaluations = [c for c in shell_commands(demo_dag) if c.startswith('cgrseg evaluate')]
    assert all('--demo' in c for c in evaluations)
    throughputs = [c for c in shell_commands(demo_dag) if c.startswith('cgrseg throughput')]
    assert all('--data-root results/demo/data/prepared --manifest results/demo/data/prepared/' in c and '--deploy' in c for c in throughputs)


def test_every_job_is_one_logged_cgrseg_call(demo_dag, paper_dag):
    for dag in (demo_dag, paper_dag):
        commands = shell_commands(dag)
        assert commands
        for command in commands:
            # train: `exec cgrseg ...`, so that a SLURM preemption signal reaches the trainer (docs/slurm.md)
            assert re.fullmatch(r'(exec )?cgrseg [a-z]+ .* > results/(demo|paper)/logs/\S+\.log 2>&1', command), command
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


def test_bad_params_stop_the_dag_with_one_line_per_key(tmp_path):
    done = snakemake_n(workflow_copy(tmp_path), 'profiles={demo: {iters: abc, crop: 8}}',
                       'seeds=abc', 'tables={formats: [pdf]}', 'measure_shape={ade20k: 512}')
    assert done.returncode == 2
    assert 'Traceback' not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith('params.yaml: ')]
    assert [line.split(':')[1].strip() for line in errors] == [
        'measure_shape.ade20k', 'profiles.demo.crop', 'profiles.demo.iters', 'seeds',
        'tables.formats.0']


def test_config_overrides_reach_every_stage(tmp_path):
    out = dry_run(workflow_copy(tmp_path), 'seeds=[0, 2]', 'tables={formats: [csv], strict: true}',
                  'measure_shape={pascal_context: [512, 512]}', 'profiles={demo: {iters: 7}}')
    counts = job_counts(out)
    assert counts['train'] == counts['evaluate'] == 18
    commands = shell_commands(out)
    assert sum('--seed 2 ' in c and '/seed2 ' in c for c in commands if 'cgrseg train' in c) == 9
    assert all('--iters 7 ' in c for c in commands if c.startswith('cgrseg train'))
    diff = next(c for c in commands if c.startswith('cgrseg diff'))
    assert ' --strict ' in diff and '--params' not in diff
    tables = next(c for c in commands if c.startswith('cgrseg tables'))
    assert ' --formats csv ' in tables
    collect = next(c for c in commands if c.startswith('cgrseg collect'))
    given = json.loads(shlex.split(collect)[3])
    assert given['seeds'] == [0, 2] and given['measure_shape']['pascal_context'] == [512, 512]
    flops = [c for c in commands if 'measure/pascal_context/' in c and 'flops' in c]
    assert flops and all('--shape 512 512' in c for c in flops)
