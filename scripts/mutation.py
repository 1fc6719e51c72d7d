"""Mutation testing of the modules that decide numbers and safety (issue 17); run by scripts/mutation.sh.

Each module below is mutated by mutmut (envs/mutation.txt) against its own fast test files, in its own
folder ``.mutation/<module>/`` (a mutmut project: setup.cfg, links to the sources and tests, and the
``mutants/`` copy with every verdict). A rerun continues where the last one stopped; ``--fresh``
starts a module over. The table counts:

- killed: a selected test failed (mutmut's timeouts and crashes are listed apart and count as killed);
- survived: every test passed, or no selected test runs the mutated function ("no tests");
- equivalent: a survivor listed in scripts/mutation-equivalent.yaml with the reason it changes no
  behaviour (matched by function and by the changed lines, not by mutmut's number);
- score: killed / (all - equivalent).

Usage: scripts/mutation.sh [--fresh] [--recheck] [--report] [--survivors] [--list] [--jobs N] [MODULE ...]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / '.mutation'
EQUIVALENT = ROOT / 'scripts' / 'mutation-equivalent.yaml'
# what the tests read besides src/ and tests/ (copied into mutants/)
ALSO_COPY = ('configs', 'params.yaml')

# module: (files to mutate, test files that decide on them)
MODULES = {
    'labels': (['src/cgrseg/data/labels.py', 'src/cgrseg/data/coco_stuff10k.py',
                'src/cgrseg/data/pascal_context.py'],
               ['tests/test_data_prepare.py', 'tests/test_data_mmseg.py']),
    'download': (['src/cgrseg/data/download.py'],
                 ['tests/test_data_download.py', 'tests/test_download_mutations.py']),
    'checkpoints': (['src/cgrseg/runner/checkpoints.py', 'src/cgrseg/runner/resume.py'],
                    ['tests/test_runner_robust.py', 'tests/test_resume_mutations.py']),
    'grouped_bn': (['src/cgrseg/models/grouped_bn.py'], ['tests/test_ddp.py']),
    'deploy': (['src/cgrseg/models/deploy.py'], ['tests/test_deploy.py']),
    'flops': (['src/cgrseg/measure/flops.py'], ['tests/test_measure.py', 'tests/test_measure_mutations.py']),
    'throughput': (['src/cgrseg/measure/throughput.py'],
                   ['tests/test_throughput.py', 'tests/test_measure_mutations.py']),
    'judge': (['src/cgrseg/tables/collect.py', 'src/cgrseg/tables/judge.py'],
              ['tests/test_tables.py', 'tests/test_tables_protocols.py', 'tests/test_tables_hypotheses.py']),
}
TIMEOUT_CONSTANT = 5   # seconds; mutmut's default 1 s is less than a test process's start on a busy machine


def setup_cfg(files, tests):
    lines = ['[mutmut]', 'source_paths = src', 'only_mutate =', *(f'    {f}' for f in files),
             'pytest_add_cli_args_test_selection =', *(f'    {t}' for t in tests),
             # the slow end-to-end tests and SLURM are never part of a module's selection
             'pytest_add_cli_args =', '    -m', '    not slow', '    -p', '    no:cacheprovider',
             'also_copy =', *(f'    {p}' for p in ALSO_COPY),
             # every mutant is forked from a server that imported the tests but ran none (torch is not
             # fork-safe once its thread pools ran; OMP_NUM_THREADS=1 keeps them from starting anyway)
             'process_isolation = forkserver', 'forkserver_warmup = collect',
             # a mutant's time limit is (its tests' duration + constant) x multiplier
             f'timeout_constant = {TIMEOUT_CONSTANT}', 'timeout_multiplier = 15',
             'use_git_change_detection = false', 'on_dependency_change = ignore', '']
    return '\n'.join(lines)


def prepare(name, fresh):
    files, tests = MODULES[name]
    folder = WORK / name
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for link in ('src', 'tests', 'pyproject.toml', *ALSO_COPY):
        target = folder / link
        if not target.is_symlink():
            target.symlink_to(ROOT / link)
    (folder / 'setup.cfg').write_text(setup_cfg(files, tests))
    return folder


def run_module(name, folder, jobs, mutants=()):
    """``mutmut run`` in the module's folder: every undecided mutant, or the ``mutants`` named."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
               PYTHONHASHSEED='0', MPLBACKEND='Agg')
    mutmut = Path(sys.executable).with_name('mutmut')
    log = folder / 'mutmut.log'
    start = time.monotonic()
    with open(log, 'a') as out:
        code = subprocess.call([str(mutmut), 'run', '--max-children', str(jobs), *mutants], cwd=folder,
                               env=env, stdout=out, stderr=subprocess.STDOUT)
    return code, time.monotonic() - start, log


def verdicts(name, folder):
    """{mutant name: status} of the module's files."""
    from mutmut.stats import status_by_exit_code
    found = {}
    for path in MODULES[name][0]:
        meta = folder / 'mutants' / f'{path}.meta'
        if meta.exists():
            codes = json.loads(meta.read_text())['exit_code_by_key']
            found.update({k: status_by_exit_code[v] for k, v in codes.items()})
    return found


def changed_lines(folder, mutant):
    """(function, removed lines, added lines) of a mutant, from mutmut's own diff."""
    from mutmut.configuration import reset_config
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        reset_config()
        diff = get_diff_for_mutant(mutant)
    finally:
        os.chdir(cwd)
    lines = [line for line in diff.splitlines() if not line.startswith(('---', '+++'))]
    removed = [line[1:].strip() for line in lines if line.startswith('-')]
    added = [line[1:].strip() for line in lines if line.startswith('+')]
    return function_of(mutant), removed, added, diff


def function_of(mutant):
    return mutant.rsplit('__mutmut_', 1)[0]


def load_equivalent():
    entries = yaml.safe_load(EQUIVALENT.read_text()) or [] if EQUIVALENT.exists() else []
    return [(e['function'], e['removed'], e['added'], e['reason']) for e in entries]


def is_equivalent(change, equivalents):
    function, removed, added, _ = change
    return any(function == f and removed == r and added == a for f, r, a, _ in equivalents)


def summarise(name, folder, equivalents):
    found = verdicts(name, folder)
    row = dict(module=name, mutants=len(found), killed=0, timeout=0, survived=0, no_tests=0,
               equivalent=0, pending=0)
    survivors = []
    for mutant, status in sorted(found.items()):
        if status == 'not checked':
            row['pending'] += 1
        elif status in ('timeout', 'segfault', 'suspicious'):
            row['timeout'] += 1
        elif status == 'killed':
            row['killed'] += 1
        else:
            change = changed_lines(folder, mutant)
            if is_equivalent(change, equivalents):
                row['equivalent'] += 1
            else:
                row['survived' if status == 'survived' else 'no_tests'] += 1
                survivors.append((mutant, status, change[3]))
    decided = row['mutants'] - row['pending'] - row['equivalent']
    row['score'] = 100.0 * (row['killed'] + row['timeout']) / decided if decided else float('nan')
    return row, survivors


def print_table(rows):
    head = ('module', 'mutants', 'killed', 'timeout', 'survived', 'no_tests', 'equivalent', 'pending',
            'score', 'minutes')
    print(' | '.join(head))
    print(' | '.join('---' for _ in head))
    for r in rows:
        print(' | '.join(str(r[k]) if k not in ('score', 'minutes') else f'{r[k]:.1f}' for k in head))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('modules', nargs='*', help=f'default: all of {", ".join(MODULES)}')
    parser.add_argument('--fresh', action='store_true', help='forget earlier verdicts of these modules')
    parser.add_argument('--jobs', type=int, default=os.cpu_count() or 1, help='mutants tested at once')
    parser.add_argument('--recheck', action='store_true',
                        help='test the survivors of earlier runs again (after tests were added)')
    parser.add_argument('--report', action='store_true', help='only print the table of earlier runs')
    parser.add_argument('--survivors', action='store_true', help='print the diff of every survivor')
    parser.add_argument('--list', action='store_true', help='list the modules, their files and tests')
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f'unknown module(s) {", ".join(unknown)}; choose from {", ".join(MODULES)}')
    if args.list:
        for name, (files, tests) in MODULES.items():
            print(f'{name}: {" ".join(files)}\n    tests: {" ".join(tests)}')
        return 0
    equivalents = load_equivalent()
    rows, failed = [], []
    for name in args.modules or MODULES:
        folder = prepare(name, args.fresh)
        minutes = 0.0
        if not args.report:
            print(f'{name}: mutmut run (log: {folder / "mutmut.log"})', flush=True)
            code, seconds, log = run_module(name, folder, args.jobs)
            if args.recheck and not code:   # survivors of earlier runs, against the tests as they are now
                _, survivors = summarise(name, folder, equivalents)
                if survivors:
                    code, more, log = run_module(name, folder, args.jobs, [m for m, _, _ in survivors])
                    seconds += more
            minutes = seconds / 60
            if code:
                failed.append(f'{name}: mutmut exited with {code}; see {log}')
        row, survivors = summarise(name, folder, equivalents)
        row['minutes'] = minutes
        rows.append(row)
        if args.survivors:
            for mutant, status, diff in survivors:
                print(f'\n## {mutant} ({status})\n{diff}')
    print()
    print_table(rows)
    for line in failed:
        print(line, file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
