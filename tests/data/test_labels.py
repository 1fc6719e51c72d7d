"""The label conversions checked on data prepared in this process (``--jobs 1``).

tests/data/test_prepare.py checks the same facts on the session's ``prepared_datasets``, converted by a
pool of worker processes; mutation testing (scripts/mutation.sh, module ``labels``) learns which tests
run a function only from calls in the test's own process, so it needs the conversion done here. The
checks are test_data_prepare's own, called on this folder.
"""
from pathlib import Path

import pytest

import test_prepare as P


@pytest.fixture(scope='module')
def prepared_here(synth_archives, tmp_path_factory):
    from cgrseg.data import download, sources
    from cgrseg.data.prepare import prepare
    raw, out = tmp_path_factory.mktemp('raw'), tmp_path_factory.mktemp('prepared')
    doc = sources.load(synth_archives / 'sources.yaml')
    for dataset in ('coco_stuff10k', 'pascal_context'):
        for archive, url in download.plan(doc['datasets'][dataset]['archives']):
            download.fetch(archive, url, raw, retry_wait=0)
        prepare(dataset, raw, out, jobs=1)
    return Path(out)


def test_coco_stuff_labels(prepared_here, synth_archives):
    P.test_coco_stuff_pixels_follow_mmseg_mapping(prepared_here, synth_archives)
    P.test_manifest_describes_the_prepared_data(prepared_here, 'coco_stuff10k', 171)


def test_pascal_context_labels(prepared_here, synth_archives):
    P.test_pascal_context_pixels_follow_the_59_class_mapping(prepared_here, synth_archives)
    P.test_pascal_context_later_annotations_win(prepared_here, synth_archives)
    P.test_pascal_context_split_lists_come_from_the_json_phases(prepared_here, synth_archives)
    P.test_manifest_describes_the_prepared_data(prepared_here, 'pascal_context', 59)
    P.test_manifest_list_hash_is_the_pascal_split_file(prepared_here)
