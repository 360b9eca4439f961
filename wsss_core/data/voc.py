"""PASCAL VOC 2012 + SBD reader; it also reads the synthetic dataset, which has the same layout.

Layout (``root`` = ``VOC2012``)::

    JPEGImages/<id>.jpg            RGB images
    SegmentationClassAug/<id>.png  palette PNGs, 0..C and 255 (``mask_dir``; ``SegmentationClass`` also works)
    Annotations/<id>.xml           object names: the image labels when ``cls_labels`` is null
    ImageSets/Segmentation/<split>.txt

List files hold bare ids (``2007_000032``, IRN/MCTformer/VOC) or the PSA/CTI two-column form
(``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png``); both are accepted.
``cls_labels.npy`` is the pickled dict of PSA/CTI (``'2007_000032'`` → float32 [20]); IRN's integer
keys (``2007000032``) are accepted too.

:class:`DatasetReader` holds what VOC and COCO share (lists, decoding, validation); the subclasses only
say where files are and where labels come from. Readers keep no open file handles, so they pickle
into DataLoader workers.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
from PIL import Image

from wsss_core.data import DATASET_FORMATS
from wsss_core.data.classes import IGNORE_INDEX, dataset_class_names
from wsss_core.errors import ConfigError, DatasetError

SYNTHETIC_DEFAULT_HINT = "or run the synthetic default: snakemake --cores 2 results/synth/mctformer/miou.json"


class DatasetReader:
    """One dataset on disk: split lists, RGB images, GT masks and multi-hot image labels.

    ``class_names`` are the C foreground classes; masks use 0 (background), 1..C and 255 (ignore).
    """

    format: ClassVar[str]
    default_image_dir: ClassVar[str] = "JPEGImages"
    default_mask_dir: ClassVar[str] = "SegmentationClassAug"
    # COCO has images without any annotated object; every VOC image has at least one.
    allows_unlabelled_images: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        root: str | os.PathLike[str],
        class_names: tuple[str, ...] | list[str],
        splits: Mapping[str, str],
        cls_labels: str | os.PathLike[str] | None = None,
        image_dir: str | None = None,
        mask_dir: str | None = None,
    ) -> None:
        self.name = name
        self.root = Path(root)
        self.class_names = tuple(class_names)
        self.splits = dict(splits)
        self.cls_labels_path = None if cls_labels is None else self._resolve(cls_labels)
        self.image_dir = image_dir or self.default_image_dir
        self.mask_dir = mask_dir or self.default_mask_dir
        self._ids: dict[str, list[str]] = {}
        self._label_table: dict[str, np.ndarray] | None = None
        if not self.root.is_dir():
            raise DatasetError(
                f"dataset root '{self.root}' does not exist: download the {name} dataset there or set "
                f"datasets.{name}.root in config.yaml to where it is, {SYNTHETIC_DEFAULT_HINT}"
            )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "DatasetReader":
        """A reader from a ``datasets.<name>`` block (``classes`` or ``class_names``, exactly one)."""
        name = str(config.get("name", cls.format))
        for key in ("root", "splits"):
            if key not in config or config[key] in (None, ""):
                raise ConfigError(f"datasets.{name}.{key} is missing in config.yaml")
        names = dataset_class_names(config, name)
        if not isinstance(config["splits"], Mapping):
            raise ConfigError(f"datasets.{name}.splits must map split names to list files")
        return cls(
            name=name,
            root=config["root"],
            class_names=names,
            splits=config["splits"],
            cls_labels=config.get("cls_labels"),
            image_dir=config.get("image_dir"),
            mask_dir=config.get("mask_dir"),
        )

    # ------------------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, root='{self.root}', classes={self.num_classes})"

    def _resolve(self, path: str | os.PathLike[str]) -> Path:
        """A config path: absolute as given, else relative to the root."""
        path = Path(path)
        return path if path.is_absolute() else self.root / path

    # ---------------------------------------------------------------------- layout (subclasses)
    def image_path(self, image_id: str) -> Path:
        return self.root / self.image_dir / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path:
        return self.root / self.mask_dir / f"{image_id}.png"

    def _parse_list_entry(self, tokens: list[str], list_path: Path, line_number: int) -> str:
        """The image id of one list line (bare id, or ``/JPEGImages/x.jpg /SegmentationClassAug/x.png``)."""
        if len(tokens) > 2:
            raise DatasetError(
                f"list file '{list_path}' line {line_number} has {len(tokens)} fields; expected a bare "
                "image id or '/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png'"
            )
        image_id = Path(tokens[0]).stem if ("/" in tokens[0] or tokens[0].endswith(".jpg")) else tokens[0]
        if len(tokens) == 2 and Path(tokens[1]).stem != image_id:
            raise DatasetError(
                f"list file '{list_path}' line {line_number} pairs image '{tokens[0]}' with mask "
                f"'{tokens[1]}' of another id; fix the line so both name the same image"
            )
        return image_id

    def _resolve_id(self, image_id: str) -> str:
        """The canonical id of a listed id (COCO resolves bare numbers to its subset)."""
        return image_id

    def _labels_from_annotations(self, image_id: str) -> np.ndarray:
        """Multi-hot labels from ``Annotations/<id>.xml`` object names."""
        path = self.root / "Annotations" / f"{image_id}.xml"
        try:
            tree = ElementTree.parse(path)
        except FileNotFoundError:
            raise DatasetError(
                f"annotation '{path}' is missing: datasets.{self.name}.cls_labels is null, so image labels "
                f"come from Annotations/*.xml; restore the file or set datasets.{self.name}.cls_labels to a "
                "cls_labels.npy"
            ) from None
        except ElementTree.ParseError as error:
            raise DatasetError(f"annotation '{path}' is not valid XML ({error}); restore the file") from None
        index = {name: position for position, name in enumerate(self.class_names)}
        labels = np.zeros(self.num_classes, dtype=np.float32)
        for element in tree.getroot().iter("object"):
            name = (element.findtext("name") or "").strip()
            if name not in index:
                raise DatasetError(
                    f"annotation '{path}' names unknown class '{name}'; known classes: "
                    f"{', '.join(self.class_names)} (check datasets.{self.name}.classes)"
                )
            labels[index[name]] = 1.0
        if not labels.any():
            raise DatasetError(
                f"annotation '{path}' has no object, so image '{image_id}' has no label; remove it from the "
                "split list or fix the XML"
            )
        return labels

    def _label_key(self, raw_key: Any) -> str:
        """The image id a ``cls_labels.npy`` key stands for (IRN's int keys → ``2007_000032``)."""
        if isinstance(raw_key, (int, np.integer)):
            text = str(int(raw_key))
            return f"{text[:4]}_{text[4:]}"
        return str(raw_key)

    # --------------------------------------------------------------------------------- reading
    def list_path(self, split: str) -> Path:
        if split not in self.splits:
            known = ", ".join(sorted(self.splits)) or "none"
            raise ConfigError(
                f"split '{split}' is not in datasets.{self.name}.splits (known: {known}); add its list file there"
            )
        return self._resolve(self.splits[split])

    def ids(self, split: str) -> list[str]:
        """The image ids of ``split``, in list order; the list must parse, hold no duplicate and name
        existing images (cheap checks: no decoding)."""
        if split in self._ids:
            return list(self._ids[split])
        path = self.list_path(split)
        if not path.is_file():
            raise DatasetError(
                f"split list '{path}' (datasets.{self.name}.splits.{split}) does not exist; create it or fix "
                "the path (relative paths are relative to the dataset root)"
            )
        try:
            lines = path.read_text().splitlines()
        except UnicodeDecodeError:
            raise DatasetError(f"split list '{path}' is not a text file; regenerate it") from None
        ids: list[str] = []
        seen: dict[str, int] = {}
        for line_number, line in enumerate(lines, start=1):
            tokens = line.split()
            if not tokens:
                continue
            image_id = self._resolve_id(self._parse_list_entry(tokens, path, line_number))
            if image_id in seen:
                raise DatasetError(
                    f"list file '{path}' line {line_number} repeats image '{image_id}' (first on line "
                    f"{seen[image_id]}); remove the duplicate"
                )
            seen[image_id] = line_number
            if not self.image_path(image_id).is_file():
                raise DatasetError(
                    f"list file '{path}' line {line_number} names image '{image_id}' but "
                    f"'{self.image_path(image_id)}' does not exist; restore the image or remove the line"
                )
            ids.append(image_id)
        if not ids:
            raise DatasetError(f"split '{split}' is empty: list file '{path}' names no image; fill or replace it")
        self._ids[split] = ids
        return list(ids)

    def image(self, image_id: str) -> np.ndarray:
        """RGB ``uint8 [H, W, 3]``."""
        path = self.image_path(image_id)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(
                f"cannot read image '{path}': it is missing or not a decodable image; restore it or remove "
                f"'{image_id}' from the split list"
            )
        check_not_truncated(path, image_id)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def image_size(self, image_id: str) -> tuple[int, int]:
        """``(width, height)`` of an image from its header (nothing decoded); a truncated JPEG stops here."""
        path = self.image_path(image_id)
        try:
            with Image.open(path) as opened:
                size = opened.size
        except FileNotFoundError:
            raise DatasetError(
                f"image '{path}' does not exist; restore it or remove '{image_id}' from the split list"
            ) from None
        except OSError as error:
            raise DatasetError(
                f"cannot read image '{path}' ({error}); restore it or remove '{image_id}' from the split list"
            ) from None
        check_not_truncated(path, image_id)
        return size

    def mask(self, image_id: str) -> np.ndarray:
        """Ground truth ``uint8 [H, W]`` in 0..C or 255, read as PIL palette indices."""
        path = self.mask_path(image_id)
        try:
            with Image.open(path) as opened:
                if opened.mode not in ("P", "L"):
                    raise DatasetError(
                        f"mask '{path}' is a {opened.mode} image; masks must be palette or grey PNGs holding "
                        "class indices (not colours)"
                    )
                mask = np.array(opened, dtype=np.uint8)
        except FileNotFoundError:
            raise DatasetError(
                f"mask '{path}' does not exist; restore it or point datasets.{self.name}.mask_dir to the "
                "folder of ground-truth PNGs"
            ) from None
        except OSError as error:
            raise DatasetError(f"cannot read mask '{path}' ({error}); restore the file") from None
        invalid = (mask > self.num_classes) & (mask != IGNORE_INDEX)
        if invalid.any():
            values = sorted(int(value) for value in np.unique(mask[invalid]))[:8]
            raise DatasetError(
                f"mask '{path}' holds values {values} outside 0..{self.num_classes} and {IGNORE_INDEX}; "
                f"check datasets.{self.name}.classes or the mask file"
            )
        self._check_mask_size(image_id, (mask.shape[1], mask.shape[0]))
        return mask

    def _check_mask_size(self, image_id: str, mask_size: tuple[int, int]) -> None:
        """A mask of another size than its image (read from the image's header) is the dataset's fault,
        not that of a store scored against it: say so before a stage blames the store."""
        image_size = self.image_size(image_id)
        if mask_size != image_size:
            raise DatasetError(
                f"mask '{self.mask_path(image_id)}' is {mask_size[0]}x{mask_size[1]} but image "
                f"'{self.image_path(image_id)}' is {image_size[0]}x{image_size[1]}; restore the mask of this "
                f"image (or remove '{image_id}' from the split list)"
            )

    def _labels_from_table(self, image_id: str) -> np.ndarray:
        if self._label_table is None:
            self._label_table = self._load_cls_labels()
        key = self._table_key(image_id)
        if key not in self._label_table:
            raise DatasetError(
                f"image '{image_id}' is absent from labels file '{self.cls_labels_path}' "
                f"(datasets.{self.name}.cls_labels); regenerate it for this split or set cls_labels to null"
            )
        return self._label_table[key].copy()

    def _table_key(self, image_id: str) -> str:
        return image_id

    def _load_cls_labels(self) -> dict[str, np.ndarray]:
        path = self.cls_labels_path
        assert path is not None
        if not path.is_file():
            raise DatasetError(
                f"labels file '{path}' (datasets.{self.name}.cls_labels) does not exist; create it or set "
                "cls_labels to null to read labels from the annotations"
            )
        try:
            table = np.load(path, allow_pickle=True).item()
        except (OSError, ValueError, EOFError) as error:
            raise DatasetError(
                f"labels file '{path}' is not a pickled dict of label vectors ({error}); regenerate it"
            ) from None
        if not isinstance(table, dict):
            raise DatasetError(f"labels file '{path}' holds a {type(table).__name__}, not a dict id → labels")
        labels: dict[str, np.ndarray] = {}
        for raw_key, value in table.items():
            vector = np.asarray(value, dtype=np.float32).reshape(-1)
            if vector.shape[0] != self.num_classes:
                raise DatasetError(
                    f"labels file '{path}' gives image '{raw_key}' {vector.shape[0]} labels, but "
                    f"datasets.{self.name} has {self.num_classes} classes; use the labels file of this dataset"
                )
            labels[self._label_key(raw_key)] = vector
        return labels

    def labels(self, image_id: str) -> np.ndarray:
        """Multi-hot image labels ``float32 [C]``."""
        if self.cls_labels_path is not None:
            return self._labels_from_table(image_id)
        return self._labels_from_annotations(image_id)

    def check_split_headers(self, split: str, masks: bool = True) -> int:
        """The checks a chain needs before its first training step, without decoding any image: the list
        parses, is not empty and names existing images (:meth:`ids`), every image header reads and its
        JPEG is complete, every image has labels and, with ``masks``, a ground-truth mask of the image's
        size with values in range (masks are small PNGs: decoded). Returns the number of images."""
        ids = self.ids(split)
        for image_id in ids:
            self.labels(image_id)
            if masks:
                self.mask(image_id)  # values, and the size against the image's header
            else:
                self.image_size(image_id)
        return len(ids)

    def check_split(self, split: str, masks: bool = True) -> None:
        """Validate a whole split: every image decodes, has labels (at least one positive unless the
        dataset allows unlabelled images) and, with ``masks``, a GT mask of the image's size in range."""
        for image_id in self.ids(split):
            image = self.image(image_id)
            labels = self.labels(image_id)
            if not self.allows_unlabelled_images and not labels.any():
                raise DatasetError(
                    f"image '{image_id}' of split '{split}' has no positive label in "
                    f"'{self.cls_labels_path or self.root / 'Annotations'}'; remove it from the list or fix its labels"
                )
            if masks:
                mask = self.mask(image_id)
                if mask.shape != image.shape[:2]:
                    raise DatasetError(
                        f"mask '{self.mask_path(image_id)}' is {mask.shape[1]}x{mask.shape[0]} but image "
                        f"'{self.image_path(image_id)}' is {image.shape[1]}x{image.shape[0]}; they must match"
                    )


JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"


def check_not_truncated(path: Path, image_id: str) -> None:
    """DatasetError for a JPEG cut short (a broken copy or download): decoders fill its missing rows with
    grey and only warn ("Premature end of JPEG file"). A complete JPEG ends with the EOI marker; a file
    that does not (some writers append bytes after it) is decoded by PIL, which refuses a truncated one."""
    with open(path, "rb") as stream:
        if stream.read(2) != JPEG_START:
            return
        stream.seek(-2, os.SEEK_END)
        if stream.read(2) == JPEG_END:
            return
    try:
        with Image.open(path) as opened:
            opened.load()
    except OSError as error:
        raise DatasetError(
            f"image '{path}' is a truncated JPEG ({error}); restore the file or remove '{image_id}' from the "
            "split list"
        ) from None


@DATASET_FORMATS.register("voc")
class VOCReader(DatasetReader):
    """PASCAL VOC 2012 with the SBD-augmented masks, or any dataset in that layout (the synthetic one)."""

    format = "voc"
