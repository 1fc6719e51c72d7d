"""The data file (configs/data/sources.yaml) and the label tables."""
import ast
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from cgrseg.errors import CGRSegError
from cgrseg.data import labels, sources

REPO = Path(__file__).resolve().parents[2]


def test_data_file_holds_the_published_sources():
    doc = sources.load(REPO / 'configs/data/sources.yaml')['datasets']
    sizes = {d: ([a.pop('size_mb') for a in doc[d]['archives']], doc[d]['prepared_mb']) for d in doc}
    assert sizes == {'ade20k': ([923], 1400), 'coco_stuff10k': ([2048], 2048),   # the disk doctor reserves
                     'pascal_context': ([1331, 2048], 1400)}
    assert doc['ade20k']['archives'] == [{
        'name': 'ADEChallengeData2016.zip',
        'url': 'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip',
        'checksum': 'sha1:219e1696abb36c8ba3a3afe7fb2f4b4606a897c7'}]
    assert doc['coco_stuff10k']['archives'] == [{
        'name': 'cocostuff-10k-v1.1.zip',
        'url': 'http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/'
               'cocostuff-10k-v1.1.zip',
        'checksum': None}]
    assert doc['pascal_context']['archives'] == [
        {'name': 'VOCtrainval_03-May-2010.tar',
         'url': 'http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar',
         'checksum': 'md5:da459979d0c395079b5c75ee67908abb'},
        {'name': 'trainval_merged.json',
         'url': 'https://codalabuser.blob.core.windows.net/public/trainval_merged.json',
         'checksum': 'sha1:169325d9f7e9047537fedca7b04de4dddf10b881'}]
    assert [doc[d]['counts'] for d in ('ade20k', 'coco_stuff10k', 'pascal_context')] == [
        {'train': 20210, 'val': 2000}, {'train': 9000, 'val': 1000},
        # Pascal Context: the phases of trainval_merged.json (Detail API maintainers, ccvl/detail-api
        # issue 1: 4996 / 5104), not VOC2010 ImageSets/Main (4998 / 5105)
        {'train': 4996, 'val': 5104}]


def test_default_data_file_is_found_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sources.default_path() == REPO / 'configs/data/sources.yaml'


@pytest.mark.parametrize('entry,problem', [
    ({'archives': [], 'counts': {'train': 1, 'val': 1}}, 'non-empty "archives"'),
    ({'archives': [{'name': 'a.zip', 'url': 'ftp://x/a.zip', 'checksum': None}],
      'counts': {'train': 1, 'val': 1}}, 'must be http'),
    ({'archives': [{'name': 'a.zip', 'url': 'http://x/a.zip', 'checksum': 'sha1:abc'}],
      'counts': {'train': 1, 'val': 1}}, 'is not "<md5|sha1|sha256>:<lowercase hex>"'),
    ({'archives': [{'name': 'a.zip', 'url': 'http://x/a.zip', 'checksum': None}],
      'counts': {'train': 1}}, '"counts" must be'),
])
def test_bad_data_files_are_rejected(tmp_path, entry, problem):
    path = tmp_path / 'sources.yaml'
    path.write_text(yaml.safe_dump({'datasets': {'ade20k': entry}}))
    with pytest.raises(CGRSegError, match=re.escape(problem)) as err:
        sources.load(path)
    assert str(err.value).startswith(f'{path}: datasets.ade20k: ')


def test_coco_stuff_table_keeps_order_and_drops_unused_ids():
    lut = labels.coco_stuff_lut()
    used = [i for i in range(183) if lut[i] >= 0]
    assert len(used) == 172 and lut[used].tolist() == list(range(172))
    assert [i for i in range(1, 183) if lut[i] < 0] == list(labels.COCO_UNUSED_IDS)
    assert (lut[[0, 11, 13, 90, 92, 182]] == [0, 11, 12, 80, 81, 171]).all()
    assert (lut[183:] == -1).all()


def test_pascal_context_table():
    lut = labels.pascal_context_lut()
    assert lut[[0, 1, 2, 9, 458, 459]].tolist() == [0, 0, 1, 2, 59, 0]
    assert sorted(labels.PASCAL_CONTEXT_59_IDS) == list(labels.PASCAL_CONTEXT_59_IDS)
    assert len(set(labels.PASCAL_CONTEXT_NAMES)) == 59




def _literal(path, name):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', None) == name:
            return node.value
    raise AssertionError(f'{name} not in {path}')


def _mmseg_tool(name):
    try:
        import mmseg
    except ImportError:
        pytest.skip('mmseg not installed')
    path = Path(mmseg.__file__).parent / '.mim/tools/convert_datasets' / name
    if not path.is_file():
        pytest.skip(f'{path} not shipped')
    return path


def test_tables_equal_mmsegs_own_converters():
    """Compare with the converters that mmseg 0.30 ships (read as data, never imported)."""
    coco = ast.literal_eval(_literal(_mmseg_tool('coco_stuff10k.py'), 'clsID_to_trID'))
    lut = labels.coco_stuff_lut()
    assert coco == {i: int(lut[i]) for i in range(256) if lut[i] >= 0}
    mapping = _literal(_mmseg_tool('pascal_context.py'), '_mapping')   # np.sort(np.array([...]))
    ids = ast.literal_eval(mapping.args[0].args[0])
    assert sorted(ids) == [0, *labels.PASCAL_CONTEXT_59_IDS]
    from mmseg.datasets import PascalContextDataset59
    assert PascalContextDataset59.CLASSES == labels.PASCAL_CONTEXT_NAMES
    assert np.array_equal(labels.pascal_context_lut()[sorted(ids)], np.arange(60))
