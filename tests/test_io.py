"""Atomic writes: nothing under the final name on failure, ordinary permissions on success."""
import os

import pytest

from cgrseg.io import atomic_dir, atomic_path, write_json


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / 'out.json'
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('partial')
            raise RuntimeError('boom')
    assert list(tmp_path.iterdir()) == []


def test_failed_directory_leaves_the_old_one(tmp_path):
    target = tmp_path / 'd'
    target.mkdir()
    (target / 'old').write_text('kept')
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / 'new').write_text('x')
            raise RuntimeError('boom')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['d']
    assert (target / 'old').read_text() == 'kept'


def test_outputs_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / 'a.json', {'x': 1})
        with atomic_dir(tmp_path / 'd'):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / 'a.json').stat().st_mode & 0o777 == 0o644
    assert (tmp_path / 'd').stat().st_mode & 0o777 == 0o755
