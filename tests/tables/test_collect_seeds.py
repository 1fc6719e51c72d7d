"""collect's summary of several seeds, at the edges its survivors of mutation testing showed: two seeds
(the least with a spread), every metric averaged, four decimals, and a seed run under another schedule."""
import re
import statistics

import pytest

from cgrseg.errors import CGRSegError
from cgrseg.tables.collect import collect, load_params
from test_tables import add_run, copy_results, seeds_params


def test_two_seeds_average_every_metric_to_four_decimals_with_their_spread(tmp_path):
    results = copy_results(tmp_path)                     # seed 0: mIoU 43.71, mAcc 54.71, aAcc 80.0
    add_run(results, 'ade20k', 't', 1, mIoU=43.2101, mAcc=54.7101, aAcc=80.0001)
    metrics = collect(load_params(seeds_params(tmp_path, [0, 1])), results)
    for name, second in (('mIoU', 43.2101), ('mAcc', 54.7101), ('aAcc', 80.0001)):
        first = {'mIoU': 43.71, 'mAcc': 54.71, 'aAcc': 80.0}[name]
        mean = (first + second) / 2
        assert metrics[f'ade20k.cgrseg-t.{name}'] == round(mean, 4) != round(mean, 5), name
    std = statistics.stdev([43.71, 43.2101])
    assert metrics['ade20k.cgrseg-t.mIoU_std'] == round(std, 4) != round(std, 5)
    assert (metrics['ade20k.cgrseg-t.mIoU_n'], metrics['ade20k.cgrseg-t.mIoU_seeds']) == (2, 2)


@pytest.mark.parametrize('change, says', [
    (dict(iters=80000), '"iters" is 80000 but {first} has 160000'),
    (dict(demo=True), '"demo" is True but {first} has False'),
    (dict(mode='ms'), '"mIoU_mode" is \'ms\' but {first} has \'ss\''),
])
def test_a_seed_evaluated_under_another_protocol_is_refused_naming_the_field(tmp_path, change, says):
    results = copy_results(tmp_path)
    add_run(results, 'ade20k', 't', 1, **change)
    run = results / 'runs' / 'ade20k' / 'cgrseg-t'
    line = f"{run / 'seed1/metrics.json'}: {says.format(first=run / 'seed0/metrics.json')}; the seeds of one model " \
           'must share a protocol'
    with pytest.raises(CGRSegError, match=f'^{re.escape(line)}$'):
        collect(load_params(seeds_params(tmp_path, [0, 1])), results)
