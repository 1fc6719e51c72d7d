"""``cgrseg doctor``: what a run needs before it spends GPU time, checked in seconds.

Every problem is one line naming the file or key concerned; any problem means exit 2. Nothing is
written (mmcv's config parser alone makes, and removes, a temporary copy of each config in $TMPDIR).

Checks: installed versions against envs/requirements.lock and scripts/setup.sh's mmcv-full and
mmsegmentation pins; CGRSeg's types registered in mmseg and every config the preset trains
loadable; CUDA devices >= the preset's ``gpus`` and NCCL when ``gpus`` > 1 (on SLURM instead: the
partitions exist and the GPU partition's nodes have that many GPUs); free disk for each dataset's
archives and prepared data (sizes in configs/data/sources.yaml); the ImageNet backbone weights and
their recorded sha256; write access to every output root. Inputs (params, lock file, records,
sinfo output) are untrusted: read with size limits and checked before use.
"""
import dataclasses
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from cgrseg import layout
from cgrseg.errors import CGRSegError

LOCK = 'envs/requirements.lock'
SETUP = 'scripts/setup.sh'
SOURCES = 'configs/data/sources.yaml'
SLURM_PROFILE = 'profiles/slurm/config.yaml'
# the two packages scripts/setup.sh installs after the lock (mmcv-full is built against torch)
SETUP_PINS = ('mmcv-full', 'mmsegmentation')
MAX_TEXT = 1 << 20        # a lock file or setup script larger than this is not ours
MAX_RECORD = 64 << 10     # a weights record (`cgrseg pretrained`) is a few hundred bytes
SINFO_TIMEOUT = 10
_PIN = re.compile(r'([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)')
_SHA256 = re.compile(r'[0-9a-f]{64}')
MB = 1 << 20


@dataclasses.dataclass
class Plan:
    """What the checks look at: the effective params and where the pipeline's files live."""
    config: dict
    where: str = 'params.yaml'
    lock: str = LOCK
    setup: str = SETUP
    sources: str = SOURCES
    executor: str = 'local'
    partitions: tuple = ()


def run_checks(plan):
    """Every problem as a line (empty: ready), and a line per check that passed."""
    from cgrseg import params as params_schema
    lines = params_schema.problems(plan.config, plan.where)
    if lines:          # the other checks need sane values
        return lines, []
    plan = dataclasses.replace(plan, config=params_schema.with_defaults(plan.config, params_schema.schema()))
    problems, passed = [], []
    for check in (packages, registry, devices, disk, weights, outputs):
        found, note = check(plan)
        problems += found
        if not found:
            passed.append(f'ok  {check.__name__}: {note}')
    return problems, passed


# ---- packages ---------------------------------------------------------------------------------

def read_small(path, what, limit):
    """At most ``limit`` bytes of ``path``, or None when it is larger; one line if it cannot be read."""
    try:
        with open(path, 'rb') as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise CGRSegError(f'{path}: cannot read {what}: {err.strerror}') from None
    return data if len(data) <= limit else None


def read_text(path, what):
    """A small text file of the repository, read with a size limit; one line for any failure."""
    data = read_small(path, what, MAX_TEXT)
    if data is None:
        raise CGRSegError(f'{path}: {what} is larger than {MAX_TEXT // MB} MB')
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        raise CGRSegError(f'{path}: {what} is not UTF-8 text') from None


def lock_pins(path):
    """{name: version} of a lock file; a line that is neither a comment nor `name==version` is an
    error naming its number."""
    pins = {}
    for number, line in enumerate(read_text(path, 'lock file').splitlines(), 1):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        match = _PIN.fullmatch(line)
        if not match:
            raise CGRSegError(f'{path}: line {number}: expected "name==version", got {line[:80]!r}')
        pins[match.group(1)] = match.group(2)
    return pins


def setup_pins(path):
    """The versions scripts/setup.sh installs for mmcv-full and mmsegmentation."""
    text = read_text(path, 'set-up script')
    pins = {}
    for name in SETUP_PINS:
        found = re.search(rf"['\"]{re.escape(name)}==([0-9][0-9a-zA-Z.]*)['\"]", text)
        if not found:
            raise CGRSegError(f'{path}: no {name}==VERSION pin found')
        pins[name] = found.group(1)
    return pins


def installed_versions():
    """{name: version} as imports see them: the first distribution on sys.path wins (setuptools
    puts its vendored copies, e.g. of packaging, on sys.path once torch's build tools load it)."""
    from packaging.utils import canonicalize_name
    found = {}
    for dist in importlib.metadata.distributions():
        found.setdefault(canonicalize_name(dist.metadata['Name'] or ''), dist.version)
    return found


def version_problems(pins, installed, source):
    """A line per pinned package that is missing or has another version (pip's `==`: a local
    label such as +cu128 does not count)."""
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
    lines = []
    for name, wanted in pins.items():
        have = installed.get(canonicalize_name(name))
        if have is None:
            lines.append(f'{source}: {name} {wanted} is not installed (bash scripts/setup.sh)')
            continue
        try:
            same = Version(have).public == Version(wanted).public
        except InvalidVersion:
            same = have == wanted
        if not same:
            lines.append(f'{source}: {name} is {have}, {source} pins {wanted} (bash scripts/setup.sh)')
    return lines


def packages(plan):
    try:
        pins = {plan.lock: lock_pins(plan.lock), plan.setup: setup_pins(plan.setup)}
    except CGRSegError as err:
        return [str(err)], ''
    installed = installed_versions()
    lines = [line for source, pinned in pins.items()
             for line in version_problems(pinned, installed, source)]
    return lines, f'{sum(map(len, pins.values()))} pinned versions installed'


# ---- registry and configs ---------------------------------------------------------------------

def registry(plan):
    """cgrseg.models imports against this mmcv/mmseg and registers its types; every config the
    preset trains loads with registered types (registry errors otherwise surface in the jobs)."""
    from cgrseg import workflow as wf
    try:
        from mmseg.models.builder import MODELS
        import cgrseg.models  # noqa: F401  (registers CGRSeg's types)
    except Exception as err:  # an mmcv/mmseg/torch clash fails here, in many ways
        return [f'cgrseg.models: cannot import against the installed mmcv/mmseg: '
                f'{type(err).__name__}: {_first_line(err)}'], ''
    lines = [f'mmseg registry: {name} is not registered (cgrseg.models)'
             for name in ('EfficientFormerV2', 'CGRSegHead', 'CGRSeg', 'efficientformerv2_s1_feat')
             if MODELS.get(name) is None]
    configs = sorted({wf.model_config(plan.config, d, v)
                      for v in plan.config['variants'] for d in plan.config['datasets']})
    lines += _config_problems(configs)
    return lines, f'CGRSeg types registered; {len(configs)} configs load'


def _config_problems(paths):
    from cgrseg.mmseg_config import TRAIN, load_config
    lines = []
    for path in paths:
        try:
            load_config(path, needs=TRAIN)
        except CGRSegError as err:
            lines.append(str(err))
    return lines


def _first_line(err):
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


# ---- devices ----------------------------------------------------------------------------------

def devices(plan):
    from cgrseg import workflow as wf
    gpus = int(wf.preset(plan.config).get('gpus') or 0)
    key = f'{plan.where}: presets.{plan.config["preset"]}'
    lines = _batch_problems(plan, key)
    if plan.executor == 'slurm':
        return lines + slurm_problems(plan, wf.gpus(plan.config)), 'SLURM partitions found'
    if gpus == 0:
        return lines, 'CPU run (gpus: 0)'
    import torch
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < gpus:
        lines.append(f'{key}.gpus: {gpus} GPU(s) asked for, {count} CUDA device(s) visible '
                     f'(CUDA_VISIBLE_DEVICES={os.environ.get("CUDA_VISIBLE_DEVICES", "unset")})')
    if gpus > 1 and not _nccl():
        lines.append(f'{key}.gpus: {gpus} GPUs train with DDP over NCCL, which this torch lacks')
    return lines, f'{count} CUDA device(s) for gpus: {gpus}'


def _nccl():
    import torch.distributed as dist
    return dist.is_available() and dist.is_nccl_available()


def _batch_problems(plan, key):
    """A run compared with the paper must keep the authors' 16 images per step (4 GPUs x 4)."""
    from cgrseg import workflow as wf
    sched = wf.preset(plan.config)
    per_gpu = sched.get('samples_per_gpu')
    if wf.is_demo(plan.config) or per_gpu is None:
        return []
    total = max(1, int(sched.get('gpus') or 0)) * per_gpu
    if total != 16:
        return [f'{key}: gpus x samples_per_gpu = {total} images per step; the paper trained 16 '
                f'(4 GPUs x 4), keep the product 16']
    return []


# ---- SLURM ------------------------------------------------------------------------------------

def sinfo_partitions():
    """{partition: (available, GPUs per node at most)} from `sinfo`; one line if it fails."""
    if shutil.which('sinfo') is None:
        raise CGRSegError('sinfo: not found; is this a SLURM login node?')
    try:
        done = subprocess.run(['sinfo', '--noheader', '--format=%R|%a|%G'], capture_output=True,
                              text=True, timeout=SINFO_TIMEOUT, errors='replace')
    except subprocess.TimeoutExpired:
        raise CGRSegError(f'sinfo: no answer within {SINFO_TIMEOUT} s') from None
    if done.returncode != 0:
        why = done.stderr.strip() or done.stdout.strip() or f'exit status {done.returncode}'
        raise CGRSegError(f'sinfo: failed: {_first_line(why)}')
    found = {}
    for line in done.stdout[:MAX_TEXT].splitlines():
        parts = line.strip().split('|')
        if len(parts) != 3 or not parts[0]:
            continue
        name, avail, gres = parts
        up, most = found.get(name, (False, 0))
        found[name] = (up or avail == 'up', max(most, gres_gpus(gres)))
    return found


def gres_gpus(gres):
    """GPUs per node in a sinfo GRES field: 'gpu:4', 'gpu:a100:4(S:0-1)', '(null)' -> 4, 4, 0."""
    count = 0
    for item in gres.split(','):
        parts = item.split('(')[0].split(':')
        if parts[0] == 'gpu' and len(parts) > 1 and parts[-1].isdigit():
            count += int(parts[-1])
    return count


def slurm_problems(plan, gpus):
    try:
        found = sinfo_partitions()
    except CGRSegError as err:
        return [str(err)]
    gpu_partition = plan.config.get('slurm_gpu_partition', 'gpu')
    lines = []
    for name in dict.fromkeys([gpu_partition, *plan.partitions]):
        if name not in found:
            lines.append(f'sinfo: partition {name!r} does not exist (there are: '
                         f'{", ".join(sorted(found)) or "none"})')
        elif not found[name][0]:
            lines.append(f'sinfo: partition {name!r} is not up')
    if gpu_partition in found and found[gpu_partition][1] < gpus:
        lines.append(f'{plan.where}: slurm_gpu_partition: partition {gpu_partition!r} has at most '
                     f'{found[gpu_partition][1]} GPU(s) per node, a training asks for {gpus}')
    return lines


# ---- disk -------------------------------------------------------------------------------------

def disk(plan):
    """Free space for what the data sets still need: archives not (fully) downloaded and data not
    yet prepared, summed per file system."""
    from cgrseg import workflow as wf
    if plan.config['sources'] == 'synthetic':
        return [], 'synthetic archives: a few MB'
    try:
        needs, notes = dataset_needs(plan)
    except CGRSegError as err:
        return [str(err)], ''
    lines = []
    for folder, (size, parts) in _by_filesystem(needs).items():
        free = shutil.disk_usage(folder).free
        if free < size:
            lines.append(f'{folder}: {_gb(size)} GB needed ({"; ".join(parts)}), '
                         f'{_gb(free)} GB free')
    data = wf.data_root(plan.config)
    return lines, f'{_gb(sum(n[1] for n in needs))} GB needed under {data} ({", ".join(notes)})'


def dataset_needs(plan):
    """[(folder, bytes, what)] still to be written for each dataset, and a note per dataset."""
    from cgrseg import workflow as wf
    from cgrseg.data import sources
    doc = sources.load(plan.sources)
    raw, prepared = Path(wf.raw_root(plan.config)), Path(wf.data_root(plan.config), 'prepared')
    needs, notes = [], []
    for dataset in plan.config['datasets']:
        entry = sources.dataset_entry(doc, dataset, plan.sources)
        if (prepared / f'{dataset}.manifest.json').is_file():
            notes.append(f'{dataset} prepared')
            continue
        archives = sum(_missing_bytes(raw / dataset / a['name'], _size(a, 'size_mb', plan, dataset))
                       for a in entry['archives'])
        needs += [(raw / dataset, archives, f'{dataset} archives'),
                  (prepared, _size(entry, 'prepared_mb', plan, dataset), f'{dataset} prepared')]
        notes.append(f'{dataset} {_gb(archives)} + {_gb(needs[-1][1])}')
    return needs, notes


def _size(entry, field, plan, dataset):
    value = entry.get(field)
    if type(value) not in (int, float) or not 0 < value < 1e7:
        raise CGRSegError(f'{plan.sources}: datasets.{dataset}: {field} must be a size in MB, '
                          f'got {value!r}')
    return int(value * MB)


def _missing_bytes(path, size):
    try:
        return max(0, size - path.stat().st_size)   # a partial download resumes
    except OSError:
        return size


def _by_filesystem(needs):
    """{existing folder: (bytes, [what])} with the needs of one file system summed."""
    grouped = {}
    for folder, size, what in needs:
        if size <= 0:
            continue
        anchor = existing_ancestor(folder)
        key = os.stat(anchor).st_dev
        total, parts, shown = grouped.get(key, (0, [], anchor))
        grouped[key] = (total + size, parts + [f'{what} {_gb(size)}'], shown)
    return {shown: (total, parts) for total, parts, shown in grouped.values()}


def existing_ancestor(path):
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _gb(size):
    return f'{size / (1 << 30):.1f}'


# ---- weights ----------------------------------------------------------------------------------

def weights(plan):
    """The ImageNet backbone weights the trainings load, each equal to its `cgrseg pretrained`
    record (a changed or truncated file trains from other weights, silently)."""
    from cgrseg import workflow as wf
    from cgrseg.io import sha256_file
    if not wf.preset(plan.config).get('pretrained', True):
        return [], 'not needed (pretrained: false)'
    lines, checked = [], []
    for variant in plan.config['variants']:
        for path in map(Path, wf.pretrained_inputs(plan.config, variant)):
            if path in checked:
                continue
            checked.append(path)
            arch = layout.VARIANT_BACKBONES[str(variant)]
            if not path.is_file():
                lines.append(f'{path}: missing; run `cgrseg pretrained {arch}` (the DAG\'s pretrained rule)')
                continue
            try:
                recorded = weights_record(path.with_suffix('.json'))
            except CGRSegError as err:
                lines.append(str(err))
                continue
            actual = sha256_file(path)
            if actual != recorded:
                lines.append(f'{path}: sha256 {actual[:12]}... differs from its record '
                             f'{path.with_suffix(".json")} ({recorded[:12]}...); run '
                             f'`cgrseg pretrained {arch}` again')
    return lines, f'{len(checked)} backbone checkpoint(s) match their sha256 records'


def weights_record(path):
    """The checkpoint_sha256 of a `cgrseg pretrained` record, read as untrusted JSON."""
    data = read_small(path, 'the sha256 record', MAX_RECORD)
    if data is None:
        raise CGRSegError(f'{path}: not a weights record (larger than {MAX_RECORD >> 10} kB)')
    try:
        doc = json.loads(data.decode('utf-8'))
    except (UnicodeDecodeError, ValueError):
        raise CGRSegError(f'{path}: not a weights record (not JSON)') from None
    digest = doc.get('checkpoint_sha256') if isinstance(doc, dict) else None
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise CGRSegError(f'{path}: "checkpoint_sha256" must be 64 lowercase hex digits')
    return digest


# ---- outputs ----------------------------------------------------------------------------------

def output_roots(config):
    from cgrseg import workflow as wf
    roots = [wf.results_root(config), wf.data_root(config), wf.raw_root(config),
             f'{wf.data_root(config)}/prepared', wf.work_root(config)]
    if wf.preset(config).get('pretrained', True):
        roots.append(str(Path(layout.BACKBONE_WEIGHTS).parent))
    return list(dict.fromkeys(roots))


def outputs(plan):
    """Every folder the DAG writes into can be created and written (checked with access(2):
    nothing is created here)."""
    lines = []
    roots = output_roots(plan.config)
    for root in roots:
        anchor = existing_ancestor(root)
        if not anchor.is_dir():
            lines.append(f'{root}: {anchor} is a file, not a folder')
        elif not os.access(anchor, os.W_OK | os.X_OK):
            lines.append(f'{root}: not writable ({anchor} refuses writes: permissions or a '
                         f'read-only file system)')
    return lines, f'{len(roots)} output roots writable'


# ---- the Snakemake rule -----------------------------------------------------------------------

def rule_executor(workflow):
    """The executor the DAG runs under ('local', 'slurm', ...; 'local' for --report)."""
    plugin = workflow.executor_plugin
    return plugin.name if plugin is not None else 'local'


def rule_partitions(executor, profile=SLURM_PROFILE):
    """The SLURM partitions the workflow profile names (default-resources, set-resources)."""
    import yaml
    if executor != 'slurm' or not Path(profile).is_file():
        return []
    try:
        doc = yaml.safe_load(read_text(profile, 'workflow profile'))
    except (CGRSegError, yaml.YAMLError):
        return []   # Snakemake itself reports a broken profile
    doc = doc if isinstance(doc, dict) else {}
    tables = [doc.get('default-resources'), *(doc.get('set-resources') or {}).values()]
    names = [_resource(t, 'slurm_partition') for t in tables if isinstance(t, (dict, list))]
    return sorted({n for n in names if n})


def _resource(table, name):
    """A string resource of a profile table ({name: v} or ['name=v']), quotes stripped."""
    items = table.items() if isinstance(table, dict) else (
        str(item).partition('=')[::2] for item in table)
    for key, value in items:
        if key == name and isinstance(value, str):
            return value.strip('\'"') or None
    return None


def repository_file(relative):
    """``relative`` under the current directory, else under the repository of this (editable)
    package: a copy of the workflow without envs/ or scripts/ still finds the pins."""
    here = Path(relative)
    if here.exists():
        return str(here)
    return str(Path(__file__).resolve().parents[2] / relative)


# ---- command line -----------------------------------------------------------------------------

def load_plan(args):
    from cgrseg.io import load_yaml
    from cgrseg import params as params_schema
    if args.params_json is not None:
        try:
            config, where = json.loads(args.params_json), 'params (--params-json)'
        except ValueError as err:
            raise CGRSegError(f'--params-json: not valid JSON ({err})') from None
    else:
        config, where = load_yaml(args.params, 'params'), str(args.params)
    if not isinstance(config, dict):
        raise CGRSegError(f'{where}: must be a mapping')
    for item in args.config:
        config = merge(config, parse_override(item))
    config = params_schema.coerce(config)
    return Plan(config=config, where=where, lock=repository_file(args.lock),
                setup=repository_file(args.setup), sources=repository_file(args.sources),
                executor=args.executor, partitions=tuple(args.partitions))


def parse_override(item):
    """``key=value`` as Snakemake's --config reads it: the value as YAML."""
    import yaml
    key, sep, text = item.partition('=')
    if not sep or not key:
        raise CGRSegError(f'--config {item!r}: expected KEY=VALUE')
    try:
        return {key: yaml.safe_load(text)}
    except yaml.YAMLError:
        return {key: text}


def merge(base, changes):
    """Nested mappings merged, anything else replaced (Snakemake's --config behaviour)."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def run(args):
    sys.dont_write_bytecode = True   # nothing written, not even the caches of the imports below
    plan = load_plan(args)
    problems, passed = run_checks(plan)
    if problems:
        raise CGRSegError('\n'.join(problems))
    print('\n'.join(passed))
    print(f'cgrseg doctor: ready for preset {plan.config["preset"]!r} ({plan.executor})')
    return 0


def add_parser(sub):
    p = sub.add_parser('doctor', help='check, in seconds, what a run needs before it spends GPU time',
                       description=__doc__, formatter_class=__import__('argparse').RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group()
    source.add_argument('--params', default='params.yaml', help='default: %(default)s')
    source.add_argument('--params-json', metavar='JSON',
                        help='the effective params (Snakemake passes them after --config overrides)')
    p.add_argument('--config', nargs='+', default=[], metavar='KEY=VALUE',
                   help="override params as Snakemake's --config does, e.g. preset=paper sources=real")
    p.add_argument('--executor', default='local',
                   help="where the jobs run: 'slurm' checks partitions with sinfo instead of the "
                        'CUDA devices of this machine (default: %(default)s)')
    p.add_argument('--partitions', nargs='*', default=[], metavar='NAME',
                   help='other SLURM partitions the jobs use; slurm_gpu_partition is always checked')
    p.add_argument('--lock', default=LOCK, help='default: %(default)s')
    p.add_argument('--setup', default=SETUP, help='default: %(default)s')
    p.add_argument('--sources', default=SOURCES, help='archive sizes (default: %(default)s)')
    p.set_defaults(func=run)
