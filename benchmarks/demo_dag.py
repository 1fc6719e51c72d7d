"""Time the README's first command as a newcomer meets it, and show what the demo learned.

Copies what a clone of this checkout holds (the files git tracks, plus new ones it would commit)
into a fresh directory, runs `snakemake` there (the workflow's default profile, all cores) and
prints the wall time, then per rule: jobs, summed wall and CPU seconds (Snakemake's benchmark
files), and the demo's mIoU per run. `--summarize DIR` only prints the tables for a finished run
in DIR (e.g. the repository root after `.venv/bin/snakemake`).

    .venv/bin/python benchmarks/demo_dag.py [--keep DIR] [--cores N]
    .venv/bin/python benchmarks/demo_dag.py --summarize .
"""
import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fresh_copy(dest):
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split('\0')):
        src = REPO / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def run_dag(root, cores):
    snakemake = Path(sys.executable).parent / 'snakemake'
    cmd = [str(snakemake)] + (['--cores', str(cores)] if cores else [])
    env = dict(os.environ, PYTHONPATH=str(root / 'src'))   # this checkout's code, not an installed one
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f'snakemake failed (exit {done.returncode}):\n{done.stderr[-4000:]}')
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def rule_times(results):
    """{rule: [jobs, wall s, cpu s, max wall s]} from results/<preset>/benchmarks/<rule>/..."""
    table = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    bench = results / 'benchmarks'
    for path in sorted(bench.rglob('*.tsv')):
        rule = path.relative_to(bench).parts[0].removesuffix('.tsv')
        with path.open() as f:
            row = next(csv.DictReader(f, delimiter='\t'))
        entry = table[rule]
        wall, cpu = float(row['s']), float(row.get('cpu_time') or 0)
        entry[0] += 1
        entry[1] += wall
        entry[2] += cpu
        entry[3] = max(entry[3], wall)
    return table


def mious(results):
    rows = {}
    for path in sorted((results / 'runs').rglob('metrics.json')):
        doc = json.loads(path.read_text())
        rows[(doc['dataset'], doc['variant'])] = (doc['mIoU'], doc.get('iters'), doc['mode'])
    return rows


def report(results, wall=None, cpu=None):
    table = rule_times(results)
    jobs = sum(e[0] for e in table.values())
    if wall is not None:
        print(f'`snakemake`: {wall:.0f} s wall, {cpu:.0f} CPU s (user + system, every process)')
    # Snakemake samples a job's CPU time every second for 30 s, then every 30 s: a lower bound
    print('\n| rule | jobs | wall s (sum) | CPU s sampled (sum) | longest job s |\n|---|---|---|---|---|')
    for rule, (n, w, c, longest) in sorted(table.items(), key=lambda kv: -kv[1][2]):
        print(f'| {rule} | {n} | {w:.1f} | {c:.1f} | {longest:.1f} |')
    print(f'| all (with a benchmark file) | {jobs} | {sum(e[1] for e in table.values()):.1f} | '
          f'{sum(e[2] for e in table.values()):.1f} | |')
    print('\n| data set | variant | iterations | mode | mIoU (synthetic val) |\n|---|---|---|---|---|')
    for (dataset, variant), (miou, iters, mode) in mious(results).items():
        print(f'| {dataset} | {variant.upper()} | {iters} | {mode} | {miou} |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--keep', type=Path, help='run in DIR (kept) instead of a temporary directory')
    parser.add_argument('--cores', type=int, help="snakemake --cores (default: the profile's: all)")
    parser.add_argument('--preset', default='demo', help='results/<preset> to read (default: demo)')
    parser.add_argument('--summarize', type=Path, metavar='DIR', help='only summarize a finished run')
    args = parser.parse_args()
    if args.summarize:
        return report(args.summarize / 'results' / args.preset)
    root = args.keep or Path(tempfile.mkdtemp(prefix='cgrseg-demo-'))
    root.mkdir(parents=True, exist_ok=True)
    fresh_copy(root)
    wall, cpu = run_dag(root, args.cores)
    report(root / 'results' / args.preset, wall, cpu)
    if not args.keep:
        shutil.rmtree(root)


if __name__ == '__main__':
    main()
