"""parallel_map, the process pool of every conversion: each task's result once, in order, and an end
(never a wait) when a task fails or a worker dies with tasks left. multiprocessing.Pool, used before,
waits forever for the results of a killed worker (the last test), and once hung after a failed task:
its terminate() killed a worker that held the result queue's lock (a race: seen in a fresh clone's
test run under load, in tests/data/test_bad_input.py, and not reproduced on demand)."""
import multiprocessing
import os
import signal

import pytest

from cgrseg.data import common
from cgrseg.errors import CGRSegError

# a hang fails here in two minutes, not after the suite's 900 s
pytestmark = pytest.mark.timeout(120)
BIG = 256 << 10   # one result fills a pipe (64 kB): workers block in the result queue's write


def tagged(task):
    return task, str(common.worker_root())


def fails_first(task):
    if task == 0:
        raise CGRSegError(f'image {task}: broken')
    return bytes(BIG)


def killed_at_5(task):
    if task == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return task


def test_every_result_once_in_task_order_from_initialised_workers(tmp_path):
    results = list(common.parallel_map(tagged, list(range(300)), 2, 'test', (None, tmp_path)))
    assert results == [(i, str(tmp_path)) for i in range(300)]
    assert multiprocessing.active_children() == []


def test_an_error_with_tasks_left_is_raised_and_every_worker_ends():
    with pytest.raises(CGRSegError, match='^image 0: broken$'):
        for _ in common.parallel_map(fails_first, list(range(400)), 2, 'test'):
            pass
    assert multiprocessing.active_children() == []


def test_a_worker_killed_with_tasks_left_is_one_error_line():
    with pytest.raises(CGRSegError) as err:
        list(common.parallel_map(killed_at_5, list(range(100)), 2, 'coco_stuff10k'))
    assert str(err.value) == ('coco_stuff10k: a conversion process ended abruptly (killed, or out of '
                              'memory); nothing was kept')
    assert multiprocessing.active_children() == []
