"""Label conventions of the three datasets, as mmseg 0.30 expects them on disk.

All three are trained with ``reduce_zero_label``: the value 0 on disk is ignored and value ``v`` is
class ``v - 1``. These tables reproduce mmseg 0.30's ``tools/convert_datasets`` (checked against
``coco_stuff10k.py`` and ``pascal_context.py`` of that release); see docs/data.md.
"""
import numpy as np

ADE20K_NUM_CLASSES = 150

# COCO-Stuff raw ids: 0 = unlabeled, 1..182 where these 11 COCO thing ids were never used.
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
COCO_MAX_ID = 182
COCO_NUM_CLASSES = COCO_MAX_ID - len(COCO_UNUSED_IDS)  # 171


def coco_stuff_lut():
    """Raw id -> on-disk train id (0 stays 0, used ids 1..182 become 1..171 in order).

    Unused and out-of-range ids map to -1 so the converter can reject them (mmseg's script would
    silently keep them, colliding with real train ids).
    """
    lut = np.full(256, -1, dtype=np.int16)
    used = [0] + [i for i in range(1, COCO_MAX_ID + 1) if i not in COCO_UNUSED_IDS]
    lut[used] = np.arange(len(used))
    return lut


# Pascal Context: the 59 category ids (of the 459 in trainval_merged.json) that PascalContextDataset59
# uses; on disk category ``PASCAL_CONTEXT_59_IDS[k]`` is written as ``k + 1``, 0 is background.
# Sorted ids follow mmseg's alphabetical CLASSES order (aeroplane=2 ... wood=458).
PASCAL_CONTEXT_59_IDS = (
    2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115,
    144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347,
    349, 354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458)
PASCAL_CONTEXT_NAMES = (
    'aeroplane', 'bag', 'bed', 'bedclothes', 'bench', 'bicycle', 'bird', 'boat', 'book', 'bottle',
    'building', 'bus', 'cabinet', 'car', 'cat', 'ceiling', 'chair', 'cloth', 'computer', 'cow',
    'cup', 'curtain', 'dog', 'door', 'fence', 'floor', 'flower', 'food', 'grass', 'ground', 'horse',
    'keyboard', 'light', 'motorbike', 'mountain', 'mouse', 'person', 'plate', 'platform',
    'pottedplant', 'road', 'rock', 'sheep', 'shelves', 'sidewalk', 'sign', 'sky', 'snow', 'sofa',
    'table', 'track', 'train', 'tree', 'truck', 'tvmonitor', 'wall', 'water', 'window', 'wood')
PASCAL_CONTEXT_NUM_CLASSES = len(PASCAL_CONTEXT_59_IDS)  # 59
PASCAL_CONTEXT_MAX_ID = 459


def pascal_context_lut():
    """Detail category id -> on-disk value: the 59 classes become 1..59, every other category 0.

    mmseg's converter asserts that no other category occurs (true for trainval_merged.json as
    distributed); mapping the rest to background is the classic 59+background definition.
    """
    lut = np.zeros(PASCAL_CONTEXT_MAX_ID + 1, dtype=np.uint8)
    lut[list(PASCAL_CONTEXT_59_IDS)] = np.arange(1, PASCAL_CONTEXT_NUM_CLASSES + 1)
    return lut
