"""PASCAL VOC 2012 + SBD → the layout the VOC reader reads (``SegmentationClassAug``, ``train_aug``).

* SBD (``benchmark.tgz``, ``benchmark_RELEASE/dataset``): ``cls/<id>.mat`` holds a MATLAB struct
  ``GTcls`` whose field ``Segmentation`` is the ``uint8`` class map (0 background, 1..20, no ignore band);
  ``train.txt`` (8,498 ids) and ``val.txt`` (2,857 ids) list them.
* ``SegmentationClassAug/<id>.png`` = VOC's own ``SegmentationClass`` mask where VOC has one (with its 255
  boundary band), else SBD's mask: the 12,031 masks of the papers' SegmentationClassAug, which equals
  SegmentationClass on the 1,464 train ids (reference notes, cti_multistage §4, G14).
* ``train_aug`` = (SBD train ∪ SBD val ∪ VOC train) − VOC val: 10,582 ids on the official archives.

The .mat files are read from the archive stream (no 11k temporary files).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from wsss_core.data.classes import IGNORE_INDEX, voc_palette
from wsss_core.errors import DatasetError

VOC_PREFIX = "VOCdevkit/VOC2012"
SBD_PREFIX = "benchmark_RELEASE/dataset"
VOC_FOLDERS = ("JPEGImages/", "SegmentationClass/", "Annotations/", "ImageSets/Segmentation/")
MASK_DIR = "SegmentationClassAug"
# Counts on the official archives (papers and reference notes); datasets.<name>.prepare.expect overrides.
VOC_EXPECTED_COUNTS: dict[str, int] = {"train_aug": 10582, "train": 1464, "val": 1449, "sbd_train": 8498,
                                       "sbd_val": 2857, "masks": 12031}


def sbd_segmentation(source: bytes | io.BufferedIOBase, name: str = "<mat>") -> np.ndarray:
    """``GTcls.Segmentation`` of one SBD ``cls/*.mat`` file as ``uint8 [H, W]``."""
    from scipy.io import loadmat  # a preparation-only dependency

    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        contents = loadmat(stream, squeeze_me=True, struct_as_record=False)
        segmentation = np.asarray(contents["GTcls"].Segmentation)
    except (KeyError, AttributeError, ValueError, TypeError, OSError) as error:
        raise DatasetError(f"SBD file '{name}' has no GTcls.Segmentation ({error}); benchmark.tgz is not SBD's") from None
    if segmentation.ndim != 2:
        raise DatasetError(f"SBD file '{name}': GTcls.Segmentation is {segmentation.shape}, not a 2-D class map")
    invalid = (segmentation > 20) & (segmentation != IGNORE_INDEX)
    if invalid.any():
        raise DatasetError(f"SBD file '{name}' holds classes {sorted(set(segmentation[invalid].tolist()))[:5]} "
                           "outside 0..20; benchmark.tgz is not SBD's")
    return segmentation.astype(np.uint8)


def write_palette_png(path: Path, mask: np.ndarray) -> None:
    """A VOC palette PNG of class indices (what the readers and the papers' tools read)."""
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(voc_palette().reshape(-1).tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def read_ids(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def train_aug_ids(sbd_train: Iterable[str], sbd_val: Iterable[str], voc_train: Iterable[str],
                  voc_val: Iterable[str]) -> list[str]:
    """(SBD train ∪ SBD val ∪ VOC train) − VOC val, sorted: the papers' ``train_aug``."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


def check_counts(counts: Mapping[str, int], expected: Mapping[str, int | None], dataset: str) -> None:
    """Stop with one line when a count differs from ``expected`` (None = not checked)."""
    for name, value in expected.items():
        if value is None:
            continue
        if name not in counts:
            raise DatasetError(f"datasets.{dataset}.prepare.expect.{name}: no such count (known: {', '.join(counts)})")
        if counts[name] != value:
            raise DatasetError(
                f"prepared {dataset} has {counts[name]} {name} but {value} are expected "
                f"(datasets.{dataset}.prepare.expect.{name}): the archives are incomplete or not the official ones"
            )


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the image header (no decoding)."""
    with Image.open(path) as image:
        return image.height, image.width
