"""Stage ``prepare_coco``: COCO 2014 zips → the layout the COCO reader reads.

    python -m wsss_core.stages.prepare_coco --config JSON --output data/COCO2014/prepared.json

``config["dataset"]`` is the ``datasets.<name>`` block; its ``prepare`` entry holds ``archives``
(``coco_train2014``: train2014.zip, ``coco_val2014``: val2014.zip, ``coco_annotations``:
annotations_trainval2014.zip), ``crowd`` (``class`` | ``ignore``, see :mod:`wsss_core.data.coco_prepare`),
``small_size`` (ids in ``train14_small.txt``, default 5,207) and ``expect`` (image counts; default
82,783 train2014 and 40,504 val2014). Into ``dataset.root`` it writes ``train2014/``, ``val2014/``,
``annotations/instances_{train,val}2014.json``, ``SegmentationClass/{subset}/COCO_{subset}_%012d.png``
(0..80 + 255), ``cls_labels_coco.npy`` (int image id → float32 [80], as CTI's), ``train14.txt``,
``val14.txt`` (every image, ``%012d``) and ``train14_small.txt`` (evenly spread train ids: CTI's own
5.2k list is not part of the archives). ``--output`` is written last (counts, archives, rule).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from wsss_core.data.archives import check_archive, extract, prepare_settings
from wsss_core.data.classes import COCO_CLASSES
from wsss_core.data.coco_prepare import (
    COCO_EXPECTED_COUNTS,
    SMALL_SPLIT_SIZE,
    SUBSETS,
    category_labels,
    image_labels,
    semantic_mask,
    small_subset,
)
from wsss_core.data.voc_prepare import check_counts, image_size, write_palette_png
from wsss_core.errors import DatasetError
from wsss_core.stages._cli import run, stage_parser
from wsss_core.utils.atomic import atomic_path, write_json, write_text
from wsss_core.utils.provenance import provenance

STAGE = "wsss_core.stages.prepare_coco"
LOG = logging.getLogger(STAGE)
ROLES = {"coco_train2014": "train2014", "coco_val2014": "val2014"}


def _instances(root: Path, subset: str, name: str) -> dict[str, Any]:
    path = root / "annotations" / f"instances_{subset}.json"
    if not path.is_file():
        raise DatasetError(f"annotations_trainval2014.zip (datasets.{name}.prepare.archives.coco_annotations) has no "
                           f"annotations/instances_{subset}.json; re-download it")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"'{path}' is not valid JSON ({error}); re-download annotations_trainval2014.zip") from None


def prepare_coco(config: dict[str, Any], output: Path) -> dict[str, Any]:
    dataset = config["dataset"]
    name = str(dataset.get("name", "coco"))
    settings = prepare_settings(dataset)
    prepare = dataset.get("prepare") or {}
    crowd = str(prepare.get("crowd", "class"))
    small_size = int(prepare.get("small_size", SMALL_SPLIT_SIZE))
    root = Path(dataset["root"])
    started = time.perf_counter()
    archives = {role: check_archive(settings["archives"].get(role), role, name, settings["verify_checksums"])
                for role in ("coco_train2014", "coco_val2014", "coco_annotations")}
    root.mkdir(parents=True, exist_ok=True)
    for role, subset in ROLES.items():
        extract(Path(archives[role]["path"]), root / subset, subset, keep=lambda path: path.endswith(".jpg"),
                role=role, dataset=name)
    extract(Path(archives["coco_annotations"]["path"]), root / "annotations", "annotations",
            keep=lambda path: path.startswith("instances_"), role="coco_annotations", dataset=name)

    counts: dict[str, int] = {}
    table: dict[int, np.ndarray] = {}
    lists: dict[str, list[int]] = {}
    for subset in SUBSETS:
        instances = _instances(root, subset, name)
        labels = category_labels(instances.get("categories", []), len(COCO_CLASSES), f"instances_{subset}.json")
        by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for annotation in instances.get("annotations", []):
            by_image[int(annotation["image_id"])].append(annotation)
        ids = []
        for image in instances.get("images", []):
            image_id, height, width = int(image["id"]), int(image["height"]), int(image["width"])
            stem = f"COCO_{subset}_{image_id:012d}"
            jpeg = root / subset / f"{stem}.jpg"
            if not jpeg.is_file():
                raise DatasetError(f"image '{jpeg}' of instances_{subset}.json is not in {subset}.zip "
                                   f"(datasets.{name}.prepare.archives.coco_{subset}): the archives do not match")
            if image_size(jpeg) != (height, width):
                raise DatasetError(f"'{jpeg}' is {image_size(jpeg)} but instances_{subset}.json says {(height, width)}")
            mask = semantic_mask(by_image.get(image_id, []), height, width, labels, crowd)
            write_palette_png(root / "SegmentationClass" / subset / f"{stem}.png", mask)
            table[image_id] = image_labels(by_image.get(image_id, []), labels, len(COCO_CLASSES))
            ids.append(image_id)
        lists[subset] = sorted(ids)
        counts[subset] = len(ids)
        counts[f"{subset}_without_objects"] = sum(1 for image_id in ids if not table[image_id].any())
    write_text(root / "train14.txt", "".join(f"{image_id:012d}\n" for image_id in lists["train2014"]))
    write_text(root / "val14.txt", "".join(f"{image_id:012d}\n" for image_id in lists["val2014"]))
    small = small_subset(lists["train2014"], small_size)
    write_text(root / "train14_small.txt", "".join(f"{image_id:012d}\n" for image_id in small))
    counts["train14_small"] = len(small)
    with atomic_path(root / "cls_labels_coco.npy") as temporary:
        with open(temporary, "wb") as stream:
            np.save(stream, table, allow_pickle=True)
    expected = {**COCO_EXPECTED_COUNTS, **settings["expect"]}
    check_counts(counts, expected, name)
    manifest = {"dataset": name, "root": str(root), "counts": counts, "expected": expected, "archives": archives,
                "mask_rule": {"crowd": crowd, "overlap": "first instance in file order keeps the pixel",
                              "labels": "1 + index of the sorted category ids; 0 background; 255 ignore"},
                "train14_small": "evenly spread train2014 ids (CTI's own list is not in the archives)",
                "seconds": round(time.perf_counter() - started, 2), "provenance": provenance(config, STAGE)}
    write_json(output, manifest)
    LOG.info("prepared %s in %s: %s", name, root, counts)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser: argparse.ArgumentParser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="<root>/prepared.json, written last")
    arguments = parser.parse_args(argv)
    run(lambda: prepare_coco(arguments.config, arguments.output))


if __name__ == "__main__":
    main()
