"""configs/paper/hypotheses.yaml against the model: each hypothesis' options reach `cgrseg flops`
unchanged and change the model, and the first one gives the paper's CGRSeg-B parameter count."""
import shlex
from pathlib import Path

import pytest
import yaml

from cgrseg.errors import CGRSegError
from cgrseg.mmseg_config import parse_options
from cgrseg.tables.hypotheses import load_hypotheses

REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / 'params.yaml').read_text())
HYPOTHESES = REPO / 'configs' / 'paper' / 'hypotheses.yaml'


@pytest.fixture(scope='module')
def hypotheses():
    return load_hypotheses(HYPOTHESES)


def test_the_dag_passes_each_hypothesis_to_cgrseg_flops_unchanged(hypotheses, workflow, demo_dag):
    assert hypotheses, 'configs/paper/hypotheses.yaml names no hypothesis'
    for name, hyp in hypotheses.items():
        command = next(c for c in workflow.commands(demo_dag, 'cgrseg flops') if f'/{name}.flops.json' in c)
        argv = shlex.split(command.split(' > ')[0])
        judged = PARAMS['judged_complexity']
        assert argv[2] == PARAMS['configs'][judged['dataset']].format(variant=hyp['variant'])
        assert argv[3:6] == ['--shape', *map(str, judged['shape'])]
        assert parse_options(argv[argv.index('--cfg-options') + 1:argv.index('--out')]) == hyp['cfg_options']


def test_next_repeat_5_gives_the_papers_cgrseg_b_params(hypotheses):
    from cgrseg.measure.flops import count_params, measure
    from cgrseg.mmseg_config import load_config
    from cgrseg.models.build import build_model

    config = REPO / 'configs/cgrseg/cgrseg-b_ade20k_160k.py'
    options = hypotheses['b_next_repeat_5']['cfg_options']
    released = count_params(build_model(load_config(config)))
    assert round(released / 1e6, 3) == 19.115  # the released config, as trained
    doc = measure(config, 64, 64, options)    # params do not depend on the input size
    assert doc['params_M'] == pytest.approx(18.110, abs=5e-4)  # the paper's 18.1
    assert doc['cfg_options'] == options


@pytest.mark.parametrize('edit, message', [
    (lambda h: h.update(variant='xl'), "variant must be one of t, b, l, got 'xl'"),
    (lambda h: h.update(cfg_options={}), 'cfg_options must be a non-empty mapping'),
    (lambda h: h.update(cfg_options={'model..x': 1}), "dotted config keys, got 'model..x'"),
    (lambda h: h.update(explains=['mIoU']), 'explains must be a non-empty list drawn from'),
    (lambda h: h.pop('source'), 'source must say where the idea comes from'),
])
def test_a_bad_hypothesis_is_one_line_naming_it(tmp_path, edit, message):
    doc = yaml.safe_load(HYPOTHESES.read_text())
    edit(doc['hypotheses']['b_next_repeat_5'])
    bad = tmp_path / 'hypotheses.yaml'
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(CGRSegError) as err:
        load_hypotheses(bad)
    assert str(err.value).startswith(f'{bad}: hypotheses.b_next_repeat_5: ')
    assert message in str(err.value)
