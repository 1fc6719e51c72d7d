"""Atomic writes: nothing under the final name on failure, ordinary permissions on success. Folders
that are replaced or written into only when they are the command's own, result files that never
replace an input, URLs with their credentials redacted. Bounded readers: outside JSON/YAML is
refused with one line before it costs time or memory."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgrseg.errors import CGRSegError
from cgrseg.io import (
    MARKER,
    MAX_DEPTH,
    JsonGuard,
    atomic_dir,
    atomic_path,
    check_output_dir,
    check_output_file,
    claim_output_dir,
    output_dir,
    parse_json,
    parse_yaml,
    read_json,
    redact,
    write_json,
)


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / 'out.json'
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('partial')
            raise RuntimeError('boom')
    assert list(tmp_path.iterdir()) == []


def test_failed_directory_leaves_the_old_one(tmp_path):
    target = claim_output_dir(tmp_path / 'd', 'tables')
    (target / 'old').write_text('kept')
    with pytest.raises(RuntimeError):
        with atomic_dir(target, 'tables') as tmp:
            (tmp / 'new').write_text('x')
            raise RuntimeError('boom')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['d']
    assert (target / 'old').read_text() == 'kept'


def test_outputs_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / 'a.json', {'x': 1})
        with atomic_dir(tmp_path / 'd', 'tables'):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / 'a.json').stat().st_mode & 0o777 == 0o644
    assert (tmp_path / 'd').stat().st_mode & 0o777 == 0o755


# ---------------------------------------------------------------- bounded readers

BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + ''.join(
    f'{c}: &{c} [{", ".join([f"*{p}"] * 9)}]\n' for p, c in zip('abcdefgh', 'bcdefghi'))


@pytest.mark.parametrize('text, problem', [
    ('{"mIoU": NaN}', 'not valid JSON (NaN is not a JSON number)'),
    ('{"mIoU": -Infinity}', 'not valid JSON (-Infinity is not a JSON number)'),
    ('{"mIoU": 1, "mIoU": 2}', "not valid JSON (key 'mIoU' appears twice in one object)"),
    ('[' * (MAX_DEPTH + 1) + ']' * (MAX_DEPTH + 1), f'JSON is nested more than {MAX_DEPTH} levels'),
    ('[' * 100_000, f'JSON is nested more than {MAX_DEPTH} levels'),   # json would recurse
    (b'{"a": "\xff"}', 'not valid JSON (not UTF-8 text: invalid start byte at byte 7)'),
    ('{"a": 1', 'not valid JSON (Expecting'),
    ('1' * 5000, 'not valid JSON (Exceeds the limit (4300 digits)'),
])
def test_parse_json_refuses_with_one_line(text, problem):
    with pytest.raises(CGRSegError) as err:
        parse_json(text, 'x.json')
    assert str(err.value).startswith(f'x.json: {problem}') and '\n' not in str(err.value)


def test_parse_json_keeps_valid_documents():
    doc = {'a': [1, 2.5, None, True, 'é\\"'], 'b': {'c': [[]] * 3}}
    assert parse_json(json.dumps(doc), 'x') == doc
    assert parse_json('[1e999]', 'x') == [float('inf')]   # a number, for the callers to judge
    assert parse_json('[' * MAX_DEPTH + ']' * MAX_DEPTH, 'x') == eval('[' * MAX_DEPTH + ']' * MAX_DEPTH)


def test_read_json_bounds_the_file_before_reading_it(tmp_path):
    big = tmp_path / 'big.json'
    big.write_text('[' + '0,' * (1 << 20) + '0]')
    with pytest.raises(CGRSegError, match=rf'^{big}: result file is {big.stat().st_size} bytes, '
                                          f'more than the {1 << 20} it may have$'):
        read_json(big, 'result file')
    assert read_json(tmp_path / 'none.json', optional=True) is None
    for special in ('/dev/zero', tmp_path):   # endless, or not a file at all
        with pytest.raises(CGRSegError, match='is not a regular file'):
            read_json(special, 'result file')


@pytest.mark.parametrize('text, problem', [
    (BILLION_LAUGHS, 'uses the YAML alias *a (line 2); aliases are refused'),
    ('a: 1\nb: 2\na: 3\n', "is not valid YAML: key 'a' appears twice in one mapping"),
    ('a: ' + '[' * (MAX_DEPTH + 1) + ']' * (MAX_DEPTH + 1), f'is nested more than {MAX_DEPTH}'),
    ('[' + ', '.join(['0'] * 30_000) + ']', 'holds more than 20000 values'),
    ('a: !!python/object/apply:os.system ["true"]', 'is not valid YAML: could not determine a '
                                                     'constructor'),
    (b'a: \xe9t\xe9', 'not valid YAML (not UTF-8 text'),
    ('a: ' + '9' * 5000, 'is not valid YAML: Exceeds the limit (4300 digits)'),
])
def test_parse_yaml_refuses_with_one_line(text, problem):
    with pytest.raises(CGRSegError) as err:
        parse_yaml(text, 'p.yaml', 'params')
    assert problem in str(err.value) and str(err.value).startswith('p.yaml: ')
    assert '\n' not in str(err.value)


def test_load_yaml_refuses_a_billion_laughs_in_bounded_memory(tmp_path):
    """The old reader accepted this document (PyYAML shares aliased nodes), and the params schema
    then walked the 9^8 strings of tables.formats (uniqueItems) for hours."""
    path = tmp_path / 'params.yaml'
    path.write_text(BILLION_LAUGHS + 'tables: {formats: *i}\n')
    probe = ('import resource, sys\n'
             'resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n'
             'from cgrseg.cli import main\n'
             'sys.exit(main(sys.argv[1:]))\n')
    proc = subprocess.run([sys.executable, '-c', probe, 'diff', '--params', path, '--metrics',
                           tmp_path / 'm.json', '--out', tmp_path / 'diff'], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f'cgrseg diff: error: {path}: params uses the YAML alias *a (line 2); aliases are refused '
        '(they can expand without bound)'], proc.stderr[-2000:]
    assert not (tmp_path / 'diff.md').exists()


def test_yaml_keeps_plain_documents_and_anchors_without_aliases():
    assert parse_yaml('a: &x 1\nb: [1, 2]\nc: {d: null}\n', 'x') == {'a': 1, 'b': [1, 2],
                                                                   'c': {'d': None}}


def reference_bounds(data):
    """(deepest nesting, longest string or bare token in bytes), by walking the text byte by byte."""
    text, depth, deepest, longest, i = data.decode('latin-1'), 0, 0, 0, 0
    while i < len(text):
        if text[i] == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == '\\' else 1
            longest, i = max(longest, j - i - 1), j + 1
            continue
        if text[i] in '{[':
            depth += 1
            deepest = max(deepest, depth)
        elif text[i] in '}]':
            depth -= 1
        elif text[i] not in ',: \t\r\n':
            j = i
            while j < len(text) and text[j] not in '{}[],:" \t\r\n':
                j += 1
            longest, i = max(longest, j - i), j
            continue
        i += 1
    return deepest, longest


def fits(data, cuts, max_depth, max_token):
    guard = JsonGuard('x', max_depth=max_depth, max_token=max_token)
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    try:
        for start, end in zip(bounds, bounds[1:]):
            guard.check(data[start:end])
    except CGRSegError:
        return False
    return True


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 30, 10 ** 30) | st.floats(allow_nan=False)
    | st.text(alphabet='ab\\"\n\té', max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text('k\\"', max_size=4), inner,
                                                                 max_size=4),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.booleans(), st.lists(st.integers(0, 10 ** 6), max_size=12))
def test_json_guard_matches_a_byte_by_byte_reference(value, ascii_only, cuts):
    """Exactly at the text's own depth and token length the guard lets it through, one less and it
    refuses, wherever the chunks are cut (inside strings, escapes, numbers)."""
    data = json.dumps(value, ensure_ascii=ascii_only).encode()
    depth, longest = reference_bounds(data)
    assert fits(data, cuts, depth, longest)
    if depth:
        assert not fits(data, cuts, depth - 1, longest)
    if longest:
        assert not fits(data, cuts, depth, longest - 1)


# -- never delete what the command did not create ----------------------------------------------

def test_a_folder_is_replaced_only_when_it_is_the_commands_own(tmp_path):
    target = tmp_path / 'tables'
    with atomic_dir(target, 'tables') as tmp:
        (tmp / 'first').write_text('1')
    assert json.loads((target / MARKER).read_text()) == {'written_by': 'cgrseg', 'command': 'tables'}
    with atomic_dir(target, 'tables') as tmp:      # its own earlier output: replaced
        (tmp / 'second').write_text('2')
    assert sorted(p.name for p in target.iterdir()) == [MARKER, 'second']
    (target / MARKER).unlink()
    with pytest.raises(CGRSegError, match='holds files that `cgrseg tables` did not write'):
        with atomic_dir(target, 'tables'):
            pytest.fail('ran into a folder of someone else')
    assert (target / 'second').read_text() == '2'


def test_another_commands_folder_is_refused(tmp_path):
    theirs = output_dir(tmp_path / 'synth', 'synth')
    (theirs / 'archive.zip').write_bytes(b'x')
    with pytest.raises(CGRSegError, match='did not write'):
        with atomic_dir(theirs, 'tables'):
            pass
    assert (theirs / 'archive.zip').exists()


def test_an_empty_folder_is_taken(tmp_path):
    (tmp_path / 'empty').mkdir()
    with atomic_dir(tmp_path / 'empty', 'tables') as tmp:
        (tmp / 'x').write_text('x')
    assert (tmp_path / 'empty' / 'x').exists()


@pytest.mark.parametrize('where', ['.', '..', '/', '~'])
def test_root_home_and_the_current_directory_are_refused(tmp_path, monkeypatch, where):
    work = tmp_path / 'work'
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    (tmp_path / 'home').mkdir()
    path = Path(where).expanduser()
    with pytest.raises(CGRSegError, match='refusing to write into it'):
        check_output_dir(path, 'tables')


def test_a_folder_holding_an_input_is_refused(tmp_path):
    metrics = tmp_path / 'results' / 'metrics.json'
    metrics.parent.mkdir()
    metrics.write_text('{}')
    for out in (tmp_path, tmp_path / 'results'):
        with pytest.raises(CGRSegError, match='holds an input of this command'):
            check_output_dir(out, 'tables', inputs=[metrics])
    check_output_dir(tmp_path / 'results' / 'tables', 'tables', inputs=[metrics])


def test_a_file_output_never_replaces_an_input_a_folder_or_a_device(tmp_path):
    config = tmp_path / 'config.py'
    config.write_text('x = 1')
    with pytest.raises(CGRSegError, match='is an input of this command'):
        check_output_file(tmp_path / '.' / 'config.py', [config])
    with pytest.raises(CGRSegError, match='is a folder'):
        check_output_file(tmp_path, [config])
    with pytest.raises(CGRSegError, match='not a regular file'):
        check_output_file('/dev/null')
    (tmp_path / 'file').write_text('')
    with pytest.raises(CGRSegError, match='is a file, not a folder'):
        check_output_file(tmp_path / 'file' / 'out.json')
    check_output_file(tmp_path / 'new' / 'out.json', [config])


def test_a_read_only_destination_is_one_line(read_only):
    with pytest.raises(CGRSegError, match='is read-only'):
        check_output_file(read_only / 'out.json')
    with pytest.raises(CGRSegError, match='is read-only'):
        check_output_dir(read_only / 'tables', 'tables')


# -- no secrets in output ------------------------------------------------------------------------

@pytest.mark.parametrize('text,secret', [
    ('https://alice:s3cret@mirror.example.org/ADE.zip', 's3cret'),
    ('https://alice:p@ss@mirror.example.org/ADE.zip', 'p@ss'),
    ('https://h/ADE.zip?token=abc123&x=1', 'abc123'),
    ('https://h/a.zip?X-Amz-Credential=AKIA/2024&X-Amz-Signature=deadbeef', 'deadbeef'),
    ('https://h/a.zip?X-Amz-Credential=AKIA99&X-Amz-Signature=deadbeef', 'AKIA99'),
    ("Max retries exceeded with url: /a.zip?access_token=tok42 (Caused by x)", 'tok42'),
    ('https://h/a.zip?sig=zz9&key=kk8#password=pw7', 'zz9'),
])
def test_redact_removes_credentials(text, secret):
    assert secret not in redact(text)
    assert '***' in redact(text)


def test_redact_keeps_what_is_not_secret():
    text = 'https://mirror.example.org/data/ADE.zip?download=1: HTTP 404 Not Found'
    assert redact(text) == text
    assert redact('file:///tmp/a b/c.zip') == 'file:///tmp/a b/c.zip'
