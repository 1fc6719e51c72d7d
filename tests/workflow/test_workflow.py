"""The Snakemake workflow: what the rules decide beyond a params key (cgrseg.workflow), and the DAG
they make (dry runs of a copy of the workflow): every job one logged `cgrseg` call naming its flags."""
import copy
import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from cgrseg import params as P
from cgrseg import workflow as wf

REPO = Path(__file__).resolve().parents[2]
PARAMS = P.effective(yaml.safe_load((REPO / 'params.yaml').read_text()))


def params(**changes):
    config = copy.deepcopy(PARAMS)
    config.update(changes)
    return config


# ---- cgrseg.workflow: the decisions behind the rules ------------------------------------------

def test_the_paper_preset_trains_from_imagenet_weights_and_the_demo_does_not():
    assert wf.pretrained_inputs(params(preset='paper'), 'b') == ['checkpoints/efficientformerv2_s2.pth']
    assert wf.pretrained_inputs(params(preset='demo'), 'b') == []


def test_demo_flag_marks_synthetic_data_or_a_shortened_schedule():
    assert wf.is_demo(params(preset='demo', sources='real'))
    assert wf.is_demo(params(preset='paper', sources='synthetic'))
    assert not wf.is_demo(params(preset='paper', sources='real'))


def test_download_source_follows_params():
    assert wf.download_sources(params(sources='synthetic'), 'ade20k') == \
        'results/demo/data/synthetic/ade20k/sources.yaml'
    assert wf.download_inputs(params(sources='synthetic'), 'ade20k') == \
        ['results/demo/data/synthetic/ade20k/sources.yaml']
    assert wf.download_sources(params(sources='real'), 'ade20k') == 'configs/data/sources.yaml'
    assert wf.download_inputs(params(sources='real'), 'ade20k') == []


def test_synthetic_and_real_archives_never_share_a_folder():
    assert wf.raw_root(params(sources='real')) == 'data/raw'
    assert wf.raw_root(params(sources='synthetic')) != 'data/raw'


def test_work_dirs_follow_the_preset_unless_params_name_a_work_root():
    assert wf.work_root(params(preset='paper')) == 'results/paper/work_dirs'
    assert wf.work_root(params(work_root='/scratch/me')) == '/scratch/me'


def test_throughput_is_measured_at_the_demo_crop_or_the_paper_shape():
    assert wf.throughput_shape(params(preset='paper'), 'pascal_context') == [480, 480]
    crop = PARAMS['presets']['demo']['crop']
    assert wf.throughput_shape(params(preset='demo'), 'ade20k') == [crop, crop]


def test_rule_resources_fall_back_to_the_presets_default():
    config = params(preset='paper', resources={'paper': {
        'default': {'threads': 2, 'mem_mb': 1000, 'runtime': 10},
        'train': {'threads': 8, 'runtime': 600}}})
    assert wf.threads(config, 'train') == 8
    assert wf.resources(config, 'train') == {'mem_mb': 1000, 'runtime': 600}
    assert wf.threads(config, 'flops') == 2
    assert wf.resources(config, 'flops') == {'mem_mb': 1000, 'runtime': 10}
    assert wf.gpus(params(preset='demo')) == 1   # the scheduler still places training on a GPU node


def test_two_cores_run_the_data_first_then_the_longest_trainings():
    config = params()
    data = [wf.priority(config, rule) for rule in ('synth', 'download', 'prepare')]
    trains = {v: wf.priority(config, 'train', v) for v in ('t', 'b', 'l')}
    assert min(data) > max(trains.values())
    assert trains['t'] > trains['b'] > wf.priority(config, 'evaluate')
    assert wf.priority(params(preset='paper'), 'train', 't') > 0


def test_the_judged_dataset_at_the_judged_shape_is_measured_once():
    outputs = wf.result_files(params(), {})
    assert 'results/demo/measure/judged/cgrseg-t.flops.json' in outputs
    assert not any(o.startswith('results/demo/measure/ade20k/') and 'flops' in o for o in outputs)
    assert 'results/demo/measure/pascal_context/cgrseg-l.flops.json' in outputs
    other = params(measure_shape={**PARAMS['measure_shape'], 'ade20k': [640, 640]})
    assert 'results/demo/measure/ade20k/cgrseg-t.flops.json' in wf.result_files(other, {})


def test_the_table_stages_come_from_dvc_yaml():
    produced = wf.result_files(params(preset='paper'), {'h': {}})
    stages = wf.dvc_stages(params(preset='paper'), produced, REPO / 'dvc.yaml')
    dvc = yaml.safe_load((REPO / 'dvc.yaml').read_text())['stages']
    assert list(stages) == list(dvc)
    for name, stage in stages.items():
        assert stage.command == ' '.join(dvc[name]['cmd'].replace('${preset}', 'paper').split())
    collect = stages['collect']
    assert set(produced) <= set(collect.inputs)   # the folders of results are the DAG's files
    assert 'results/paper/params.effective.yaml' in collect.inputs
    assert 'src/cgrseg/tables' not in collect.inputs   # code is DVC's to track
    assert stages['tables'].outputs == ['results/paper/tables']
    assert stages['tables'].outputs[0].flags == {'directory': True}   # a folder for Snakemake
    assert 'results/paper/diff.json' in stages['diff'].outputs and not getattr(stages['diff'].outputs[0], 'flags', None)


def test_dvc_interpolation_is_only_a_plain_preset(tmp_path):
    dvc = tmp_path / 'dvc.yaml'
    dvc.write_text('stages:\n  x:\n    cmd: cgrseg collect --out ${other}\n')
    with pytest.raises(wf.CGRSegError, match=r'only \$\{preset\} may be interpolated'):
        wf.dvc_stages(params(), [], dvc)


def test_rules_find_cgrseg_next_to_the_interpreter(monkeypatch):
    monkeypatch.setenv('PATH', '/usr/bin')
    wf.put_interpreter_on_path()
    assert os.environ['PATH'].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    wf.put_interpreter_on_path()
    assert os.environ['PATH'].count(str(Path(sys.executable).parent)) == 1


# ---- the DAG, by dry runs of a copy of the workflow ----------------------------------------

@pytest.fixture(scope='module')
def paper_dag(workflow, tmp_path_factory):
    return workflow.dry_run(workflow.copy(tmp_path_factory.mktemp('paper')), 'preset=paper', 'sources=real')


def test_paper_preset_runs_9_trainings_and_9_evaluations(workflow, paper_dag):
    counts = workflow.job_counts(paper_dag)
    assert counts['train'] == 9 and counts['evaluate'] == 9
    assert counts['pretrained'] == 3 and counts['download'] == 3 and counts['prepare'] == 3
    assert 'synth' not in counts
    assert counts['flops'] == 6 and counts['throughput'] == 9  # ADE20K's own = the judged count
    assert counts['flops_judged'] == 3 and counts['hypothesis'] == 1
    assert counts['doctor'] == 1 and not {'curves', 'zoo', 'pages'} & set(counts)   # the report target's


def test_the_report_target_adds_curves_zoo_and_pages_to_the_run(workflow, tmp_path):
    """`snakemake report` (the README's report line): every job of `all` plus the report's own rules."""
    done = workflow.run(workflow.copy(tmp_path), 'report', '-n', '--workflow-profile', 'none', '--cores', '2')
    assert done.returncode == 0, done.stdout + done.stderr
    # targets are plain paths: a folder's directory() flag in all's or report's input is a warning per run
    assert 'only valid for' not in done.stdout + done.stderr
    counts = workflow.job_counts(done.stdout + done.stderr)
    assert counts.pop('curves') == counts.pop('zoo') == counts.pop('pages') == counts.pop('report') == 1
    assert counts.pop('train') == 9 and 'all' not in counts


def test_the_paper_keeps_the_configs_schedule_and_pretrained_backbone(workflow, paper_dag):
    for command in workflow.commands(paper_dag, 'exec cgrseg train'):
        for flag, value in (('--iters', 'None'), ('--crop', 'None'), ('--pretrained', 'True'),
                            ('--validate', 'True'), ('--train-repeat', '1'),
                            # the authors' 4 GPUs x 4 images as 1 GPU x 16
                            ('--samples-per-gpu', '16'), ('--gpus', '1')):
            assert workflow.option(command, flag) == value, (flag, command)
        assert command.split('--cfg-options')[1].split('>')[0].strip() == ''
    assert all(workflow.option(c, '--demo') == 'False' for c in workflow.commands(paper_dag, 'cgrseg evaluate'))


def test_demo_preset_runs_the_whole_dag_from_synthetic_archives(workflow, demo_dag):
    counts = workflow.job_counts(demo_dag)
    assert counts == {'doctor': 1, 'synth': 3, 'download': 3, 'prepare': 3, 'train': 9, 'evaluate': 9,
                      'flops': 6, 'flops_judged': 3, 'hypothesis': 1, 'throughput': 9,
                      'effective_params': 1, 'collect': 1, 'tables': 1, 'diff': 1, 'figure': 1,
                      'all': 1}   # curves, zoo and pages: `snakemake report` (outside the demo's budget)
    trainings = workflow.commands(demo_dag, 'exec cgrseg train')
    assert all(re.search(r'--work-dir results/demo/work_dirs/\w+/cgrseg-[tbl]/seed0 .*--seed 0 ', c)
               for c in trainings), trainings
    hypothesis = next(c for c in workflow.commands(demo_dag) if 'hypotheses/' in c)
    assert hypothesis.startswith('cgrseg flops configs/cgrseg/cgrseg-b_ade20k_160k.py --shape 512 '
                                 '512 --cfg-options model.decode_head.next_repeat=5 --out ')
    assert all(workflow.option(c, '--demo') == 'True' for c in workflow.commands(demo_dag, 'cgrseg evaluate'))
    for command in workflow.commands(demo_dag, 'cgrseg throughput'):
        assert '--data-root results/demo/data/prepared --manifest results/demo/data/prepared/' in command
        assert ' --deploy ' in command and command.split(' > ')[0].endswith('--shape 64 64')


def job_inputs(workflow, dag, rule):
    """The input files of every job of ``rule`` in a dry run."""
    return [re.search(r'\n\s+input: (.*)', b).group(1).split(', ') for b in workflow.job_blocks(dag)
            if b.startswith(f'{rule}:')]


def test_the_doctor_runs_before_any_download_or_training(workflow, demo_dag, paper_dag):
    for dag, root in ((demo_dag, 'results/demo'), (paper_dag, 'results/paper')):
        for rule in ('train', 'download'):
            inputs = job_inputs(workflow, dag, rule)
            assert inputs and all(f'{root}/doctor.passed' in i for i in inputs), rule
    # the paper's doctor checks the backbone weights the pretrained rule fetched
    assert job_inputs(workflow, paper_dag, 'doctor') == [[f'checkpoints/efficientformerv2_{a}.pth' for a in ('l', 's1', 's2')]]
    doctor = next(iter(workflow.commands(paper_dag, 'cgrseg doctor')))
    given = json.loads(workflow.option(doctor, '--params-json'))
    assert given['preset'] == 'paper' and given['sources'] == 'real'
    assert workflow.option(doctor, '--executor') == 'dryrun'


def test_the_demo_trains_short_on_cpu_without_pretrained_weights(workflow, demo_dag):
    demo = PARAMS['presets']['demo']
    for command in workflow.commands(demo_dag, 'exec cgrseg train'):
        variant = re.search(r'cgrseg-([tbl])_', command).group(1)
        for flag, value in (('--gpus', 0), ('--iters', demo['iters'][variant]), ('--crop', demo['crop']),
                            ('--samples-per-gpu', demo['samples_per_gpu']), ('--pretrained', False),
                            ('--validate', False), ('--train-repeat', demo['train_repeat']),
                            ('--checkpoint-interval', demo['checkpoint_interval'])):
            assert workflow.option(command, flag) == str(value), (flag, command)
        assert workflow.option(command, '--cfg-options') == f"optimizer.lr={demo['cfg_options']['optimizer.lr']}"


def test_every_job_is_one_logged_cgrseg_call_naming_its_flags(workflow, demo_dag, paper_dag):
    for dag in (demo_dag, paper_dag):
        commands = workflow.commands(dag)
        assert commands
        for command in commands:
            # train: `exec cgrseg ...`, so that a SLURM preemption signal reaches the trainer (docs/slurm.md)
            assert re.fullmatch(r'(exec )?cgrseg [a-z]+ .* > results/(demo|paper)/logs/\S+\.log 2>&1', command), command
        blocks = [b for b in workflow.job_blocks(dag) if 'Shell command: None' not in b]
        assert len(blocks) == len(commands)
        assert all(re.search(r'benchmark: results/(demo|paper)/benchmarks/', b) for b in blocks)


def test_every_value_in_a_shell_line_is_quoted_or_a_file():
    """Each `{...}` of a rule's shell line is :q-quoted; the table stages' lines are dvc.yaml's, whose
    only interpolation is the preset, a plain name."""
    rules = '\n'.join(p.read_text() for p in sorted((REPO / 'workflow' / 'rules').glob('*.smk')))
    shells = re.findall(r'shell:\n((?:\s+".*"\n)+)', rules)
    assert len(shells) >= 10
    for shell in shells:
        fields = re.findall(r'(?<!\{)\{([^{}]+)\}(?!\})', shell)
        assert fields and all(f.endswith(':q') for f in fields), shell
        assert 'params.args' not in shell


def test_gpu_rules_ask_slurm_for_a_gpu_partition(workflow, paper_dag):
    partition = PARAMS['slurm_gpu_partition']
    for block in workflow.job_blocks(paper_dag):
        rule = block.split(':', 1)[0]
        resources = re.search(r'resources: (.*)', block)
        gpu = rule in ('train', 'evaluate', 'throughput')
        assert ('gpu=1' in resources.group(1)) == gpu, block
        assert (f'slurm_partition={partition}' in resources.group(1)) == gpu, block
        if rule in ('train', 'evaluate', 'throughput', 'prepare', 'flops'):
            assert 'mem_mb=' in resources.group(1) and 'runtime=' in resources.group(1)


def test_bad_params_stop_the_dag_with_one_line_per_key(workflow, tmp_path):
    done = workflow.dry_run(workflow.copy(tmp_path), 'presets={demo: {iters: abc, crop: 8}}', 'seeds=abc',
                            'tables={formats: [pdf]}', 'measure_shape={ade20k: 512}', check=False)
    assert done.returncode == 2
    assert 'Traceback' not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith('params.yaml: ')]
    assert [line.split(':')[1].strip() for line in errors] == [
        'measure_shape.ade20k', 'presets.demo.crop', 'presets.demo.iters', 'seeds', 'tables.formats.0']


def test_the_old_profile_key_is_one_line_naming_preset(workflow, tmp_path):
    done = workflow.dry_run(workflow.copy(tmp_path), 'profile=paper', check=False)
    assert done.returncode == 2 and 'Traceback' not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith('params.yaml: ')] == [
        'params.yaml: profile: renamed to "preset" (e.g. --config preset=paper)']


def test_config_overrides_reach_every_stage(workflow, tmp_path):
    out = workflow.dry_run(workflow.copy(tmp_path), 'seeds=[0, 2]', 'tables={formats: [csv], strict: true}',
                           'measure_shape={pascal_context: [512, 512]}', 'presets={demo: {iters: 7}}')
    counts = workflow.job_counts(out)
    assert counts['train'] == counts['evaluate'] == 18
    commands = workflow.commands(out)
    assert sum('--seed 2 ' in c and '/seed2 ' in c for c in commands if 'cgrseg train' in c) == 9
    assert all(workflow.option(c, '--iters') == '7' for c in commands if 'cgrseg train' in c)
    flops = [c for c in commands if c.startswith('cgrseg flops') and 'measure/pascal_context/' in c]
    assert flops and all('--shape 512 512' in c for c in flops)
    # the table stages get the overrides through one file, the run's effective params
    record = next(c for c in commands if c.startswith('cgrseg params'))
    given = json.loads(workflow.option(record, '--values'))
    assert given['seeds'] == [0, 2] and given['tables'] == {'formats': ['csv'], 'strict': True}
    assert given['measure_shape']['pascal_context'] == [512, 512]
    for stage in ('collect', 'tables', 'diff', 'figure'):
        command = next(c for c in commands if c.startswith(f'cgrseg {stage} '))
        assert shlex.split(command)[2:4] == ['--params', 'results/demo/params.effective.yaml'], command


@pytest.mark.slow
def test_snakemake_lint_asks_only_for_per_rule_environments(workflow, tmp_path):
    """One environment (a source-built mmcv) serves every rule: docs/workflow.md answers that lint."""
    done = workflow.run(workflow.copy(tmp_path), '--lint', '--workflow-profile', 'none')
    output = done.stdout + done.stderr
    # (snakemake 9.27 prints text whatever --lint's format argument says)
    titles = set(re.findall(r'^    \* (.*):$', output, re.MULTILINE))
    assert titles == {'Specify a conda environment or container for each rule.'}, output[-3000:]
    assert 'Lints for snakefile' not in output
