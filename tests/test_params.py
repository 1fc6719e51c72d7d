"""params.yaml against workflow/schemas/params.schema.yaml: one line per bad key, old spellings named,
defaults filled; `cgrseg params` records a run's effective params."""
import copy
import json
from pathlib import Path

import pytest
import yaml

from cgrseg import params as P
from cgrseg.errors import CGRSegError

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / 'params.yaml').read_text())


def params(**changes):
    config = copy.deepcopy(PARAMS)
    config.update(changes)
    return config


def with_demo(**changes):
    config = params()
    config['presets']['demo'].update(changes)
    return config


def problem_lines(config):
    return P.problems(P.coerce(config))


@pytest.mark.parametrize('config, message', [
    (params(preset='fast'), "preset: 'fast' is not one of the presets (demo, paper)"),
    (params(preset='a b'), 'preset: must be a plain name (letters, digits, _ and -)'),
    (params(sources='web'), "sources: 'web' is not one of ['synthetic', 'real']"),
    (params(datasets=['ade20k', 'cityscapes']), "datasets.1: 'cityscapes' is not one of"),
    (params(variants=['t', 'xl']), "variants.1: 'xl' is not one of ['t', 'b', 'l']"),
    (with_demo(iters=0), 'presets.demo.iters: 0 is less than the minimum of 1'),
    (with_demo(iters=-5), 'presets.demo.iters: -5 is less than the minimum of 1'),
    (with_demo(iters='abc'), "presets.demo.iters: 'abc' is not of type 'integer', 'null'"),
    (with_demo(iters={'t': 3, 'xl': 4}), "presets.demo.iters: 'xl' is not one of ['t', 'b', 'l']"),
    (with_demo(crop=8), 'presets.demo.crop: 8 is less than the minimum of 32'),
    (with_demo(crop=48), 'presets.demo.crop: 48 is not a multiple of 32'),
    (params(measure_shape={**PARAMS['measure_shape'], 'pascal_context': [480, 500]}),
     'measure_shape.pascal_context.1: 500 is not a multiple of 32'),
    (with_demo(samples_per_gpu=0), 'presets.demo.samples_per_gpu: 0 is less than the minimum'),
    (with_demo(gpus=-1), 'presets.demo.gpus: -1 is less than the minimum of 0'),
    (with_demo(cfg_options={'optimizer lr': 1}), 'presets.demo.cfg_options: '),
    (params(seeds='abc'), "seeds: 'abc' is not of type 'array'"),
    (params(seeds=['abc']), "seeds.0: 'abc' is not of type 'integer'"),
    (params(synth_images=0), 'synth_images: 0 is less than the minimum of 1'),
    (params(synth_images=-3), 'synth_images: -3 is less than the minimum of 1'),
    (params(tables={'formats': ['pdf']}),
     "tables.formats.0: 'pdf' is not one of ['md', 'csv', 'tex']"),
    (params(measure_shape={**PARAMS['measure_shape'], 'ade20k': 512}),
     "measure_shape.ade20k: 512 is not of type 'array'"),
    (params(measure_shape={'ade20k': [512, 512]}), 'measure_shape.coco_stuff10k: missing'),
    (params(judged_complexity={'dataset': 'ade20k', 'shape': [512, 512], 'gflops': 'fvcore'}),
     "judged_complexity.gflops: 'fvcore' is not one of ['mmcv', 'conv_linear_macs']"),
    (params(judged_complexity={'dataset': 'voc', 'shape': [512, 512], 'gflops': 'mmcv'}),
     "judged_complexity.dataset: 'voc' is not one of"),
    (params(resources={'demo': {'train': {'threads': 'x'}}}),
     "resources.demo.train.threads: 'x' is not of type 'integer'"),
    (params(data_root='data\nroot'), 'data_root: must be a folder name without NUL, line breaks or braces'),
    (params(data_root='data\0root'), 'data_root: must be a folder name without NUL'),
    (params(work_root='{dataset}'), 'work_root: must be a folder name without NUL, line breaks or braces'),
    (params(archive_dir='a\rb'), 'archive_dir: must be a folder name without NUL, line breaks or braces'),
])
def test_a_bad_value_names_its_key(config, message):
    lines = problem_lines(config)
    assert any(line.startswith(f'params.yaml: {message}') for line in lines), lines
    assert all('\n' not in line for line in lines)


@pytest.mark.parametrize('config, message', [
    (params(profile='paper'), 'profile: renamed to "preset" (e.g. --config preset=paper)'),
    (params(profiles={'demo': {'gpus': 0}}), 'profiles: renamed to "presets"'),
    (params(seed=0), 'seed: replaced by "seeds", a list (e.g. seeds: [0])'),
    (with_demo(lr=0.1), 'presets.demo.lr: replaced by cfg_options (e.g. cfg_options: {optimizer.lr: 0.0006})'),
])
def test_an_old_spelling_names_the_new_key(config, message):
    assert f'params.yaml: {message}' in problem_lines(config)


def test_every_problem_is_reported_at_once():
    config = with_demo(iters=0, crop=8)
    config['seeds'] = 'abc'
    assert [line.split(':')[1].strip() for line in problem_lines(config)] == [
        'presets.demo.crop', 'presets.demo.iters', 'seeds']


def test_per_variant_iterations_must_name_every_variant():
    # a variant left out would silently train the config's whole schedule
    assert problem_lines(with_demo(iters={'t': 300})) == [
        'params.yaml: presets.demo.iters.b: missing (one count for every variant)',
        'params.yaml: presets.demo.iters.l: missing (one count for every variant)']


def test_config_strings_are_read_as_numbers_where_numbers_belong():
    # what Snakemake's --config presets='{demo: {iters: 100}}' seeds='[0, 1]' gives
    config = with_demo(iters='100', crop='null')
    config.update(seeds=['0', '1'], tables={'formats': ['md'], 'strict': 'true'})
    fixed = P.coerce(config)
    assert fixed['seeds'] == [0, 1] and fixed['tables']['strict'] is True
    assert fixed['presets']['demo']['iters'] == 100 and fixed['presets']['demo']['crop'] is None
    assert fixed['tables']['formats'] == ['md'] and fixed['data_root'] == 'data'
    assert P.problems(fixed) == []


def test_the_schema_fills_every_preset_setting_the_rules_read():
    paper = P.effective(params())['presets']['paper']
    assert 'iters' not in PARAMS['presets']['paper'] or PARAMS['presets']['paper']['iters'] is None
    assert paper['train_repeat'] == 1 and paper['validate'] is True and paper['cfg_options'] == {}
    assert paper['throughput_iters'] == 20 and paper['checkpoint_interval'] is None
    schema = P.schema()['definitions']['preset']['properties']
    assert set(schema) == set(paper)   # every key a rule reads has a value


def test_no_preset_may_write_into_the_reference_snapshot():
    config = params(preset='reference')
    config['presets']['reference'] = config['presets']['demo']
    with pytest.raises(CGRSegError, match='results/reference/'):
        P.check(config)


def test_cgrseg_params_records_the_effective_values(run_cli, tmp_path):
    values = with_demo(iters={'t': 7, 'b': 1, 'l': 1})
    out = tmp_path / 'params.effective.yaml'
    assert run_cli('params', '--values', json.dumps(values), '--out', out).code == 0
    written = yaml.safe_load(out.read_text())
    assert written['presets']['demo']['iters'] == {'t': 7, 'b': 1, 'l': 1}
    assert written['presets']['paper']['train_repeat'] == 1    # defaults recorded too
    assert P.load(out) == written
    again = tmp_path / 'again.yaml'
    assert run_cli('params', '--params', REPO / 'params.yaml', '--out', again).code == 0
    assert yaml.safe_load(again.read_text()) == P.effective(params())


def test_cgrseg_params_refuses_bad_values_in_one_line(run_cli, tmp_path):
    out = tmp_path / 'params.effective.yaml'
    result = run_cli('params', '--values', json.dumps(params(profile='paper', seeds='x')), '--out', out)
    assert result.code == 2 and len(result.error_lines) == 1
    assert result.error_lines[0].startswith('cgrseg params: error: --values: profile: renamed')
    assert 'seeds' in result.error_lines[0] and not out.exists()


def test_values_json_is_read_bounded(run_cli, tmp_path):
    deep = '[' * 100 + ']' * 100
    result = run_cli('params', '--values', '{"a": ' + deep + '}', '--out', tmp_path / 'p.yaml')
    assert result.code == 2 and result.error_lines == [
        'cgrseg params: error: --values: JSON is nested more than 64 levels deep']
    assert not (tmp_path / 'p.yaml').exists()
