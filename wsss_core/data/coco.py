"""MS COCO 2014 reader in the WSSS convention (RIB/CTI semantic PNGs).

Layout (``root`` = ``COCO2014``)::

    train2014/COCO_train2014_%012d.jpg     val2014/COCO_val2014_%012d.jpg
    SegmentationClass/{train2014,val2014}/COCO_<subset>_%012d.png   0 = background, 1..80, 255 ignore
    annotations/instances_{train,val}2014.json                     labels when ``cls_labels`` is null
                                                                   (``instances``: path template, {subset})

Image ids are the file stems (``COCO_train2014_000000279803``). List lines may hold the stem, the
12-digit number (CTI's ``train14.txt``), or an image path; a bare number is looked up in ``train2014/``
then ``val2014/``. ``cls_labels`` may be an npy dict keyed by int COCO id, the 12-digit string or the
stem. Without it, labels are rebuilt from the instances JSON: category ids sorted, gaps removed (the
80-class order of :data:`wsss_core.data.classes.COCO_CLASSES`); images with no annotation get an
all-zero label vector (COCO has ~700 such train images; CTI keeps them in ``train14.txt``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wsss_core.data import DATASET_FORMATS
from wsss_core.data.voc import DatasetReader
from wsss_core.errors import DatasetError

SUBSETS = ("train2014", "val2014")
_STEM = re.compile(r"^COCO_(train2014|val2014)_(\d{12})$")


@DATASET_FORMATS.register("coco")
class COCOReader(DatasetReader):
    """COCO 2014 with semantic PNGs (0..80 + 255) and multi-hot labels over the 80 classes."""

    format = "coco"
    default_image_dir = "."
    default_mask_dir = "SegmentationClass"
    allows_unlabelled_images = True
    default_instances = "annotations/instances_{subset}.json"

    def __init__(self, *args, instances: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # path of the instances JSONs relative to the root (or absolute), ``{subset}`` = train2014 / val2014
        self.instances = instances or self.default_instances

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "COCOReader":
        """As :meth:`DatasetReader.from_config`, plus the optional ``instances`` path template."""
        reader = super().from_config(config)
        assert isinstance(reader, COCOReader)
        reader.instances = config.get("instances") or cls.default_instances
        return reader

    # ---------------------------------------------------------------------------------- layout
    @staticmethod
    def subset(image_id: str) -> str:
        """``train2014`` or ``val2014`` from a canonical id."""
        return image_id.split("_")[1]

    def image_path(self, image_id: str) -> Path:
        return self.root / self.image_dir / self.subset(image_id) / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path:
        return self.root / self.mask_dir / self.subset(image_id) / f"{image_id}.png"

    def _parse_list_entry(self, tokens: list[str], list_path: Path, line_number: int) -> str:
        if len(tokens) > 2:
            raise DatasetError(
                f"list file '{list_path}' line {line_number} has {len(tokens)} fields; expected an image id "
                "such as COCO_train2014_000000279803 or 000000279803"
            )
        entry = Path(tokens[0]).stem
        if _STEM.match(entry) or entry.isdigit():
            return entry
        raise DatasetError(
            f"list file '{list_path}' line {line_number} holds '{tokens[0]}', which is not a COCO 2014 image id "
            "(COCO_train2014_000000279803 or 000000279803); fix the line"
        )

    def _resolve_id(self, image_id: str) -> str:
        if _STEM.match(image_id):
            return image_id
        number = f"{int(image_id):012d}"
        for subset in SUBSETS:
            candidate = f"COCO_{subset}_{number}"
            if self.image_path(candidate).is_file():
                return candidate
        return f"COCO_{SUBSETS[0]}_{number}"  # ids() then reports the missing train2014 image

    # ---------------------------------------------------------------------------------- labels
    def _table_key(self, image_id: str) -> str:
        return image_id.rsplit("_", 1)[1]

    def _label_key(self, raw_key: object) -> str:
        text = str(raw_key)
        match = _STEM.match(text)
        if match:
            return match.group(2)
        return f"{int(text):012d}" if text.isdigit() else text

    def _labels_from_annotations(self, image_id: str) -> np.ndarray:
        if self._label_table is None:
            self._label_table = {}
        subset = self.subset(image_id)
        loaded_key = f"__loaded_{subset}"
        if loaded_key not in self._label_table:
            self._label_table.update(self._read_instances(subset))
            self._label_table[loaded_key] = np.zeros(0, dtype=np.float32)
        key = self._table_key(image_id)
        if key not in self._label_table:
            raise DatasetError(
                f"image '{image_id}' is absent from '{self._instances_path(subset)}'; remove it from the split "
                f"list or give datasets.{self.name}.cls_labels"
            )
        return self._label_table[key].copy()

    def _instances_path(self, subset: str) -> Path:
        return self._resolve(self.instances.format(subset=subset))

    def _read_instances(self, subset: str) -> dict[str, np.ndarray]:
        """Multi-hot labels of every image of a COCO instances JSON (category ids sorted, no gaps)."""
        path = self._instances_path(subset)
        try:
            with open(path) as stream:
                instances = json.load(stream)
        except FileNotFoundError:
            raise DatasetError(
                f"'{path}' does not exist: datasets.{self.name}.cls_labels is null, so labels come from the "
                f"COCO instances JSON; download it or set datasets.{self.name}.cls_labels to a labels npy"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DatasetError(f"'{path}' is not valid JSON ({error}); re-download it") from None
        category_ids = sorted(int(category["id"]) for category in instances.get("categories", []))
        if len(category_ids) != self.num_classes:
            raise DatasetError(
                f"'{path}' has {len(category_ids)} categories but datasets.{self.name} has {self.num_classes} "
                "classes; use the COCO 2014 instances file"
            )
        position = {category_id: index for index, category_id in enumerate(category_ids)}
        labels = {
            f"{int(image['id']):012d}": np.zeros(self.num_classes, dtype=np.float32)
            for image in instances.get("images", [])
        }
        for annotation in instances.get("annotations", []):
            key = f"{int(annotation['image_id']):012d}"
            if key in labels:
                labels[key][position[int(annotation["category_id"])]] = 1.0
        return labels
