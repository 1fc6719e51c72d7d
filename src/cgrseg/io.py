"""Atomic output helpers (write to a temporary sibling, then rename into place), the checks that keep
a command from overwriting its inputs or deleting what it did not create (docs/security.md), and
bounded readers of the JSON and YAML files that come from outside (result files, manifests, params,
data files)."""
import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# Written into every folder a command owns; a folder is replaced or written into only when it is
# new, empty, or carries this marker naming the same command.
MARKER = '.cgrseg-output.json'


def _error(message):
    from cgrseg.errors import CGRSegError
    return CGRSegError(message)


def _protected(folder):
    """Why ``folder`` (resolved) must never be an output folder, or None."""
    here = Path.cwd().resolve()
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError):   # no home directory
        home = None
    if folder == Path(folder.anchor):
        return 'the file system root'
    if folder == home:
        return 'your home directory'
    if folder == here:
        return 'the current directory'
    if folder in here.parents:
        return 'a folder above the current directory'
    return None


def _writable(path):
    """Raise when the nearest existing folder at or above ``path`` cannot be written."""
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        raise _error(f'{path}: {folder} is a file, not a folder')
    if not os.access(folder, os.W_OK):
        raise _error(f'{path}: cannot write: {folder} is read-only')


def check_output_file(path, inputs=()):
    """One error line when ``path`` cannot be written as a result file: it is a folder or a device,
    it is one of the command's ``inputs``, or its folder is read-only."""
    path = Path(path)
    if path.is_dir():
        raise _error(f'{path}: is a folder; give a file name for the output')
    if path.exists() and not path.is_file():
        raise _error(f'{path}: is not a regular file; refusing to replace it')
    for source in inputs:
        if source is not None and path.resolve() == Path(source).resolve():
            raise _error(f'{path}: is an input of this command ({source}); refusing to overwrite it')
    _writable(path.parent)


def _owner(folder):
    try:
        with open(folder / MARKER, 'rb') as f:
            return json.loads(f.read(4096)).get('command')
    except (OSError, ValueError, AttributeError):
        return None


def check_output_dir(path, command, inputs=(), recognised=None):
    """One error line unless ``path`` may be written by ``cgrseg command``: not the root, home or
    current directory (or above it), no input of the command inside it, and, if it exists, a folder
    that is empty or this command's own earlier output: its marker, or ``recognised(path)`` true."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise _error(f'{path}: is a file, not a folder')
    folder = path.resolve()
    why = _protected(folder)
    if why:
        raise _error(f'{path}: is {why}; refusing to write into it: name a folder of its own')
    for source in inputs:
        if source is not None and (folder == Path(source).resolve()
                                   or folder in Path(source).resolve().parents):
            raise _error(f'{path}: holds an input of this command ({source}); refusing to write '
                         'into it: name a folder of its own')
    if path.is_dir() and _owner(path) != command and any(path.iterdir()) \
            and not (recognised and recognised(path)):
        raise _error(f'{path}: holds files that `cgrseg {command}` did not write (no {MARKER} of '
                     'its own); refusing to touch them: empty it or name a new folder')
    _writable(path)


def claim_output_dir(path, command):
    """Create ``path`` if needed and mark it as ``cgrseg command``'s output (after check_output_dir)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if _owner(path) != command:
        write_text(path / MARKER, json.dumps({'written_by': 'cgrseg', 'command': command}) + '\n')
    return path


def output_dir(path, command, inputs=(), recognised=None):
    """check_output_dir, then claim_output_dir: the folder a command writes its files into."""
    check_output_dir(path, command, inputs, recognised)
    return claim_output_dir(path, command)


@contextlib.contextmanager
def atomic_dir(path, command, inputs=()):
    """Yield a temporary directory next to ``path``; it replaces ``path`` only on success.

    ``path`` must pass ``check_output_dir``: an existing folder is replaced only if it is empty or
    marked as ``cgrseg command``'s own; the new one carries the mark.
    """
    path = Path(path)
    check_output_dir(path, command, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        claim_output_dir(tmp, command)
        yield tmp
        check_output_dir(path, command, inputs)  # again: it may have changed meanwhile
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# Credentials in URLs: the userinfo of any scheme://user:password@host, and query or fragment values
# whose name says secret (token, access_token, key, sig, X-Amz-Signature, password, ...).
_USERINFO = re.compile(r'(?<=://)[^/\s?#\'"]*@')
_SECRET_VALUE = re.compile(r'(?i)([?&;#][\w.-]*(?:token|key|sig|password|passwd|pwd|secret|'
                           r'credential|auth)[\w.-]*=)[^&;#\s\'"]*')


def redact(text):
    """``text`` with the credentials of every URL in it replaced by ``***``; applied to every
    message, log line and record that may carry a URL (docs/security.md)."""
    return _SECRET_VALUE.sub(r'\1***', _USERINFO.sub('***@', str(text)))


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + '\n')


def write_text(path, text):
    """Write ``text`` atomically; a failed write (full disk, no permission) is one ``CGRSegError``
    naming ``path`` and leaves neither ``path`` nor a temporary file behind."""
    write_with(path, lambda tmp: tmp.write_text(text))


def write_with(path, write):
    """``write(tmp)`` then rename ``tmp`` onto ``path``; a failure is one line (as write_text)."""
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as RuntimeError
        raise _error(f'{path}: cannot write: {getattr(err, "strerror", None) or err}') from None


def file_digests(path, algorithms, chunk=1 << 20):
    """Hex digests of the file at ``path`` for each hashlib algorithm name, in one pass."""
    hashes = {name: hashlib.new(name) for name in set(algorithms)}
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            for h in hashes.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashes.items()}


def sha256_file(path):
    return file_digests(path, ['sha256'])['sha256']


# ---------------------------------------------------------------- bounded readers

# Every JSON/YAML file we read is a few kB (metrics.json with 171 per-class IoUs: 5 kB; params.yaml:
# 5 kB). Parsed, JSON takes up to ~25 times its size ('[{},{},...]') and PyYAML ~250 times, so
# the limits below bound memory; the Pascal Context annotation JSON is streamed instead
# (cgrseg.data.pascal_context). Aliases are refused: *a expands to what &a holds (billion laughs).
MAX_JSON_BYTES = 1 << 20
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 20_000
MAX_DEPTH = 64


def read_bounded(path, what, limit):
    """The bytes of the regular file at ``path``, refused with one line if larger than ``limit``."""
    from cgrseg.errors import CGRSegError
    path = Path(path)
    try:
        with open(path, 'rb') as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise CGRSegError(f'{path}: {what} is not a regular file')
            data = f.read(limit + 1)   # a file growing while we read it is still bounded
    except FileNotFoundError:
        raise CGRSegError(f'{path}: {what} not found') from None
    except IsADirectoryError:
        raise CGRSegError(f'{path}: {what} is not a regular file') from None
    except OSError as err:
        raise CGRSegError(f'{path}: cannot read {what}: {err.strerror}') from None
    if len(data) > limit:
        raise CGRSegError(f'{path}: {what} is {max(info.st_size, len(data))} bytes, more than the '
                          f'{limit} it may have')
    return data


def _utf8(data, where, kind):
    from cgrseg.errors import CGRSegError
    if isinstance(data, str):   # command-line text: undecodable bytes are kept as surrogates
        data = data.encode('utf-8', 'surrogateescape')
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as err:
        raise CGRSegError(f'{where}: not valid {kind} (not UTF-8 text: {err.reason} at byte '
                          f'{err.start})') from None


def read_json(path, what='JSON file', limit=MAX_JSON_BYTES, optional=False):
    """The JSON document in the file at ``path`` (see :func:`parse_json`); None for a missing file
    when ``optional``."""
    if optional and not os.path.lexists(path):
        return None
    return parse_json(read_bounded(path, what, limit), path, limit)


def parse_json(data, where, limit=MAX_JSON_BYTES):
    """A JSON document from bytes or text. More than ``limit`` bytes, non-UTF-8 bytes, nesting
    deeper than MAX_DEPTH, NaN/Infinity (not JSON numbers) and a key twice in one object are each
    one ``CGRSegError`` line naming ``where``."""
    from cgrseg.errors import CGRSegError
    size = len(data)
    if size > limit:
        raise CGRSegError(f'{where}: {size} bytes of JSON, more than the {limit} it may have')
    text = _utf8(data, where, 'JSON')
    JsonGuard(where, max_token=limit).check_all(text.encode())
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except ValueError as err:
        raise CGRSegError(f'{where}: not valid JSON ({err})') from None


def _reject_constant(name):
    raise ValueError(f'{name} is not a JSON number')


def _unique_keys(pairs):
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f'key {twice!r} appears twice in one object')
    return doc


class JsonGuard:
    """Checks a JSON text chunk by chunk, before a parser sees it, for the two things a parser
    holds in memory whole: a token (a string or a number) and the chain of open containers.

    ``check(chunk)`` raises a ``CGRSegError`` when a token runs longer than ``max_token`` bytes or
    the nesting gets deeper than ``max_depth``. Exact for every valid prefix of a JSON text; after
    a syntax error it may misjudge, but the parser stops at that error anyway."""

    def __init__(self, where, max_depth=MAX_DEPTH, max_token=MAX_JSON_BYTES):
        import numpy as np
        self.where, self.max_depth, self.max_token = where, max_depth, max_token
        # carried from one chunk to the next: inside a string?, the backslashes that ended the
        # chunk, the open containers, and the length of the token still running
        self.in_string, self.backslashes, self.depth, self.run = False, 0, 0, 0
        self.breaks = np.zeros(256, bool)   # bytes that end a bare token (and the quote)
        self.breaks[list(b'{}[],: \t\r\n')] = True
        self.nesting = np.zeros(256, np.int8)
        self.nesting[list(b'{[')], self.nesting[list(b'}]')] = 1, -1

    def check_all(self, data, chunk=256 << 10):
        for start in range(0, len(data), chunk):
            self.check(data[start:start + chunk])

    def check(self, chunk):
        """Works on the positions of quotes and structural bytes only (few, in the base64-like RLE
        strings that make up most of a large annotation file), not on every byte."""
        import numpy as np
        b = np.frombuffer(chunk, np.uint8)
        if not b.size:
            return
        quotes = self._quotes(b)
        opening = (np.arange(len(quotes)) + self.in_string) % 2 == 0
        ends_inside = (self.in_string + len(quotes)) % 2 == 1
        breaks = np.flatnonzero(self.breaks[b])   # structure and whitespace, in strings or not
        breaks = breaks[(np.searchsorted(quotes, breaks) + self.in_string) % 2 == 0]
        level = self.depth + np.cumsum(self.nesting[b[breaks]], dtype=np.int64)
        if level.max(initial=0) > self.max_depth:
            self._fail(f'is nested more than {self.max_depth} levels deep')
        strings, string_tail = self._strings(quotes, b.size, ends_inside)
        bare, bare_tail = self._bare_tokens(breaks, quotes, opening, b.size, ends_inside)
        if max(strings, string_tail, bare, bare_tail) > self.max_token:
            self._fail(f'holds a string or number of more than {self.max_token} bytes')
        trailing = len(chunk) - len(bytes(chunk).rstrip(b'\\'))
        self.backslashes = trailing + (self.backslashes if trailing == b.size else 0)
        self.depth = int(level[-1]) if len(level) else self.depth
        self.in_string, self.run = ends_inside, string_tail if ends_inside else bare_tail

    def _quotes(self, b):
        """Positions of the quotes that open or close a string: those not escaped by an odd run
        of backslashes (a run that may have begun in the previous chunk)."""
        import numpy as np
        quotes = np.flatnonzero(b == 34)
        slashes = np.flatnonzero(b == 92)
        if not len(quotes) or not (len(slashes) or self.backslashes):
            return quotes
        starts = np.ones(len(slashes), bool)
        starts[1:] = slashes[1:] != slashes[:-1] + 1
        run_start = np.maximum.accumulate(np.where(starts, slashes, 0))   # of each slash's run
        after = np.zeros(len(quotes), bool)
        after[quotes > 0] = b[quotes[quotes > 0] - 1] == 92
        found = np.searchsorted(slashes, quotes[after] - 1)
        first = run_start[found] if len(slashes) else np.zeros(0, np.int64)
        escapes = np.zeros(len(quotes), np.int64)
        escapes[after] = quotes[after] - first + np.where(first == 0, self.backslashes, 0)
        escapes[quotes == 0] = self.backslashes
        return quotes[escapes % 2 == 0]

    def _strings(self, quotes, size, ends_inside):
        """(longest string closed in this chunk, length so far of the one open at its end)."""
        import numpy as np
        marks = quotes.astype(np.int64)
        if self.in_string:   # the string began in an earlier chunk: a virtual opening quote
            marks = np.concatenate(([-1 - self.run], marks))
        pairs = len(marks) // 2
        lengths = marks[1:2 * pairs:2] - marks[0:2 * pairs:2] - 1
        return int(lengths.max(initial=0)), (size - 1 - int(marks[-1]) if ends_inside else 0)

    def _bare_tokens(self, breaks, quotes, opening, size, ends_inside):
        """(longest number/literal in this chunk, length of the one running at its end): the gaps
        between boundaries (structure outside strings, quotes) that do not open a string."""
        import numpy as np
        bounds = np.concatenate((breaks, quotes))
        starts_string = np.concatenate((np.zeros(len(breaks), bool), opening))
        order = np.argsort(bounds, kind='stable')
        bounds, starts_string = bounds[order], starts_string[order]
        gaps = (bounds[1:] - bounds[:-1] - 1)[~starts_string[:-1]]
        head = 0 if self.in_string else (int(bounds[0]) if len(bounds) else size) + self.run
        if ends_inside:
            tail = 0
        else:
            tail = size - 1 - int(bounds[-1]) if len(bounds) else head
        return max(int(gaps.max(initial=0)), head), tail

    def _fail(self, problem):
        from cgrseg.errors import CGRSegError
        raise CGRSegError(f'{self.where}: JSON {problem}')


class GuardedReader:
    """A binary file read through a :class:`JsonGuard` (for ijson): the guard checks ``chunk``
    bytes at a time (it is fast on large chunks), the parser gets them in the sizes it asks for
    (ijson builds a batch of events per read: small reads keep that batch small)."""

    def __init__(self, f, guard, chunk=256 << 10):
        self.f, self.guard, self.chunk = f, guard, chunk
        self.pending, self.position = b'', 0

    def read(self, size=-1):
        if self.position == len(self.pending):
            self.pending, self.position = self.f.read(self.chunk), 0
            self.guard.check(self.pending)
        size = len(self.pending) if size is None or size < 0 else size
        data = self.pending[self.position:self.position + size]
        self.position += len(data)
        return data


def load_yaml(path, what, limit=MAX_YAML_BYTES):
    """Parse a YAML mapping; every expected failure is a one-line ``CGRSegError`` naming the file."""
    from cgrseg.errors import CGRSegError
    data = parse_yaml(read_bounded(path, what, limit), path, what)
    if not isinstance(data, dict):
        raise CGRSegError(f'{path}: {what} must be a YAML mapping')
    return data


def parse_yaml(data, where, what='YAML'):
    """A YAML document from bytes or text, safely: at most MAX_YAML_NODES values nested at most
    MAX_DEPTH deep, no aliases, no key twice in one mapping, UTF-8 only."""
    import yaml
    from cgrseg.errors import CGRSegError
    text = _utf8(data, where, 'YAML')
    try:
        _check_yaml_events(text, where, what)
        return yaml.load(text, Loader=_yaml_loader())
    except (yaml.YAMLError, ValueError, OverflowError) as err:   # ValueError: int('9' * 5000)
        raise CGRSegError(f'{where}: {what} is not valid YAML: {" ".join(str(err).split())}') from None


def _check_yaml_events(text, where, what):
    """Walk the parser's events (a stream: little memory) before anything is built from them."""
    import yaml
    from cgrseg.errors import CGRSegError
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_yaml_loader()):
        if isinstance(event, yaml.AliasEvent):
            raise CGRSegError(f'{where}: {what} uses the YAML alias *{event.anchor} (line '
                              f'{event.start_mark.line + 1}); aliases are refused (they can expand '
                              'without bound)')
        if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            nodes += 1
            if nodes > MAX_YAML_NODES:
                raise CGRSegError(f'{where}: {what} holds more than {MAX_YAML_NODES} values')
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise CGRSegError(f'{where}: {what} is nested more than {MAX_DEPTH} levels deep')
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


@functools.lru_cache(maxsize=None)
def _yaml_loader():
    import yaml

    class UniqueKeyLoader(getattr(yaml, 'CSafeLoader', yaml.SafeLoader)):
        """PyYAML's safe loader (libyaml's when present) that refuses a key given twice: plain
        PyYAML keeps the last one silently."""

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in getattr(node, 'value', ()):
                if key_node.tag == 'tag:yaml.org,2002:merge':
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    twice = key in seen
                    seen.add(key)
                except TypeError:   # unhashable: PyYAML reports it
                    continue
                if twice:
                    raise yaml.constructor.ConstructorError(
                        None, None, f'key {key!r} appears twice in one mapping', key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader
