"""Shell-safe rules: folders whose names hold spaces, quotes, `$(...)` and backticks reach every
command as one argument each. A few real jobs (download, prepare, train, evaluate, the effective
params) run with such a data root, archive folder, work root and checkout folder, and nothing
injected runs."""
import yaml

from cgrseg.data.synth import synthesize

HOSTILE = 'a b \'q\' "dq" $(touch PWNED1) `touch PWNED2` ;touch PWNED3'


def test_hostile_folder_names_run_as_plain_paths(workflow, tmp_path):
    root = workflow.copy(tmp_path / f'checkout {HOSTILE}')
    archives = tmp_path / f'archives {HOSTILE}'
    synthesize('ade20k', archives)
    # the official sources file points at the synthetic archives: `sources: real` then downloads them
    # (from archive_dir) into data_root, as it would the real ones
    (root / 'configs/data/sources.yaml').write_text((archives / 'sources.yaml').read_text())
    params = yaml.safe_load((root / 'params.yaml').read_text())
    params.update(sources='real', archive_dir=str(archives), data_root=f'data {HOSTILE}',
                  work_root=str(tmp_path / f'work {HOSTILE}'), datasets=['ade20k'], variants=['t'])
    params['presets']['demo'].update(iters=2, checkpoint_interval=2)
    (root / 'params.yaml').write_text(yaml.safe_dump(params))

    run = 'results/demo/runs/ade20k/cgrseg-t/seed0/metrics.json'
    done = workflow.run(root, '--workflow-profile', 'none', '--cores', '2', '-p', run,
                        'results/demo/params.effective.yaml', timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    assert not [p for p in tmp_path.rglob('PWNED*')], 'an injected command ran'
    assert (root / f'data {HOSTILE}' / 'prepared' / 'ade20k.manifest.json').is_file()
    assert (tmp_path / f'work {HOSTILE}' / 'ade20k/cgrseg-t/seed0/latest.pth').is_file()
    assert (root / run).is_file()
    assert yaml.safe_load((root / 'results/demo/params.effective.yaml').read_text())['data_root'] == \
        f'data {HOSTILE}'
