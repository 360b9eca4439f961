"""Preparation of VOC 2012 + SBD and COCO 2014 from archives the tests fabricate in the official formats.

* a tar in VOC's layout (``VOCdevkit/VOC2012/...``);
* a tgz in SBD's layout whose ``cls/*.mat`` are written with ``scipy.io.savemat`` as the ``GTcls``
  struct (``Segmentation``, ``Boundaries``, ``CategoriesPresent``);
* COCO zips whose instances JSON holds polygons, a compressed RLE and an uncompressed-RLE crowd region.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

pytest.importorskip("scipy")
pytest.importorskip("pycocotools")

from pycocotools import mask as coco_mask  # noqa: E402
from scipy import sparse  # noqa: E402
from scipy.io import savemat  # noqa: E402

from wsss_core.data import open_dataset  # noqa: E402
from wsss_core.data.archives import ARCHIVES, check_archive  # noqa: E402
from wsss_core.data.classes import voc_palette  # noqa: E402
from wsss_core.data.coco_prepare import semantic_mask  # noqa: E402
from wsss_core.data.voc_prepare import sbd_segmentation, train_aug_ids  # noqa: E402
from wsss_core.errors import DatasetError  # noqa: E402
from wsss_core.stages.prepare_coco import prepare_coco  # noqa: E402
from wsss_core.stages.prepare_voc import prepare_voc  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
VOC_NAMES = ("aeroplane", "bicycle", "bird")  # the classes the fabricated images show (labels 1..3)
COCO_CATEGORY_IDS = [*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
                     *range(72, 83), *range(84, 91)]  # COCO 2014's 80 ids, with its gaps

# ids: VOC segmentation train / val, and SBD-only images (their JPEGs are in the VOC tar, as in reality)
VOC_TRAIN = ["2007_000001", "2007_000002", "2007_000003"]
VOC_VAL = ["2007_000004", "2007_000005"]
SBD_ONLY = ["2008_000001", "2008_000002", "2008_000003", "2008_000004", "2008_000005", "2008_000006"]
SBD_TRAIN = ["2007_000001", "2008_000001", "2008_000002", "2008_000005", "2008_000006", "2007_000004"]  # 2007_000004 is VOC val: excluded
SBD_VAL = ["2008_000003", "2008_000004", "2007_000002"]


def _palette_png(mask: np.ndarray) -> bytes:
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(voc_palette().reshape(-1).tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


def _add(bundle: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    bundle.addfile(info, io.BytesIO(data))


def _scene(index: int, height: int = 48, width: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """An image with one or two coloured rectangles and its class map (labels 1..3)."""
    rng = np.random.default_rng(index)
    image = np.full((height, width, 3), 90, dtype=np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    for label in sorted(set(int(value) for value in rng.integers(1, 4, size=2))):
        top, left = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
        mask[top:top + height // 2, left:left + width // 2] = label
        image[mask == label] = (80 * label, 255 - 70 * label, 40 * label)
    return image, mask


def fabricate_voc_archives(folder: Path) -> dict[str, Path]:
    """VOCtrainval_11-May-2012.tar and benchmark.tgz in the official layouts (tiny)."""
    folder.mkdir(parents=True, exist_ok=True)
    voc_tar, sbd_tgz = folder / "VOCtrainval_11-May-2012.tar", folder / "benchmark.tgz"
    scenes = {image_id: _scene(index) for index, image_id in enumerate(VOC_TRAIN + VOC_VAL + SBD_ONLY)}
    with tarfile.open(voc_tar, "w") as bundle:
        base = "VOCdevkit/VOC2012"
        for image_id, (image, mask) in scenes.items():
            _add(bundle, f"{base}/JPEGImages/{image_id}.jpg", _jpeg(image))
            names = "".join(f"<object><name>{VOC_NAMES[label - 1]}</name></object>"
                            for label in np.unique(mask) if label)
            _add(bundle, f"{base}/Annotations/{image_id}.xml", f"<annotation>{names}</annotation>".encode())
            if image_id in VOC_TRAIN + VOC_VAL:
                band = mask.copy()
                band[cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0] = 255
                _add(bundle, f"{base}/SegmentationClass/{image_id}.png", _palette_png(band))
        _add(bundle, f"{base}/ImageSets/Segmentation/train.txt", ("\n".join(VOC_TRAIN) + "\n").encode())
        _add(bundle, f"{base}/ImageSets/Segmentation/val.txt", ("\n".join(VOC_VAL) + "\n").encode())
        _add(bundle, f"{base}/SegmentationObject/2007_000001.png", _palette_png(scenes["2007_000001"][1]))
    with tarfile.open(sbd_tgz, "w:gz") as bundle:
        base = "benchmark_RELEASE/dataset"
        for image_id in sorted(set(SBD_TRAIN + SBD_VAL)):
            image, mask = scenes[image_id]
            if image_id in VOC_TRAIN:  # SBD's own annotation differs from VOC's: VOC's must win
                mask = np.where(mask > 0, 3, 0).astype(np.uint8)
            buffer = io.BytesIO()
            boundaries = np.empty((20, 1), dtype=object)
            for index in range(20):
                boundaries[index, 0] = sparse.csc_matrix(mask.shape, dtype=np.uint8)
            savemat(buffer, {"GTcls": {"Segmentation": mask, "Boundaries": boundaries,
                                       "CategoriesPresent": np.unique(mask[mask > 0]).astype(np.uint8)}})
            _add(bundle, f"{base}/cls/{image_id}.mat", buffer.getvalue())
            _add(bundle, f"{base}/img/{image_id}.jpg", _jpeg(image))
        _add(bundle, f"{base}/train.txt", ("\n".join(SBD_TRAIN) + "\n").encode())
        _add(bundle, f"{base}/val.txt", ("\n".join(SBD_VAL) + "\n").encode())
    return {"voc2012": voc_tar, "sbd": sbd_tgz, "scenes": scenes}


VOC_EXPECT = {"train_aug": 9, "train": 3, "val": 2, "sbd_train": 6, "sbd_val": 3, "masks": 11}


def voc_dataset(root: Path, archives: dict[str, Path], name: str = "vocmini") -> dict:
    return {
        "name": name, "format": "voc", "classes": "voc", "like": "synth", "root": str(root), "cls_labels": None,
        "splits": {split: f"ImageSets/Segmentation/{split}.txt" for split in ("train_aug", "train", "val")},
        "roles": {"train": "train_aug", "score": "train", "evaluate": "val"},
        "prepare": {"archives": {role: str(archives[role]) for role in ("voc2012", "sbd")},
                    "verify_checksums": False, "expect": dict(VOC_EXPECT)},
    }


def test_sbd_struct_written_by_savemat_is_read() -> None:
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4) % 21
    buffer = io.BytesIO()
    savemat(buffer, {"GTcls": {"Segmentation": mask, "CategoriesPresent": np.array([1, 2], dtype=np.uint8)}})
    np.testing.assert_array_equal(sbd_segmentation(buffer.getvalue()), mask)
    buffer = io.BytesIO()
    savemat(buffer, {"GTinst": {"Segmentation": mask}})
    with pytest.raises(DatasetError, match="no GTcls.Segmentation"):
        sbd_segmentation(buffer.getvalue(), "cls/x.mat")


def test_train_aug_is_sbd_train_val_and_voc_train_minus_voc_val() -> None:
    assert train_aug_ids(SBD_TRAIN, SBD_VAL, VOC_TRAIN, VOC_VAL) == sorted(
        {"2007_000001", "2007_000002", "2007_000003", "2007_000004", *SBD_ONLY} - {"2007_000004"})


def test_prepare_voc_merges_masks_voc_wins_and_checks_counts(tmp_path: Path) -> None:
    archives = fabricate_voc_archives(tmp_path / "archives")
    root = tmp_path / "VOC2012"
    dataset = voc_dataset(root, archives)
    manifest = prepare_voc({"dataset": dataset}, root / "prepared.json")
    assert manifest["counts"]["train_aug"] == 9 and manifest["counts"]["masks"] == 11
    assert (root / "prepared.json").is_file() and not (root / "SegmentationObject").exists()
    reader = open_dataset(dataset)
    assert reader.ids("train_aug") == ["2007_000001", "2007_000002", "2007_000003", "2008_000001", "2008_000002",
                                       "2008_000003", "2008_000004", "2008_000005", "2008_000006"]
    # VOC's mask (with its 255 band) wins over SBD's relabelled one; SBD-only ids get SBD's class map
    voc_mask = reader.mask("2007_000001")
    assert 255 in voc_mask and set(np.unique(voc_mask)) - {0, 255} == set(np.unique(archives["scenes"]["2007_000001"][1])) - {0}
    np.testing.assert_array_equal(reader.mask("2008_000002"), archives["scenes"]["2008_000002"][1])
    with Image.open(root / "SegmentationClassAug" / "2008_000002.png") as png:
        assert png.mode == "P"
    reader.check_split("train_aug")
    reader.check_split("val")
    # a count that differs from the expected one stops with the config key
    dataset["prepare"]["expect"]["train_aug"] = 10582
    with pytest.raises(DatasetError, match=r"9 train_aug but 10582 .*datasets.vocmini.prepare.expect.train_aug"):
        prepare_voc({"dataset": dataset}, root / "prepared.json")


def test_missing_or_wrong_archive_names_the_archive_and_the_key(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"benchmark.tgz \(sbd\) not found at '.*nothing.tgz'.*datasets.voc.prepare.archives.sbd"):
        check_archive(tmp_path / "nothing.tgz", "sbd", "voc", verify_checksum=True)
    wrong = tmp_path / "VOCtrainval_11-May-2012.tar"
    wrong.write_bytes(b"not the VOC tar")
    with pytest.raises(DatasetError, match=f"datasets.voc.prepare.archives.voc2012\\) has MD5 .* not the published {ARCHIVES['voc2012'].md5}"):
        check_archive(wrong, "voc2012", "voc", verify_checksum=True)
    with pytest.raises(DatasetError, match=r"datasets.voc.prepare.archives.voc2012\) cannot be read .*re-download it"):
        prepare_voc({"dataset": {"name": "voc", "format": "voc", "root": str(tmp_path / "out"),
                                 "prepare": {"archives": {"voc2012": str(wrong), "sbd": str(wrong)},
                                             "verify_checksums": False}}}, tmp_path / "out" / "prepared.json")


# ----------------------------------------------------------------------------------------------- COCO
def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's crowd format: run lengths of the column-major mask, starting with a zero run."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"counts": [int(count) for count in counts], "size": list(mask.shape)}


def coco_scene(height: int = 40, width: int = 60) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Annotations of one image: a person polygon, a dog as compressed RLE overlapping it, and a crowd of
    people (uncompressed RLE) partly under the dog."""
    person = np.zeros((height, width), dtype=np.uint8)
    person[5:25, 5:30] = 1
    dog = np.zeros_like(person)
    dog[15:35, 20:45] = 1
    crowd = np.zeros_like(person)
    crowd[25:40, 35:60] = 1
    compressed = coco_mask.encode(np.asfortranarray(dog))
    compressed["counts"] = compressed["counts"].decode()
    annotations = [
        {"id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[5, 5, 30, 5, 30, 25, 5, 25]]},
        {"id": 2, "category_id": 18, "iscrowd": 0, "segmentation": compressed},
        {"id": 3, "category_id": 1, "iscrowd": 1, "segmentation": _uncompressed_rle(crowd)},
    ]
    return annotations, {"person": person, "dog": dog, "crowd": crowd}


def test_semantic_mask_rule_for_overlaps_and_crowd_regions() -> None:
    annotations, parts = coco_scene()
    labels = {category_id: index + 1 for index, category_id in enumerate(COCO_CATEGORY_IDS)}
    person, dog = labels[1], labels[18]
    mask = semantic_mask(annotations, 40, 60, labels, crowd="class")
    polygon = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([[5, 5, 30, 5, 30, 25, 5, 25]], 40, 60))) > 0
    assert (mask[polygon] == person).all()  # the first instance keeps the overlap with the dog
    assert (mask[(parts["dog"] > 0) & ~polygon] == dog).all()
    crowd_only = (parts["crowd"] > 0) & (parts["dog"] == 0)
    assert (mask[crowd_only] == person).all()  # crowd painted with its class (the papers' masks)
    assert (mask[(parts["crowd"] > 0) & (parts["dog"] > 0)] == dog).all()  # the dog came first
    ignored = semantic_mask(annotations, 40, 60, labels, crowd="ignore")
    assert (ignored[crowd_only] == 255).all() and (ignored[polygon] == person).all()
    assert set(np.unique(ignored)) == {0, person, dog, 255}
    # reversed file order: the dog now wins the overlap
    flipped = semantic_mask(annotations[1::-1], 40, 60, labels)
    assert (flipped[polygon & (parts["dog"] > 0)] == dog).all()


def fabricate_coco_archives(folder: Path, per_subset: int = 10) -> dict[str, Path]:
    """train2014.zip, val2014.zip and annotations_trainval2014.zip (tiny), each image with the scene above
    or, for one image per subset, no annotation at all."""
    folder.mkdir(parents=True, exist_ok=True)
    categories = [{"id": category_id, "name": f"c{category_id}", "supercategory": "x"} for category_id in COCO_CATEGORY_IDS]
    paths = {"coco_train2014": folder / "train2014.zip", "coco_val2014": folder / "val2014.zip",
             "coco_annotations": folder / "annotations_trainval2014.zip"}
    instances = {}
    for offset, (role, subset) in enumerate((("coco_train2014", "train2014"), ("coco_val2014", "val2014"))):
        images, annotations = [], []
        with zipfile.ZipFile(paths[role], "w") as bundle:
            for index in range(per_subset):
                image_id = 1000 * (offset + 1) + index
                scene, parts = coco_scene()
                image = np.full((40, 60, 3), 100, dtype=np.uint8)
                image[parts["person"] > 0] = (220, 60, 60)
                image[parts["dog"] > 0] = (60, 60, 220)
                bundle.writestr(f"{subset}/COCO_{subset}_{image_id:012d}.jpg", _jpeg(image))
                images.append({"id": image_id, "height": 40, "width": 60, "file_name": f"COCO_{subset}_{image_id:012d}.jpg"})
                if index:  # the first image of each subset has no object (COCO has ~700 such train images)
                    annotations += [{**item, "id": image_id * 10 + number, "image_id": image_id}
                                    for number, item in enumerate(scene)]
        instances[subset] = {"images": images, "annotations": annotations, "categories": categories}
    with zipfile.ZipFile(paths["coco_annotations"], "w") as bundle:
        for subset, payload in instances.items():
            bundle.writestr(f"annotations/instances_{subset}.json", json.dumps(payload))
            bundle.writestr(f"annotations/captions_{subset}.json", "{}")
    return paths


def coco_dataset(root: Path, archives: dict[str, Path], name: str = "cocomini") -> dict:
    return {
        "name": name, "format": "coco", "classes": "coco", "like": "synth", "root": str(root),
        "cls_labels": "cls_labels_coco.npy",
        "splits": {"train": "train14.txt", "train_small": "train14_small.txt", "val": "val14.txt"},
        "roles": {"train": "train", "score": "train_small", "evaluate": "val"},
        "prepare": {"archives": {role: str(path) for role, path in archives.items()},
                    "expect": {"train2014": 10, "val2014": 10}, "small_size": 3},
    }


def test_prepare_coco_writes_masks_labels_and_lists(tmp_path: Path) -> None:
    archives = fabricate_coco_archives(tmp_path / "archives")
    root = tmp_path / "COCO2014"
    dataset = coco_dataset(root, archives)
    manifest = prepare_coco({"dataset": dataset}, root / "prepared.json")
    assert manifest["counts"] == {"train2014": 10, "train2014_without_objects": 1, "val2014": 10,
                                  "val2014_without_objects": 1, "train14_small": 3}
    reader = open_dataset(dataset)
    assert len(reader.ids("train")) == 10 and len(reader.ids("train_small")) == 3
    mask = reader.mask("COCO_train2014_000000001001")
    assert set(np.unique(mask)) == {0, 1, 17}  # person (id 1) and dog (id 18 → label 17)
    assert not reader.mask("COCO_val2014_000000002000").any()
    labels = reader.labels("COCO_val2014_000000002003")
    assert labels[0] == 1 and labels[16] == 1 and labels.sum() == 2
    # the same labels as the reader rebuilds from the instances JSON
    rebuilt = open_dataset({**dataset, "cls_labels": None}).labels("COCO_val2014_000000002003")
    np.testing.assert_array_equal(labels, rebuilt)
    reader.check_split("val")
    dataset["prepare"]["expect"]["val2014"] = 40504
    with pytest.raises(DatasetError, match="10 val2014 but 40504 .*prepare.expect.val2014"):
        prepare_coco({"dataset": dataset}, root / "prepared.json")


# ------------------------------------------------------------------------------------- Snakemake chain
@pytest.mark.e2e
def test_snakemake_prepares_voc_and_coco_from_archives_and_runs_a_chain(tmp_path: Path) -> None:
    voc = fabricate_voc_archives(tmp_path / "archives" / "voc")
    coco = fabricate_coco_archives(tmp_path / "archives" / "coco")
    datasets = {"vocmini": voc_dataset("data/vocmini/VOC2012", voc), "cocomini": coco_dataset("data/COCO2014", coco)}
    for entry in datasets.values():
        entry.pop("name")
    overlay = tmp_path / "prepared.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": datasets}))
    targets = ["results/vocmini/mctformer/seeds/eval.json", "results/cocomini/mctformer/seeds/eval.json"]
    command = [
        str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(REPOSITORY / "Snakefile"),
        "--directory", str(tmp_path), "--configfile", str(REPOSITORY / "config.yaml"),
        str(REPOSITORY / "tests" / "e2e_config.yaml"), str(overlay), "--cores", "2", *targets,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-6000:]
    assert json.loads((tmp_path / "data/vocmini/VOC2012/prepared.json").read_text())["counts"]["train_aug"] == 9
    assert json.loads((tmp_path / "data/COCO2014/prepared.json").read_text())["counts"]["val2014"] == 10
    for target in targets:
        scores = json.loads((tmp_path / target).read_text())
        assert scores["num_images"] == 3 and 0.0 <= scores["best"]["miou"] <= 1.0
    # a missing archive stops before any job with its name and config key
    datasets["vocmini"]["prepare"]["archives"]["sbd"] = str(tmp_path / "nowhere" / "benchmark.tgz")
    overlay.write_text(yaml.safe_dump({"datasets": datasets}))
    (tmp_path / "data/vocmini/VOC2012/prepared.json").unlink()
    failed = subprocess.run(command[:-2] + ["results/vocmini/mctformer/seeds/eval.json"], capture_output=True,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert failed.returncode != 0
    assert "benchmark.tgz (sbd) not found" in failed.stderr and "datasets.vocmini.prepare.archives.sbd" in failed.stderr
