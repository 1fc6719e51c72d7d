"""What the diff says about each cell, word for word: the verdict, the reason a user reads beside it,
the delta, and the summary line. The reasons are the product here (they say why a cell is or is not
compared), so they are pinned whole rather than by a fragment."""
import copy

import pytest

from cgrseg.tables import judge
from test_tables import by_cell, one_cell, with_paper_gpu
from test_tables import hypotheses, metrics, paper  # noqa: F401  (its fixtures)

JUDGED = 'judged: the ade20k model (150 classes) at 512x512, the figures the paper prints in every table'
MACS = {'t': '3.945', 'b': '7.593', 'l': '14.789'}


def gflops_note(variant):
    return f'{JUDGED}, mmcv convention (mmseg 0.x get_flops.py; conv/linear MACs {MACS[variant]})'


def own_model(classes, shape, value):
    return f"; this dataset's model ({classes} classes, {shape}): {value}, not judged"


ONE_RUN = 'one run (one seed)'
DEMO = 'demo run (synthetic data and/or demo schedule): never compared'
# the fixture (tests/fixtures/metrics): every cell of the three tables
EXPECTED = {
    ('ade20k', 't', 'mIoU'): (judge.WITHIN, ONE_RUN, 0.11),
    ('ade20k', 't', 'gflops'): (judge.WITHIN, gflops_note('t'), -0.002),
    ('ade20k', 't', 'params_M'): (judge.WITHIN, JUDGED, -0.035),
    ('ade20k', 't', 'img_per_s'): (judge.OTHER_DEVICE, 'measured on NVIDIA H100 80GB HBM3; the paper does not '
                                   'say which GPU it used, so no device can match', 12.8),
    ('ade20k', 'b', 'mIoU'): (judge.OUTSIDE, ONE_RUN, -0.65),
    ('ade20k', 'b', 'gflops'): (judge.OUTSIDE, gflops_note('b'), 0.074),
    ('ade20k', 'b', 'params_M'): (judge.OUTSIDE, JUDGED, 1.015),
    ('ade20k', 'b', 'img_per_s'): (judge.OTHER_DEVICE, 'measured on CPU (Intel(R) Xeon(R) CPU, input 512x512): '
                                   'never compared', -95.0),
    ('ade20k', 'l', 'mIoU'): (judge.PENDING, 'no results/runs/ade20k/cgrseg-l/seed*/metrics.json yet', None),
    ('ade20k', 'l', 'gflops'): (judge.WITHIN, gflops_note('l'), 0.011),
    ('ade20k', 'l', 'params_M'): (judge.WITHIN, JUDGED, -0.022),
    ('ade20k', 'l', 'img_per_s'): (judge.PENDING, 'no results/measure/ade20k/cgrseg-l.throughput.json yet', None),
    ('coco_stuff10k', 't', 'mIoU'): (judge.DEMO, DEMO, None),
    ('coco_stuff10k', 't', 'gflops'): (judge.WITHIN, gflops_note('t') + own_model(171, '512x512', '4.020'), -0.002),
    ('coco_stuff10k', 't', 'params_M'): (judge.WITHIN, JUDGED + own_model(171, '512x512', '9.367'), -0.035),
    ('coco_stuff10k', 'b', 'mIoU'): (judge.DEMO, DEMO, None),
    ('coco_stuff10k', 'b', 'gflops'): (judge.OUTSIDE, gflops_note('b') + own_model(171, '512x512', '7.718'), 0.074),
    ('coco_stuff10k', 'b', 'params_M'): (judge.OUTSIDE, JUDGED + own_model(171, '512x512', '19.120'), 1.015),
    ('coco_stuff10k', 'l', 'mIoU'): (judge.DEMO, DEMO, None),
    ('coco_stuff10k', 'l', 'gflops'): (judge.WITHIN, gflops_note('l') + own_model(171, '512x512', '14.955'), 0.011),
    ('coco_stuff10k', 'l', 'params_M'): (judge.WITHIN, JUDGED + own_model(171, '512x512', '35.683'), -0.022),
    ('pascal_context', 't', 'mIoU'): (judge.NOT_COMPARABLE,
                                      'evaluated single-scale, the paper reports multi-scale + flip', -0.9),
    ('pascal_context', 't', 'gflops'): (judge.WITHIN, gflops_note('t') + own_model(59, '480x480', '3.450'), -0.002),
    ('pascal_context', 't', 'params_M'): (judge.WITHIN, JUDGED + own_model(59, '480x480', '9.353'), -0.035),
    ('pascal_context', 'b', 'mIoU'): (judge.WITHIN, ONE_RUN, -0.4),
    ('pascal_context', 'b', 'gflops'): (judge.OUTSIDE, gflops_note('b') + own_model(59, '480x480', '6.616'), 0.074),
    ('pascal_context', 'b', 'params_M'): (judge.OUTSIDE, JUDGED + own_model(59, '480x480', '19.091'), 1.015),
    ('pascal_context', 'l', 'mIoU'): (judge.PENDING, 'no results/runs/pascal_context/cgrseg-l/seed*/metrics.json yet',
                                      None),
    ('pascal_context', 'l', 'gflops'): (judge.WITHIN, gflops_note('l') + own_model(59, '480x480', '12.994'), 0.011),
    ('pascal_context', 'l', 'params_M'): (judge.WITHIN, JUDGED + own_model(59, '480x480', '35.654'), -0.022),
}


def test_every_fixture_cell_has_its_verdict_reason_and_delta(paper, metrics, hypotheses):
    cells = judge.judge_all(paper, metrics, 'results', hypotheses)
    assert [(c['dataset'], c['variant'], c['column']) for c in cells] == list(EXPECTED)
    assert {k: (c['status'], c['reason'], c['delta']) for k, c in by_cell(cells).items()} == EXPECTED


def test_each_cell_names_its_column_model_and_the_papers_value_and_source(paper, metrics):
    for cell in judge.judge_all(paper, metrics):
        spec, row = paper['columns'][cell['column']], paper['tables'][cell['dataset']]['rows'][cell['variant']]
        assert cell['label'] == spec['label'] != cell['column']
        assert cell['model'] == f"cgrseg-{cell['variant']}"
        assert cell['paper'] == row[cell['column']]['value']
        assert cell['tolerance'] == {'abs': f"±{spec['tolerance'].get('abs')}",
                                     'rel': '±10%'}[next(iter(spec['tolerance']))]
    cell = by_cell(judge.judge_all(paper, metrics))[('ade20k', 't', 'mIoU')]
    assert cell['paper_source'] == "authors' README, text tables; paper abstract (arXiv:2405.06228)"
    assert cell['ours'] == 43.71 and cell['mIoU_runs'] == {'seed0': 43.71}


def test_each_outside_cell_lists_the_hypotheses_that_should_explain_it(paper, metrics, hypotheses):
    cells = by_cell(judge.judge_all(paper, metrics, 'results', hypotheses))
    source = hypotheses['b_next_repeat_5']['source']
    for dataset in ('ade20k', 'coco_stuff10k', 'pascal_context'):
        for column, measured, delta in (('params_M', 18.11, 0.01), ('gflops', 7.609, 0.009)):
            assert cells[(dataset, 'b', column)]['hypotheses'] == [{
                'name': 'b_next_repeat_5', 'cfg_options': {'model.decode_head.next_repeat': 5},
                'source': source, 'measured': measured, 'reproduces': True, 'delta': delta}]
    assert cells[('ade20k', 'b', 'mIoU')]['hypotheses'] == []      # outside, and nothing tried
    assert 'hypotheses' not in cells[('ade20k', 'b', 'img_per_s')]  # not outside: nothing to list


def test_a_hypothesis_delta_keeps_six_decimals_and_a_pending_one_names_its_file(paper, metrics, hypotheses):
    hyps = {'b_other': hypotheses['b_next_repeat_5'], **hypotheses}
    changed = {**metrics, 'hypotheses.b_next_repeat_5.params_M': 18.1234567}
    tried = by_cell(judge.judge_all(paper, changed, 'elsewhere', hyps))[('ade20k', 'b', 'params_M')]['hypotheses']
    assert [h['name'] for h in tried] == ['b_other', 'b_next_repeat_5']
    assert tried[0]['status'] == 'pending: no elsewhere/measure/hypotheses/b_other.flops.json yet'
    assert tried[0]['measured'] is None and 'delta' not in tried[0]
    assert (tried[1]['delta'], tried[1]['reproduces']) == (0.023457, True)


def test_the_summary_line_counts_every_verdict(paper, metrics):
    summary = judge.summarize(judge.judge_all(paper, metrics))
    assert judge.summary_line(summary) == ('30 cells: 21 comparable, 14 within tolerance, 7 outside; 9 not compared '
                                           '(pending 3, demo 3, other device 2, other protocol 1)')
    assert judge.summary_line(judge.summarize(judge.judge_all(paper, {}))) == (
        '30 cells: 0 comparable, 0 within tolerance, 0 outside; 30 not compared (pending 30)')
    cells = [{'status': s} for s in (judge.WITHIN, judge.OUTSIDE, judge.NO_PAPER_VALUE)]
    assert judge.summary_line(judge.summarize(cells)) == (
        '3 cells: 2 comparable, 1 within tolerance, 1 outside; 1 not compared (no paper value 1)')
    assert judge.summary_line(judge.summarize(cells[:1])) == '1 cells: 1 comparable, 1 within tolerance, 0 outside; 0 not compared'


def v100(paper, **throughput):
    paper = with_paper_gpu(paper)
    for name, value in throughput.items():
        paper['tables']['ade20k']['throughput'][name]['value'] = value
    return paper


GPU = dict(throughput_device='cuda', throughput_device_name='Tesla V100-SXM2-32GB', throughput_batch_size=1,
           throughput_input='512x512')


@pytest.mark.parametrize('edit, extra, status, reason', [
    (dict(), GPU, judge.WITHIN, 'same GPU model (Tesla V100-SXM2-32GB)'),
    (dict(batch_size=1, input_shape=[3, 512, 512]), GPU, judge.WITHIN, 'same GPU model (Tesla V100-SXM2-32GB)'),
    (dict(), {**GPU, 'throughput_device_name': 'NVIDIA A100-SXM4-80GB'}, judge.OTHER_DEVICE,
     'measured on NVIDIA A100-SXM4-80GB, the paper on V100'),
    (dict(), {**GPU, 'throughput_device': 'cpu'}, judge.OTHER_DEVICE,
     'measured on CPU (Tesla V100-SXM2-32GB, input 512x512): never compared'),
    (dict(), {**GPU, 'throughput_device': 'cpu', 'throughput_input': None}, judge.OTHER_DEVICE,
     'measured on CPU (Tesla V100-SXM2-32GB): never compared'),
    (dict(batch_size=32), GPU, judge.NOT_COMPARABLE, 'batch size 1, the paper used 32'),
    (dict(input_shape=[3, 1024, 512]), GPU, judge.NOT_COMPARABLE, 'input 512x512, the paper used 1024x512'),
    (dict(input_shape=[512, 1024]), {**GPU, 'throughput_input': '512x1024'}, judge.WITHIN,
     'same GPU model (Tesla V100-SXM2-32GB)'),
])
def test_throughput_verdicts_say_which_fact_differs(paper, edit, extra, status, reason):
    cell = one_cell(v100(paper, **edit), 'img_per_s', 138.4, 138.4, **extra)
    assert (cell['status'], cell['reason']) == (status, reason)


@pytest.mark.parametrize('dataset, mode, reason', [
    ('ade20k', 'ms', 'evaluated multi-scale, the paper reports single-scale'),
    ('ade20k', 'ms_flip', 'evaluated multi-scale + flip, the paper reports single-scale'),
    ('coco_stuff10k', 'ss', 'evaluated single-scale, the paper reports multi-scale'),
    ('pascal_context', 'ms', 'evaluated multi-scale, the paper reports multi-scale + flip'),
    ('ade20k', 'tta', "evaluated 'tta', the paper reports single-scale"),
    ('ade20k', None, 'evaluated None, the paper reports single-scale'),
])
def test_another_evaluation_protocol_is_named_not_compared(paper, dataset, mode, reason):
    cell = one_cell(paper, 'mIoU', 43.6, 43.6, dataset=dataset, mIoU_mode=mode)
    assert (cell['status'], cell['reason'], cell['delta']) == (judge.NOT_COMPARABLE, reason, 0.0)


def test_seeds_are_pending_until_all_are_evaluated_then_their_spread_is_the_note(paper):
    cell = one_cell(paper, 'mIoU', 43.6, 43.6, mIoU_n=1, mIoU_seeds=3)
    assert (cell['status'], cell['reason']) == (judge.PENDING, '1 of 3 seeds evaluated so far (mean of those shown)')
    cell = one_cell(paper, 'mIoU', 43.6, 43.6, mIoU_n=3, mIoU_seeds=3, mIoU_std=0.346)
    assert (cell['status'], cell['reason']) == (judge.WITHIN, 'mean of 3 seeds, std 0.35')
    assert (cell['mIoU_n'], cell['mIoU_seeds'], cell['mIoU_std']) == (3, 3, 0.346)


def test_gflops_notes_show_fvcore_and_the_datasets_own_model_but_judge_neither(paper):
    cell = one_cell(paper, 'gflops', 4.0, 4.0, dataset='pascal_context', gflops_fvcore=4.5678,
                    gflops_conv_linear_macs=3.9449, gflops_dataset=3.4504, num_classes_dataset=59,
                    flops_input_dataset='480x480', gflops_convention='mmcv-ish')
    assert (cell['status'], cell['reason']) == (judge.WITHIN, (
        'judged: the ade20k model (150 classes) at 512x512, the figures the paper prints in every table, '
        'mmcv-ish convention (mmseg 0.x get_flops.py; conv/linear MACs 3.945; fvcore, with matmuls, 4.568)'
        "; this dataset's model (59 classes, 480x480): 3.450, not judged"))
    cell = one_cell(paper, 'params_M', 9.4, 9.4, dataset='pascal_context', flops_dataset='pascal_context',
                    flops_classes=59, flops_input='480x480', params_M_dataset=9.3)
    assert cell['reason'] == ('judged: the pascal_context model (59 classes) at 480x480, the figures the paper '
                              'prints in every table')   # its own model is the judged one: not repeated


def test_gflops_counted_at_another_input_than_the_papers_say_both(paper):
    paper = copy.deepcopy(paper)
    paper['tables']['pascal_context']['gflops_input']['value'] = [3, 480, 512]
    cell = one_cell(paper, 'gflops', 4.0, 4.0, dataset='pascal_context')
    assert (cell['status'], cell['reason']) == (judge.NOT_COMPARABLE, 'counted at 512x512, the paper at 480x512')
    cell = one_cell(paper, 'gflops', 4.0, 4.0, dataset='pascal_context', flops_input='480x512')
    assert cell['status'] == judge.WITHIN


def test_a_missing_paper_value_says_where_it_was_looked_for(paper):
    cell = one_cell(paper, 'params_M', 9.365, None)
    assert (cell['status'], cell['reason'], cell['delta']) == (judge.NO_PAPER_VALUE, (
        "the paper value was not found: authors' README, text tables"), None)


CELL_FIELDS = ['dataset', 'model', 'variant', 'column', 'label', 'paper', 'paper_source', 'ours', 'delta',
               'tolerance', 'status', 'reason']


def test_a_cell_holds_its_fields_in_diff_json_order_then_the_facts_of_its_column_only(paper):
    cell = one_cell(paper, 'mIoU', 43.6123456, 43.6, mIoU_seed0=43.6123456, gflops_mmcv=4.0)
    assert list(cell) == [*CELL_FIELDS, 'mIoU_mode', 'demo', 'mIoU_n', 'mIoU_seeds', 'mIoU_runs']
    assert cell['mIoU_runs'] == {'seed0': 43.6123456} and cell['delta'] == 0.012346   # six decimals
    cell = one_cell(paper, 'gflops', 4.0, 4.0, mIoU_seed0=43.6)
    assert list(cell) == [*CELL_FIELDS, 'gflops_convention', 'flops_dataset', 'flops_classes', 'flops_input',
                          'gflops_mmcv', 'gflops_conv_linear_macs']


def test_a_column_without_a_label_is_labelled_by_its_name(paper):
    paper = copy.deepcopy(paper)
    del paper['columns']['params_M']['label']
    assert one_cell(paper, 'params_M', 9.4, 9.4)['label'] == 'params_M'


def test_a_pending_cell_names_the_file_under_the_results_folder_it_was_given(paper):
    cells = by_cell(judge.judge_all(paper, {}, 'elsewhere'))
    assert cells[('ade20k', 't', 'mIoU')]['reason'] == 'no elsewhere/runs/ade20k/cgrseg-t/seed*/metrics.json yet'
    assert cells[('ade20k', 't', 'gflops')]['reason'] == 'no elsewhere/measure/judged/cgrseg-t.flops.json yet'


def test_two_seeds_are_a_mean_with_its_spread(paper):
    cell = one_cell(paper, 'mIoU', 43.6, 43.6, mIoU_n=2, mIoU_seeds=2, mIoU_std=0.1)
    assert cell['reason'] == 'mean of 2 seeds, std 0.10'


def on_the_edge(paper, column, tolerance):
    """The paper with an absolute ``tolerance`` for ``column``."""
    paper = copy.deepcopy(paper)
    paper['columns'][column]['tolerance'] = {'abs': tolerance}
    return paper


def test_a_delta_of_exactly_the_tolerance_plus_the_rounding_guard_is_within(paper):
    edge = 0.5 + judge.EPS
    assert one_cell(on_the_edge(paper, 'mIoU', 0.5), 'mIoU', edge, 0.0)['status'] == judge.WITHIN
    assert one_cell(on_the_edge(paper, 'mIoU', 0.5), 'mIoU', edge + 1e-12, 0.0)['status'] == judge.OUTSIDE


def hypothesis_verdict(paper, metrics, hypotheses, measured, paper_value, tolerance):
    paper = copy.deepcopy(paper)
    paper['tables']['ade20k']['rows']['b']['params_M']['value'] = paper_value
    paper['columns']['params_M']['tolerance'] = tolerance
    other = {**hypotheses['b_next_repeat_5'], 'variant': 't'}     # another row's, listed first
    hyps = {'t_first': other, **hypotheses}
    changed = {**metrics, 'ade20k.cgrseg-b.params_M': 99.0, 'hypotheses.b_next_repeat_5.params_M': measured}
    cell = by_cell(judge.judge_all(paper, changed, 'results', hyps))[('ade20k', 'b', 'params_M')]
    assert [h['name'] for h in cell['hypotheses']] == ['b_next_repeat_5']
    return cell['hypotheses'][0]['reproduces']


@pytest.mark.parametrize('measured, paper_value, tolerance, reproduces', [
    (0.05 + judge.EPS, 0.0, {'abs': 0.05}, True),            # the edge itself
    (0.05 + judge.EPS + 1e-12, 0.0, {'abs': 0.05}, False),
    (1.05, 1.0, {'abs': 0.05}, True),                        # 0.05000000000000004 in floats: the guard keeps it
    (18.2, 18.0, {'rel': 0.02}, True),                       # relative to the paper's value
    (18.37, 18.0, {'rel': 0.02}, False),
])
def test_a_hypothesis_reproduces_within_the_columns_tolerance(paper, metrics, hypotheses, measured, paper_value,
                                                             tolerance, reproduces):
    assert hypothesis_verdict(paper, metrics, hypotheses, measured, paper_value, tolerance) is reproduces
