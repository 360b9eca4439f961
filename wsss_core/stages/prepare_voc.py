"""Stage ``prepare_voc``: the VOC 2012 tar + SBD's benchmark.tgz → the layout the VOC reader reads.

    python -m wsss_core.stages.prepare_voc --config JSON --output data/VOCdevkit/VOC2012/prepared.json

``config["dataset"]`` is the ``datasets.<name>`` block; its ``prepare`` entry holds ``archives``
(``voc2012``: VOCtrainval_11-May-2012.tar, ``sbd``: benchmark.tgz), ``verify_checksums`` (default true:
the MD5s torchvision publishes) and ``expect`` (counts to check; default the official ones:
train_aug 10,582, train 1,464, val 1,449, masks 12,031). Into ``dataset.root`` it writes
``JPEGImages/``, ``SegmentationClass/``, ``Annotations/``, ``ImageSets/Segmentation/{train,val}.txt``
(from the VOC tar), ``SegmentationClassAug/`` (VOC's mask where VOC has one, else SBD's) and
``ImageSets/Segmentation/train_aug.txt``; then checks that every listed image and mask exists with
matching sizes, and writes ``--output`` last (counts, archives, provenance), so a folder without it
was never completed.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wsss_core.data.archives import members, check_archive, extract, prepare_settings
from wsss_core.data.voc_prepare import (
    MASK_DIR,
    SBD_PREFIX,
    VOC_EXPECTED_COUNTS,
    VOC_FOLDERS,
    VOC_PREFIX,
    check_counts,
    image_size,
    read_ids,
    sbd_segmentation,
    train_aug_ids,
    write_palette_png,
)
from wsss_core.errors import DatasetError
from wsss_core.stages._cli import run, stage_parser
from wsss_core.utils.atomic import write_json, write_text
from wsss_core.utils.provenance import provenance

STAGE = "wsss_core.stages.prepare_voc"
LOG = logging.getLogger(STAGE)
LISTS = "ImageSets/Segmentation"


def _stream_sbd(archive: Path, dataset: str, on_mat: Callable[[str, bytes], None]) -> dict[str, list[str]]:
    """SBD's split lists; every ``cls/<id>.mat`` is handed to ``on_mat(id, bytes)`` as the archive streams
    by (no 11k temporary files, no archive in memory)."""
    lists: dict[str, list[str]] = {}
    for name, opener in members(archive, "sbd", dataset):
        if not name.startswith(SBD_PREFIX + "/"):
            continue
        relative = name[len(SBD_PREFIX) + 1:]
        if relative in ("train.txt", "val.txt"):
            with opener() as stream:
                lists[relative[:-4]] = read_ids(stream.read().decode())
        elif relative.startswith("cls/") and relative.endswith(".mat"):
            with opener() as stream:
                on_mat(Path(relative).stem, stream.read())
    for split in ("train", "val"):
        if split not in lists:
            raise DatasetError(f"'{archive}' (datasets.{dataset}.prepare.archives.sbd) has no {SBD_PREFIX}/{split}.txt: "
                               "it is not SBD's benchmark.tgz")
    return lists


def prepare_voc(config: dict[str, Any], output: Path) -> dict[str, Any]:
    dataset = config["dataset"]
    name = str(dataset.get("name", "voc"))
    settings = prepare_settings(dataset)
    root = Path(dataset["root"])
    started = time.perf_counter()
    archives = {role: check_archive(settings["archives"].get(role), role, name, settings["verify_checksums"])
                for role in ("voc2012", "sbd")}
    root.mkdir(parents=True, exist_ok=True)
    written = extract(Path(archives["voc2012"]["path"]), root, VOC_PREFIX,
                      keep=lambda path: path.startswith(VOC_FOLDERS), role="voc2012", dataset=name)
    if written == 0:
        raise DatasetError(f"'{archives['voc2012']['path']}' (datasets.{name}.prepare.archives.voc2012) holds nothing "
                           f"under {VOC_PREFIX}/: it is not the VOC 2012 trainval tar")
    voc_lists = {}
    for split in ("train", "val"):
        path = root / LISTS / f"{split}.txt"
        if not path.is_file():
            raise DatasetError(f"the VOC tar has no {VOC_PREFIX}/{LISTS}/{split}.txt; re-download "
                               f"datasets.{name}.prepare.archives.voc2012")
        voc_lists[split] = read_ids(path.read_text())
    # SegmentationClassAug: VOC's own mask wins where it exists (its 255 boundary band included).
    mask_dir = root / MASK_DIR
    shutil.rmtree(mask_dir, ignore_errors=True)
    mask_dir.mkdir(parents=True)
    voc_masks = {path.stem: path for path in (root / "SegmentationClass").glob("*.png")}
    sbd_ids: set[str] = set()

    def convert(image_id: str, raw: bytes) -> None:
        sbd_ids.add(image_id)
        if image_id in voc_masks:
            return
        jpeg = root / "JPEGImages" / f"{image_id}.jpg"
        if not jpeg.is_file():
            raise DatasetError(f"image '{jpeg}' of SBD mask cls/{image_id}.mat is not in the VOC tar: the archives "
                               "do not match")
        mask = sbd_segmentation(raw, f"{SBD_PREFIX}/cls/{image_id}.mat")
        if mask.shape != image_size(jpeg):
            raise DatasetError(f"SBD mask cls/{image_id}.mat is {mask.shape} but '{jpeg}' is {image_size(jpeg)}; "
                               "the archives do not match")
        write_palette_png(mask_dir / f"{image_id}.png", mask)

    sbd_lists = _stream_sbd(Path(archives["sbd"]["path"]), name, convert)
    for image_id, path in voc_masks.items():
        shutil.copyfile(path, mask_dir / f"{image_id}.png")

    train_aug = train_aug_ids(sbd_lists["train"], sbd_lists["val"], voc_lists["train"], voc_lists["val"])
    missing = [image_id for image_id in train_aug + voc_lists["val"] if not (mask_dir / f"{image_id}.png").is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} ids of train_aug/val have no mask (e.g. '{missing[0]}'): SBD's cls/ or VOC's "
                           "SegmentationClass is incomplete; re-download the archives")
    write_text(root / LISTS / "train_aug.txt", "\n".join(train_aug) + "\n")
    counts = {"train_aug": len(train_aug), "train": len(voc_lists["train"]), "val": len(voc_lists["val"]),
              "sbd_train": len(sbd_lists["train"]), "sbd_val": len(sbd_lists["val"]),
              "masks": sum(1 for _ in mask_dir.glob("*.png")), "voc_masks": len(voc_masks), "sbd_mats": len(sbd_ids)}
    expected = {**VOC_EXPECTED_COUNTS, **settings["expect"]}
    check_counts(counts, expected, name)
    manifest = {"dataset": name, "root": str(root), "counts": counts, "expected": expected, "archives": archives,
                "mask_rule": "SegmentationClassAug = VOC SegmentationClass where it exists, else SBD GTcls.Segmentation",
                "seconds": round(time.perf_counter() - started, 2), "provenance": provenance(config, STAGE)}
    write_json(output, manifest)
    LOG.info("prepared %s in %s: %s", name, root, counts)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser: argparse.ArgumentParser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="<root>/prepared.json, written last")
    arguments = parser.parse_args(argv)
    run(lambda: prepare_voc(arguments.config, arguments.output))


if __name__ == "__main__":
    main()
