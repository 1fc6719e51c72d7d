"""The gate in front of every stage (cgrseg/mmseg_config.py): a config a user may have edited either
loads and passes ``check_config``, or fails with one line that names the file and the broken key
(survivors of the `configs` mutation module). The configs are small mmcv Configs or text files: no
model is built."""
import copy
import sys

import pytest

pytest.importorskip('mmseg')

from mmcv import Config  # noqa: E402

from cgrseg.errors import CGRSegError  # noqa: E402
from cgrseg.mmseg_config import (EVALUATE, MODEL, TRAIN, _fromfile, check_config, first_line,  # noqa: E402
                                 load_config, parse_options)
from conftest import exactly  # noqa: E402
from reference import ade20k_config  # noqa: E402

HEAD = dict(type='FCNHead', num_classes=150)
GOOD = dict(model=dict(type='EncoderDecoder', backbone=dict(type='ResNetV1c'), decode_head=dict(HEAD),
                       auxiliary_head=dict(HEAD)),
            data=dict(train=dict(type='ADE20KDataset'), test=dict(type='ADE20KDataset')),
            runner=dict(type='IterBasedRunner', max_iters=160000))
GONE = object()


def config(**changes):
    """GOOD with ``changes`` ('model__backbone': value, or GONE to drop the key) as an mmcv Config."""
    parts = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        *parents, last = dotted.split('__')
        node = parts
        for key in parents:
            node = node[key]
        if value is GONE:
            del node[last]
        else:
            node[last] = value
    return Config(parts)


def fails(cfg, path, needs, message):
    """check_config raises exactly ``<path>: <message>``."""
    with pytest.raises(CGRSegError, match=exactly(f'{path}: {message}')):
        check_config(cfg, path, needs)


def test_good_configs_pass_each_gate(tmp_path):
    path = tmp_path / 'c.py'
    for needs in (MODEL, TRAIN, EVALUATE):
        check_config(config(), path, needs)
    repository = Config.fromfile(str(ade20k_config('t')))
    check_config(repository, ade20k_config('t'), TRAIN)
    check_config(repository, ade20k_config('t'), EVALUATE)


NOT_REGISTERED = 'is not a registered mmseg type'


@pytest.mark.parametrize('changes,message', [
    (dict(model=GONE), 'config has no `model`'),
    (dict(model=['EncoderDecoder']), '`model` must be a dict, not list'),
    (dict(model=3), '`model` must be a dict, not int'),
    (dict(model__type=GONE), '`model` has no type'),
    (dict(model__type='Nope'), f"`model.type` 'Nope' {NOT_REGISTERED}"),
    (dict(model__backbone=dict(type='Nope')), f"`model.backbone.type` 'Nope' {NOT_REGISTERED}"),
    (dict(model__backbone='ResNetV1c'), '`model.backbone` has no type'),
    (dict(model__decode_head=dict(type='Nope', num_classes=150)), f"`model.decode_head.type` 'Nope' {NOT_REGISTERED}"),
    (dict(model__decode_head='FCNHead'), '`model.decode_head` has no type'),
    (dict(model__auxiliary_head=dict(type='Nope', num_classes=150)),
     f"`model.auxiliary_head.type` 'Nope' {NOT_REGISTERED}"),
    (dict(model__decode_head__num_classes=0), '`model.decode_head.num_classes` must be a positive integer, not 0'),
    (dict(model__auxiliary_head__num_classes=-1),
     '`model.auxiliary_head.num_classes` must be a positive integer, not -1'),
    (dict(model__decode_head__num_classes=150.0),
     '`model.decode_head.num_classes` must be a positive integer, not 150.0'),
    (dict(model__decode_head__num_classes=True),
     '`model.decode_head.num_classes` must be a positive integer, not True'),
    (dict(model__decode_head__num_classes='150'),
     "`model.decode_head.num_classes` must be a positive integer, not '150'"),
    (dict(model__decode_head__num_classes=GONE),
     '`model.decode_head.num_classes` must be a positive integer, not None'),
    (dict(model__decode_head=[HEAD, dict(HEAD, num_classes=150.0)]),
     '`model.decode_head[1].num_classes` must be a positive integer, not 150.0'),
    (dict(model__auxiliary_head=[HEAD, dict(type='Nope', num_classes=150)]),
     f"`model.auxiliary_head[1].type` 'Nope' {NOT_REGISTERED}"),
    (dict(data=GONE), 'config has no `data`'),
    (dict(data=[]), '`data` must be a dict, not list'),
    (dict(data__train=GONE), 'config has no `data.train`'),
    (dict(data__train__type=GONE), '`data.train` has no type'),
    (dict(data__train=dict(type='Nope')), f"`data.train.type` 'Nope' {NOT_REGISTERED}"),
    (dict(data__train=dict(type='RepeatDataset', times=2, dataset=dict(type='Nope'))),
     f"`data.train.type` 'Nope' {NOT_REGISTERED}"),
    (dict(data__train=dict(type='RepeatDataset', times=2, dataset=dict(times=2))), '`data.train` has no type'),
    (dict(data__train=[dict(type='ADE20KDataset'), dict(type='Nope')]),
     f"`data.train[1].type` 'Nope' {NOT_REGISTERED}"),
    (dict(data__train=[dict(type='ADE20KDataset'), 'ADE20KDataset']), '`data.train[1]` has no type'),
    (dict(runner=GONE), 'config has no `runner`'),
    (dict(runner='IterBasedRunner'), '`runner` must be a dict, not str'),
    (dict(runner__max_iters=GONE), 'config has no `runner.max_iters`'),
    (dict(runner__max_iters=0), '`runner.max_iters` must be a positive integer, not 0'),
    (dict(runner__max_iters=160000.0), '`runner.max_iters` must be a positive integer, not 160000.0'),
    (dict(runner__max_iters='160k'), "`runner.max_iters` must be a positive integer, not '160k'"),
])
def test_a_broken_train_config_names_the_file_and_the_key(tmp_path, changes, message):
    fails(config(**changes), tmp_path / 'c.py', TRAIN, message)


def test_evaluate_needs_the_test_split_and_model_needs_neither_data_nor_runner(tmp_path):
    path = tmp_path / 'c.py'
    fails(config(data__test=GONE), path, EVALUATE, 'config has no `data.test`')
    check_config(config(data__test=GONE), path, TRAIN)
    check_config(config(data=GONE, runner=GONE), path, MODEL)


def test_one_class_one_iteration_and_a_model_without_backbone_or_auxiliary_head_pass(tmp_path):
    check_config(config(model__decode_head__num_classes=1, model__auxiliary_head__num_classes=1,
                        runner__max_iters=1), tmp_path / 'c.py', TRAIN)
    check_config(config(model__backbone=GONE, model__auxiliary_head=GONE), tmp_path / 'c.py', MODEL)
    check_config(config(data__train=dict(type='RepeatDataset', times=2, dataset=dict(type='ADE20KDataset'))),
                 tmp_path / 'c.py', TRAIN)


def test_an_unknown_requirement_is_a_programming_error():
    with pytest.raises(ValueError, match=r"^unknown config requirement 'schedule'$"):
        check_config(config(), 'c.py', ('model', 'schedule'))


# ---------------------------------------------------------------- loading the file

def written(tmp_path, text, name='c.py'):
    path = tmp_path / name
    path.write_text(text)
    return path


def load_fails(path, message, **kwargs):
    with pytest.raises(CGRSegError, match=exactly(f'{path}: {message}')):
        load_config(path, **kwargs)


def test_a_config_that_cannot_be_loaded_is_one_line_naming_the_file(tmp_path):
    load_fails(tmp_path / 'missing.py', 'no such config file')
    syntax = written(tmp_path, 'x = = 1\n', 'syntax.py')
    load_fails(syntax, f'cannot load config: There are syntax errors in config file {syntax}: '
                       'invalid syntax (<unknown>, line 1)')
    load_fails(written(tmp_path, "_base_ = ['nowhere.py']\n"),
               f'cannot load config: file "{tmp_path / "nowhere.py"}" does not exist')
    load_fails(written(tmp_path, "raise RuntimeError('first\\nsecond')\n"), 'cannot load config: first')
    # mmcv raises a bare ImportError: the line then names the exception
    load_fails(written(tmp_path, "custom_imports = dict(imports=['no_such_module_xyz'], allow_failed_imports=False)\n"),
               'cannot load config: ImportError')


def test_loaded_configs_pass_through_the_gate_and_bad_options_name_the_file(tmp_path):
    path = written(tmp_path, "model = dict(type='EncoderDecoder')\n")
    assert load_config(path, needs=('model',)).model == dict(type='EncoderDecoder')
    load_fails(path, 'config has no `runner`', needs=('model', 'runner'))
    load_fails(path, "bad --cfg-options {'model.type.x': 1}: type={'x': 1} in child config cannot inherit from "
                     "base because type is a dict in the child config but is of type <class 'str'> in base "
                     "config. You may set `_delete_=True` to ignore the base config.",
               options={'model.type.x': 1})


def test_loading_a_failing_config_reports_no_unlink_error_and_keeps_the_unraisable_hook(tmp_path, capfd, monkeypatch):
    """mmcv's temporary copy outlives its directory when loading fails; Python's "Exception ignored"
    report of that failed unlink is silenced while loading, and the caller's hook is put back."""
    seen = []
    hook = seen.append
    monkeypatch.setattr(sys, 'unraisablehook', hook)
    for text in ('x = = 1\n', "raise RuntimeError('boom')\n"):
        capfd.readouterr()
        cfg, error = _fromfile(written(tmp_path, text))
        assert cfg is None and error
        assert 'Exception ignored' not in capfd.readouterr().err
        assert sys.unraisablehook is hook and seen == []
    # the config's own code runs under the silent hook: it reports nothing, returns None like Python's own
    cfg, error = _fromfile(written(tmp_path, 'import sys\nreported = sys.unraisablehook(object())\n'))
    assert error is None and cfg.reported is None and seen == [] and capfd.readouterr().err == ''
    assert sys.unraisablehook is hook


def test_first_line_is_the_messages_first_line_or_the_exceptions_name():
    assert first_line(ValueError('  first\nsecond  ')) == 'first'
    assert first_line(ImportError()) == 'ImportError'
    assert first_line(KeyError(' ')) == "' '"          # str(KeyError) is the key's repr
    assert first_line(OSError('')) == 'OSError'


def test_an_option_value_may_contain_an_equals_sign():
    assert parse_options(['data.train.split=a=b', 'x==']) == {'data.train.split': 'a=b', 'x': '='}
