"""The prepared synthetic datasets load with mmseg 0.30's own dataset classes and pipelines."""
import io
import json
import logging
import zipfile

import numpy as np
import pytest

mmseg_datasets = pytest.importorskip('mmseg.datasets')

NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
CROP = (64, 64)
# mmseg 0.30's standard pipelines (configs/_base_/datasets/*), at a small scale
TRAIN = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', img_scale=(256, 64), ratio_range=(0.5, 2.0)),
    dict(type='RandomCrop', crop_size=CROP, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Normalize', **NORM),
    dict(type='Pad', size=CROP, pad_val=0, seg_pad_val=255),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_semantic_seg']),
]
TEST = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(256, 64), flip=False, transforms=[
        dict(type='Resize', keep_ratio=True),
        dict(type='RandomFlip'),
        dict(type='Normalize', **NORM),
        dict(type='ImageToTensor', keys=['img']),
        dict(type='Collect', keys=['img']),
    ]),
]
DATASETS = {
    'ade20k': dict(type='ADE20KDataset'),
    'coco_stuff10k': dict(type='COCOStuffDataset', reduce_zero_label=True),
    'pascal_context': dict(type='PascalContextDataset59'),
}


def config(root, dataset, split, pipeline):
    manifest = json.loads((root / f'{dataset}.manifest.json').read_text())
    layout = manifest['splits'][split]
    cfg = dict(DATASETS[dataset], data_root=str(root / manifest['data_root']),
               img_dir=layout['img_dir'], ann_dir=layout['ann_dir'], pipeline=pipeline)
    if layout['split']:
        cfg['split'] = layout['split']
    return cfg, manifest


@pytest.mark.parametrize('dataset', sorted(DATASETS))
def test_mmseg_dataset_loads_and_scores_ground_truth_as_perfect(prepared_datasets, dataset, caplog):
    caplog.set_level(logging.WARNING, logger='mmseg')  # quiet, and restored for later tests
    cfg, manifest = config(prepared_datasets, dataset, 'train', TRAIN)
    train = mmseg_datasets.build_dataset(cfg)
    assert len(train) == manifest['splits']['train']['count']
    for index in range(len(train)):
        sample = train[index]
        assert tuple(sample['img'].data.shape) == (3, *CROP)
        labels = np.unique(sample['gt_semantic_seg'].data.numpy())
        assert set(labels) <= set(range(len(train.CLASSES))) | {255}
    assert len(train.CLASSES) == manifest['num_classes']

    cfg, manifest = config(prepared_datasets, dataset, 'val', TEST)
    val = mmseg_datasets.build_dataset(cfg)
    assert len(val) == manifest['splits']['val']['count']
    assert val[0]['img'][0].data.shape[0] == 3
    # predicting the ground truth (train ids = stored value - 1) must score 100 %, which only holds
    # if the on-disk convention matches reduce_zero_label
    perfect = [gt.astype(np.int64) - 1 for gt in val.get_gt_seg_maps()]
    metrics = val.evaluate(perfect, metric='mIoU')
    assert metrics['mIoU'] == pytest.approx(1.0)
    present = ~np.isnan([metrics[f'IoU.{name}'] for name in val.CLASSES])
    assert np.flatnonzero(present).tolist() == manifest['splits']['val']['classes_present']


# Raw annotation id -> mmseg 0.30 class name (None: background / not one of the classes, ignored).
# Sources, independent of cgrseg.data.labels: ADE20K objectInfo150.csv (ids 1..150); COCO-Stuff
# labels.txt (cocostuff-10k-v1.1, ids 1..182 with 0 = unlabeled); PASCAL in Detail
# trainval_merged.json categories (ids of the 459 classes, as in mmseg 0.30's
# tools/convert_datasets/pascal_context.py mapping; 1 = accordion is outside the 59).
KNOWN = {
    'ade20k': {0: None, 1: 'wall', 3: 'sky', 5: 'tree', 13: 'person', 150: 'flag'},
    'coco_stuff10k': {0: None, 1: 'person', 11: 'fire hydrant', 13: 'stop sign', 25: 'giraffe',
                      92: 'banner', 118: 'floor-wood', 150: 'rock', 182: 'wood'},
    'pascal_context': {0: None, 1: None, 2: 'aeroplane', 9: 'bag', 158: 'floor', 284: 'person',
                       360: 'sky', 458: 'wood'},
}


def raw_ade20k(archives, stem):
    with zipfile.ZipFile(archives / 'ADEChallengeData2016.zip') as z:
        data = z.read(f'ADEChallengeData2016/annotations/validation/{stem}.png')
    from PIL import Image
    return np.array(Image.open(io.BytesIO(data)))


def raw_coco_stuff10k(archives, stem):
    from scipy.io import loadmat
    with zipfile.ZipFile(archives / 'cocostuff-10k-v1.1.zip') as z:
        return loadmat(io.BytesIO(z.read(f'annotations/{stem}.mat')))['S']


def raw_pascal_context(archives, stem):
    """Detail's getMask: the image's annotations painted in file order, later ones on top."""
    from pycocotools import mask as coco_mask
    doc = json.loads((archives / 'trainval_merged.json').read_text())
    image = next(i for i in doc['images'] if i['file_name'] == f'{stem}.jpg')
    labels = np.zeros((image['height'], image['width']), dtype=np.int64)
    for ann in doc['annos_segmentation']:
        if ann['image_id'] == image['image_id']:
            labels[coco_mask.decode(ann['segmentation']).astype(bool)] = ann['category_id']
    return labels


RAW = {'ade20k': raw_ade20k, 'coco_stuff10k': raw_coco_stuff10k, 'pascal_context': raw_pascal_context}


@pytest.mark.parametrize('dataset', sorted(DATASETS))
def test_known_pixels_land_in_known_classes(prepared_datasets, synth_archives, dataset, caplog):
    """Every annotated pixel of the raw archive is scored as its named class by mmseg, and a
    prediction that gets those pixels wrong scores below 100 %."""
    caplog.set_level(logging.WARNING, logger='mmseg')
    cfg, _ = config(prepared_datasets, dataset, 'val', TEST)
    val = mmseg_datasets.build_dataset(cfg)
    known, seen = KNOWN[dataset], set()
    wrong = []
    for info, gt in zip(val.img_infos, val.get_gt_seg_maps()):
        raw = RAW[dataset](synth_archives, info['filename'].rsplit('.', 1)[0])
        assert raw.shape == gt.shape
        trained = gt.astype(np.int64) - 1          # reduce_zero_label: stored v is class v - 1
        for raw_id in np.unique(raw):
            assert raw_id in known, f'{dataset}: raw id {raw_id} has no known class in this test'
            name = known[raw_id]
            expected = -1 if name is None else val.CLASSES.index(name)
            assert set(np.unique(trained[raw == raw_id])) == {expected}, (dataset, raw_id, name)
            seen.add(raw_id)
        # wrong on the pixels of the first named class present, right elsewhere
        named = [i for i in np.unique(raw) if known[i] is not None]
        prediction = trained.copy()
        if named:
            pixels = raw == named[0]
            prediction[pixels] = (trained[pixels] + 1) % len(val.CLASSES)
        wrong.append(prediction)
    assert len(seen) >= 4, f'{dataset}: too few distinct classes in the synthetic val set ({seen})'
    assert val.evaluate(wrong, metric='mIoU')['mIoU'] < 0.99
