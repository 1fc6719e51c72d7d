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

Usage: scripts/mutation.sh [--fresh] [--sample DIGITS] [--recheck] [--report] [--survivors] [--list] [--jobs N] [MODULE ...]
"""
import argparse
import fnmatch
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
# workflow/schemas: the params and result contracts; results/reference: the committed reference results
ALSO_COPY = ('configs', 'params.yaml', 'workflow', 'results/reference')
TIMEOUT_CONSTANT = 5   # seconds; mutmut's default 1 s is less than a test process's start on a busy machine
TIMEOUT_MULTIPLIER = 4

# module: files to mutate, the test files (or test ids) that decide on them, and optionally the functions
# of those files that make the module (mutmut names: package.module.x_function, .xǁClassǁmethod);
# argument parsers and progress display are left out.
MODULES = {
    'labels': dict(
        files=['src/cgrseg/data/labels.py', 'src/cgrseg/data/coco_stuff10k.py', 'src/cgrseg/data/pascal_context.py'],
        tests=['tests/data/test_labels.py', 'tests/data/test_prepare.py', 'tests/data/test_bad_input.py'],
        functions=['cgrseg.data.labels.*', 'cgrseg.data.coco_stuff10k.x_map_labels',
                   'cgrseg.data.coco_stuff10k.x__map_slice', 'cgrseg.data.coco_stuff10k.x_label_field',
                   'cgrseg.data.coco_stuff10k.x__convert_one', 'cgrseg.data.pascal_context.x_decode',
                   'cgrseg.data.pascal_context.x__convert_one', 'cgrseg.data.pascal_context.x__tasks']),
    'download': dict(
        files=['src/cgrseg/data/download.py'],
        tests=['tests/data/test_download.py', 'tests/data/test_download_resume.py'],
        functions=['cgrseg.data.download.x_plan', 'cgrseg.data.download.x_fetch', 'cgrseg.data.download.x__fetch',
                   'cgrseg.data.download.x__verify', 'cgrseg.data.download.x_format_problem',
                   'cgrseg.data.download.x__looks_like', 'cgrseg.data.download.x__transfer',
                   'cgrseg.data.download.x__copy_file', 'cgrseg.data.download.x__http_get',
                   'cgrseg.data.download.xǁRateGuardǁ*', 'cgrseg.data.download.x__blocks',
                   'cgrseg.data.download.x__raise_for_status', 'cgrseg.data.download.x__resumes_at',
                   'cgrseg.data.download.x__refuse_range', 'cgrseg.data.download.x__check_complete']),
    'checkpoints': dict(
        files=['src/cgrseg/runner/checkpoints.py', 'src/cgrseg/runner/resume.py'],
        tests=['tests/runner/test_checkpoints_reader.py', 'tests/runner/test_robust.py', 'tests/runner/test_resume_ranks.py',
               'tests/runner/test_runner.py::test_latest_checkpoint_picks_the_newest',
               'tests/runner/test_runner.py::test_load_meta_rejects_what_is_not_a_checkpoint',
               'tests/runner/test_runner.py::test_resume_continues_after_the_saved_step']),
    'grouped_bn': dict(
        files=['src/cgrseg/models/grouped_bn.py'],
        tests=['tests/runner/test_ddp.py', 'tests/models/test_grouped_bn.py']),
    'deploy': dict(
        files=['src/cgrseg/models/deploy.py'],
        # not the negative controls (test_a_wrong_fold_fails_the_comparison, test_dropping_eps_fails_that_comparison):
        # they replace deploy's own functions to show a test's tolerance is tight, and add seconds a mutant
        tests=['tests/models/test_deploy_folding.py', 'tests/models/test_deploy.py::test_deploy_output_equals_the_unfused_model[t]',
               'tests/models/test_deploy.py::test_pointwise_is_the_1x1_conv_in_either_layout',
               'tests/models/test_deploy.py::test_a_bn_before_a_padded_conv_is_not_folded',
               'tests/models/test_deploy.py::test_deploy_needs_eval_mode_and_refuses_training'],
        deselect=['tests/models/test_deploy_folding.py::test_dropping_eps_fails_that_comparison']),
    'flops': dict(
        files=['src/cgrseg/measure/flops.py'],
        tests=['tests/measure/test_flops_records.py', 'tests/measure/test_flops.py::test_mac_counter_on_a_hand_counted_model',
               'tests/measure/test_flops.py::test_flops_command_gives_the_official_counts[t]',
               'tests/measure/test_flops.py::test_conv_linear_macs_agree_with_torchs_flop_counter'],
        functions=['cgrseg.measure.flops.x_count_params', 'cgrseg.measure.flops.x__conv_macs',
                   'cgrseg.measure.flops.x__matmul_counter', 'cgrseg.measure.flops.x_count_macs',
                   'cgrseg.measure.flops.x_mmcv_flops', 'cgrseg.measure.flops.x_measure',
                   'cgrseg.measure.flops.x_model_name', 'cgrseg.measure.flops.x_variant_of',
                   'cgrseg.measure.flops.x_dataset_of', 'cgrseg.measure.flops.x_run']),
    'throughput': dict(
        files=['src/cgrseg/measure/throughput.py'],
        tests=['tests/measure/test_throughput.py', 'tests/measure/test_flops_records.py'],
        functions=['cgrseg.measure.throughput.x_timed_runs', 'cgrseg.measure.throughput.x_fixed_size',
                   'cgrseg.measure.throughput.x__endless', 'cgrseg.measure.throughput.x_mmseg_benchmark',
                   'cgrseg.measure.throughput.x__test_config', 'cgrseg.measure.throughput.x__loader',
                   'cgrseg.measure.throughput.x__model', 'cgrseg.measure.throughput.x__workers',
                   'cgrseg.measure.throughput.x__check', 'cgrseg.measure.throughput.x_measure']),
    'configs': dict(
        files=['src/cgrseg/mmseg_config.py', 'src/cgrseg/runner/config_rewrites.py'],
        tests=['tests/test_mmseg_config.py', 'tests/test_configs_every_key.py', 'tests/runner/test_config_rewrites.py',
               'tests/test_configs.py::test_exactly_the_nine_configs_exist',
               'tests/test_configs.py::test_model_settings', 'tests/test_configs.py::test_data_settings',
               'tests/test_configs.py::test_schedule_is_the_official_one',
               'tests/test_configs.py::test_model_builds_and_predicts[t]',
               'tests/runner/test_protocols.py::test_test_pipelines_are_the_authors',
               'tests/runner/test_protocols.py::test_official_and_single_scale_descriptions',
               'tests/runner/test_protocols.py::test_each_protocol_is_evaluated_with_its_own_pipeline',
               *(f'tests/runner/test_runner.py::{t}' for t in (
                   'test_parse_options_reads_literals_floats_and_text', 'test_cfg_options_reach_the_config',
                   'test_load_config_errors_name_the_file', 'test_data_prefix_moves_every_split_and_can_move_again',
                   'test_data_prefix_refuses_a_root_outside_it', 'test_check_data_names_the_missing_directory',
                   'test_crop_rewrites_train_and_test_scales_consistently', 'test_iters_compress_the_schedule',
                   'test_tiny_iters_still_warm_up_evaluate_and_checkpoint',
                   'test_iters_equal_to_the_config_change_nothing', 'test_pretrained_path_and_dropping_it',
                   'test_resolved_text_is_loadable_and_has_no_stale_template_values',
                   'test_experiment_is_required', 'test_train_cli_errors_are_one_line',
                   'test_the_resolved_config_is_python_even_with_a_quote_in_a_data_root'))]),
    'judge': dict(
        files=['src/cgrseg/tables/collect.py', 'src/cgrseg/tables/judge.py'],
        tests=['tests/tables/test_tables.py', 'tests/tables/test_table_protocols.py', 'tests/tables/test_hypotheses.py',
               'tests/tables/test_collect_seeds.py', 'tests/tables/test_verdict_texts.py'],
        # seconds each and about other modules (the model's parameters, the figure, the DAG's commands);
        # a survivor of judge_cell would run them once per mutant
        deselect=['tests/tables/test_hypotheses.py::test_next_repeat_5_gives_the_papers_cgrseg_b_params',
                  'tests/tables/test_hypotheses.py::test_the_dag_passes_each_hypothesis_to_cgrseg_flops_unchanged',
                  'tests/tables/test_tables.py::test_figure_writes_png_and_pdf_reproducibly',
                  'tests/tables/test_tables.py::test_figure_separates_demo_and_real_points']),
}


# the tests' session inputs (tests/conftest.py: synth_archives, prepared_datasets), made once per
# mutation.sh run with the unmutated code and copied into each mutant's test session; a module whose code
# makes one of them (labels: prepare; download: fetch) makes it in every session, mutated
MADE_ONCE = {'synth': 'CGRSEG_TEST_SYNTH', 'prepared': 'CGRSEG_TEST_PREPARED'}
MAKES = {'labels': ('prepared',), 'download': ('prepared',)}
# imported by tests/conftest.py in mutmut's fork server, not by every mutant's session (mmcv's
# Config.fromfile alone spent seconds importing mmseg through the configs' custom_imports). Third-party
# only: cgrseg's own modules run code at import (coco_stuff10k.LUT), which each mutant must run mutated.
PRELOAD = ('torch', 'timm', 'scipy.io', 'pandas', 'mmcv.runner', 'mmseg.apis', 'mmseg.datasets', 'mmseg.models')


def make_inputs():
    folder = WORK / 'inputs'
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    code = ('import sys; sys.path.insert(0, "tests"); import conftest as c; '
            f'c.make_prepared_datasets(c.make_synth_archives("{folder}/synth"), "{folder}/raw", "{folder}/prepared")')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    subprocess.run([str(ROOT / '.venv' / 'bin' / 'python'), '-c', code], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=900)
    return folder


def setup_cfg(files, tests, deselect=()):
    lines = ['[mutmut]', 'source_paths = src', 'only_mutate =', *(f'    {f}' for f in files),
             'pytest_add_cli_args_test_selection =', *(f'    {t}' for t in tests),
             # the slow end-to-end tests and SLURM are never part of a module's selection
             'pytest_add_cli_args =', '    -m', '    not slow', '    -p', '    no:cacheprovider',
             *(f'    --deselect\n    {t}' for t in deselect),
             'also_copy =', *(f'    {p}' for p in ALSO_COPY),
             # every mutant is forked from a server that imported the tests but ran none (torch is not
             # fork-safe once its thread pools ran; OMP_NUM_THREADS=1 keeps them from starting anyway)
             'process_isolation = forkserver', 'forkserver_warmup = collect',
             # a mutant's wall-time limit is (its tests' duration + constant) x multiplier: a mutant that
             # hangs a test (a download waiting on its server) counts as killed, and holds a worker that long
             f'timeout_constant = {TIMEOUT_CONSTANT}', f'timeout_multiplier = {TIMEOUT_MULTIPLIER}',
             'use_git_change_detection = false', 'on_dependency_change = ignore',
             # each mutant's tests and seconds in mutants/mutmut-debug.log (where a module's time goes)
             'log_to_file = true', '']
    return '\n'.join(lines)


def prepare(name, fresh):
    files, tests = MODULES[name]['files'], MODULES[name]['tests']
    folder = WORK / name
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for link in ('src', 'tests', 'pyproject.toml', *ALSO_COPY):
        target = folder / link
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_symlink():
            target.symlink_to(ROOT / link)
    (folder / 'setup.cfg').write_text(setup_cfg(files, tests, MODULES[name].get('deselect', ())))
    return folder


def run_module(name, folder, jobs, inputs, mutants=()):
    """``mutmut run`` in the module's folder: every undecided mutant, or the ``mutants`` named."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
               PYTHONHASHSEED='0', MPLBACKEND='Agg', CGRSEG_TEST_PRELOAD=' '.join(PRELOAD),
               CGRSEG_MUTATION_STATS=str(folder / 'mutants' / 'mutmut-stats.json'))
    env.update({variable: str(inputs / kind) for kind, variable in MADE_ONCE.items()
                if kind not in MAKES.get(name, ())})
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
    for path in MODULES[name]['files']:
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


def selected(name, mutant, sample=''):
    """Whether ``mutant`` belongs to the module (its functions) and to the ``--sample`` (its last digit:
    ``--sample 37`` is a fifth of the mutants, spread over every function)."""
    functions = MODULES[name].get('functions')
    if functions and not any(fnmatch.fnmatch(function_of(mutant), f) for f in functions):
        return False
    return not sample or mutant[-1] in sample


def run_selected(name, folder, jobs, sample, recheck, equivalents, inputs):
    """Generate the mutants (mutmut stops there when asked for a mutant that does not exist), then test
    the undecided ones of the module by name: a rerun resumes, and the order never matters."""
    code, seconds, log = run_module(name, folder, jobs, inputs, ['no.such.mutant'])
    if not verdicts(name, folder):
        return code or 1, seconds, log   # generation or the test statistics failed: the log says why
    todo = [m for m, status in verdicts(name, folder).items() if selected(name, m, sample) and status == 'not checked']
    if recheck:
        _, survivors = summarise(name, folder, equivalents, sample)
        todo += [m for m, _, _ in survivors]
    if not todo:
        return 0, seconds, log
    code, more, log = run_module(name, folder, jobs, inputs, todo)
    return code, seconds + more, log


def summarise(name, folder, equivalents, sample=''):
    found = {m: s for m, s in verdicts(name, folder).items() if selected(name, m, sample)}
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
    # twice the cores: a mutant that makes a test wait (on a server, a timeout) leaves its core idle
    parser.add_argument('--jobs', type=int, default=2 * (os.cpu_count() or 1), help='mutants tested at once')
    parser.add_argument('--sample', default='', metavar='DIGITS',
                        help='only the mutants whose number ends in one of DIGITS (37: a fifth), for an estimate')
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
        for name, spec in MODULES.items():
            print(f'{name}: {" ".join(spec["files"])}\n    tests: {" ".join(spec["tests"])}')
            if spec.get('functions'):
                print(f'    functions: {" ".join(spec["functions"])}')
        return 0
    equivalents = load_equivalent()
    inputs = None if args.report else make_inputs()
    rows, failed = [], []
    for name in args.modules or MODULES:
        folder = prepare(name, args.fresh)
        minutes = 0.0
        if not args.report:
            print(f'{name}: mutmut run (log: {folder / "mutmut.log"})', flush=True)
            code, seconds, log = run_selected(name, folder, args.jobs, args.sample, args.recheck, equivalents,
                                              inputs)
            minutes = seconds / 60
            if code:
                failed.append(f'{name}: mutmut exited with {code}; see {log}')
        row, survivors = summarise(name, folder, equivalents, args.sample)
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
