"""COCO 2014 instance annotations → the semantic PNGs, labels and lists the COCO reader reads.

The rule for one image (``semantic_mask``), stated because it decides the ground truth:

* label of a category = 1 + its index among the sorted category ids (the 80-class order of
  :data:`~wsss_core.data.classes.COCO_CLASSES`); 0 is background;
* instances are painted in the order of the annotation file, and where instances overlap **the first
  one painted keeps the pixel** (a later instance only fills pixels still background);
* polygons, uncompressed RLE (crowd regions) and compressed RLE are decoded with pycocotools;
* ``crowd: class`` (default) paints ``iscrowd`` regions with their category like any instance;
  ``crowd: ignore`` paints them 255 (ignored by every score) after the non-crowd instances, on the
  pixels those left background.

The default is the convention of the masks the papers used as far as it is documented: MCC's
``datasets/parse_coco.py`` paints the annotations in file order, first painted wins, unknown category
ids 255 (reference notes, single_stage §1.11), and it paints every annotation, crowd regions included,
with its class (that script, read in the MCC repository; the notes say nothing on crowds). CTI uses the
masks RIB distributes, whose generation script is not public, so a remaining difference to those cannot
be ruled out (the issue's "36 instead of 42 mIoU" with self-built masks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from wsss_core.data.classes import IGNORE_INDEX
from wsss_core.errors import ConfigError, DatasetError

CROWD_RULES = ("class", "ignore")
SUBSETS = ("train2014", "val2014")
# Counts on the official 2014 archives (reference notes §1.2); datasets.<name>.prepare.expect overrides.
COCO_EXPECTED_COUNTS: dict[str, int] = {"train2014": 82783, "val2014": 40504}
SMALL_SPLIT_SIZE = 5207  # CTI's train14_small.txt (its ids are not published with the archives)


def category_labels(categories: Sequence[Mapping[str, Any]], num_classes: int, where: str) -> dict[int, int]:
    """COCO category id → label 1..C (sorted ids, gaps removed)."""
    ids = sorted(int(category["id"]) for category in categories)
    if len(ids) != num_classes:
        raise DatasetError(f"'{where}' has {len(ids)} categories, not {num_classes}: use COCO 2014's instances file")
    return {category_id: index + 1 for index, category_id in enumerate(ids)}


def decode_instance(segmentation: Any, height: int, width: int) -> np.ndarray:
    """One annotation's ``segmentation`` (polygons, uncompressed or compressed RLE) as a bool mask."""
    from pycocotools import mask as coco_mask  # a preparation-only dependency

    if isinstance(segmentation, list):  # polygons: one RLE per polygon, merged
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, Mapping) and isinstance(segmentation.get("counts"), list):
        rle = coco_mask.frPyObjects(dict(segmentation), height, width)  # uncompressed RLE (crowd)
    elif isinstance(segmentation, Mapping):
        counts = segmentation["counts"]
        rle = {"size": list(segmentation["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise DatasetError(f"annotation segmentation of type {type(segmentation).__name__} is neither polygons nor RLE")
    decoded = coco_mask.decode(rle)
    if decoded.ndim == 3:
        decoded = decoded.any(axis=2)
    if decoded.shape != (height, width):
        raise DatasetError(f"annotation RLE is {decoded.shape}, but its image is {(height, width)}")
    return decoded.astype(bool)


def semantic_mask(annotations: Sequence[Mapping[str, Any]], height: int, width: int,
                  labels: Mapping[int, int], crowd: str = "class") -> np.ndarray:
    """``uint8 [H, W]``: 0 background, 1..C, 255 ignore, by the rule in the module docstring."""
    if crowd not in CROWD_RULES:
        raise ConfigError(f"datasets.<name>.prepare.crowd is '{crowd}'; use one of {', '.join(CROWD_RULES)}")
    mask = np.zeros((height, width), dtype=np.uint8)
    claimed = np.zeros((height, width), dtype=bool)
    deferred = []
    for annotation in annotations:
        if crowd == "ignore" and annotation.get("iscrowd"):
            deferred.append(annotation)
            continue
        region = decode_instance(annotation["segmentation"], height, width) & ~claimed
        mask[region] = labels.get(int(annotation["category_id"]), IGNORE_INDEX)
        claimed |= region
    for annotation in deferred:
        region = decode_instance(annotation["segmentation"], height, width) & ~claimed
        mask[region] = IGNORE_INDEX
        claimed |= region
    return mask


def image_labels(annotations: Sequence[Mapping[str, Any]], labels: Mapping[int, int], num_classes: int) -> np.ndarray:
    """Multi-hot ``float32 [C]`` of the categories present (crowd regions included, as in the papers' npy)."""
    vector = np.zeros(num_classes, dtype=np.float32)
    for annotation in annotations:
        label = labels.get(int(annotation["category_id"]))
        if label is not None:
            vector[label - 1] = 1.0
    return vector


def small_subset(ids: Sequence[int], size: int) -> list[int]:
    """``size`` ids spread evenly over the sorted ``ids`` (deterministic; a stand-in for CTI's 5.2k list)."""
    ordered = sorted(ids)
    if size >= len(ordered):
        return ordered
    positions = np.linspace(0, len(ordered) - 1, size).round().astype(int)
    return [ordered[position] for position in positions]
