"""Dataset readers on a tiny synthetic set and on hand-made broken datasets; torch datasets."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsss_core.data import COCOReader, VOCReader, open_dataset
from wsss_core.data.classes import COCO_CLASSES, VOC_CLASSES, voc_palette
from wsss_core.data.datasets import SegmentationTrainingDataset, TrainingDataset
from wsss_core.data.visualize import colorize, sample_grid
from wsss_core.errors import ConfigError, DatasetError, StoreError
from wsss_core.stages.synth_dataset import build_dataset
from wsss_core.utils.seeding import sample_rng

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readers") / "dataset"
    build_dataset({"stage": {"image_size": 48, "num_train_aug": 10, "num_train": 4, "num_val": 2, "seed": 1}}, root)
    return root


@pytest.fixture
def copy_root(synth_root: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic set, to break."""
    return Path(shutil.copytree(synth_root, tmp_path / "broken"))


def config(root: Path, **overrides) -> dict:
    base = {"name": "synth", "format": "voc", "root": str(root), "classes": "synth", "cls_labels": None,
            "splits": {split: f"ImageSets/Segmentation/{split}.txt" for split in ("train_aug", "train", "val")}}
    return {**base, **overrides}


def save_mask(path: Path, values: np.ndarray) -> None:
    """A palette PNG with the full VOC palette (without one PIL re-indexes single-colour images)."""
    image = Image.fromarray(values.astype(np.uint8), mode="P")
    image.putpalette(voc_palette().reshape(-1).tolist())
    image.save(path)


def first_id(root: Path) -> str:
    return (root / "ImageSets/Segmentation/train_aug.txt").read_text().split()[0]


# ------------------------------------------------------------------------------- good inputs

def test_reader_basics(synth_root: Path) -> None:
    reader = open_dataset(config(synth_root))
    assert isinstance(reader, VOCReader) and reader.name == "synth" and reader.num_classes == 20
    ids = reader.ids("train_aug")
    assert len(ids) == 10 and ids[0] == "synth_000000"
    image, mask, labels = reader.image(ids[0]), reader.mask(ids[0]), reader.labels(ids[0])
    assert image.dtype == np.uint8 and image.shape == (48, 48, 3)
    assert mask.dtype == np.uint8 and mask.shape == (48, 48)
    assert labels.dtype == np.float32 and labels.shape == (20,) and labels.any()
    reader.check_split("train")


def test_image_is_rgb(tmp_path: Path, synth_root: Path) -> None:
    root = Path(shutil.copytree(synth_root, tmp_path / "rgb"))
    image_id = first_id(root)
    red = np.zeros((48, 48, 3), dtype=np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).save(root / "JPEGImages" / f"{image_id}.jpg", quality=100)
    pixel = open_dataset(config(root)).image(image_id)[10, 10]
    assert pixel[0] > 240 and pixel[1] < 15 and pixel[2] < 15


def test_two_column_lists_and_cls_labels_npy(copy_root: Path) -> None:
    ids = first_id(copy_root), "synth_000001"
    (copy_root / "two.txt").write_text("".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids))
    table = {ids[0]: np.eye(20, dtype=np.float32)[3], ids[1]: np.eye(20, dtype=np.float32)[5] * 1}
    np.save(copy_root / "labels.npy", table, allow_pickle=True)
    reader = open_dataset(config(copy_root, splits={"two": "two.txt"}, cls_labels="labels.npy"))
    assert reader.ids("two") == list(ids)
    assert np.flatnonzero(reader.labels(ids[0])).tolist() == [3]
    assert np.flatnonzero(reader.labels(ids[1])).tolist() == [5]


def test_irn_integer_keys_are_accepted(copy_root: Path) -> None:
    shutil.copy(copy_root / "JPEGImages" / f"{first_id(copy_root)}.jpg", copy_root / "JPEGImages" / "2007_000032.jpg")
    (copy_root / "voc.txt").write_text("2007_000032\n")
    np.save(copy_root / "irn.npy", {2007000032: np.eye(20, dtype=np.float32)[7]}, allow_pickle=True)
    reader = open_dataset(config(copy_root, splits={"voc": "voc.txt"}, cls_labels="irn.npy"))
    assert np.flatnonzero(reader.labels("2007_000032")).tolist() == [7]


def test_voc_class_names_from_xml(copy_root: Path) -> None:
    image_id = first_id(copy_root)
    (copy_root / "Annotations" / f"{image_id}.xml").write_text(
        "<annotation><object><name>dog</name></object><object><name>person</name></object></annotation>")
    reader = open_dataset(config(copy_root, classes="voc"))
    assert reader.class_names == VOC_CLASSES
    assert np.flatnonzero(reader.labels(image_id)).tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]


def test_reader_pickles_and_torch_dataset(synth_root: Path) -> None:
    reader = pickle.loads(pickle.dumps(open_dataset(config(synth_root))))

    def sample_fn(image, labels, rng):
        return {"pixel": int(image[0, 0, 0]), "labels": labels, "draw": float(rng.uniform())}

    dataset = TrainingDataset(reader, "train", sample_fn, seed=5)
    assert len(dataset) == 4
    sample = dataset[(2, 3)]
    image_id = reader.ids("train")[3]
    assert sample["image_id"] == image_id and sample["index"] == 3
    assert sample["draw"] == sample_rng(5, 2, 3).uniform()
    assert np.array_equal(sample["labels"], reader.labels(image_id))
    assert dataset[(2, 3)]["draw"] == sample["draw"] and dataset[(3, 3)]["draw"] != sample["draw"]
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, sampler=[(0, 0), (0, 1)])
    batch = next(iter(loader))
    assert batch["image_id"] == reader.ids("train")[:2]

    masks = {image_id: np.full((48, 48), 2, np.uint8) for image_id in reader.ids("train")}
    segmentation = SegmentationTrainingDataset(reader, "train", masks.__getitem__,
                                               lambda image, mask, rng: {"sum": int(mask.sum())}, seed=0)
    assert segmentation[(0, 1)]["sum"] == 2 * 48 * 48
    bad = SegmentationTrainingDataset(reader, "train", lambda image_id: np.zeros((4, 4), np.uint8),
                                      lambda image, mask, rng: {}, seed=0)
    with pytest.raises(StoreError, match="pseudo-mask"):
        bad[0]


def test_colorize_and_grid(synth_root: Path, tmp_path: Path) -> None:
    assert np.array_equal(colorize(np.array([[0, 1, 255]], np.uint8)), [[[0, 0, 0], [128, 0, 0], [224, 224, 192]]])
    assert voc_palette()[15].tolist() == [192, 128, 128]  # person
    reader = open_dataset(config(synth_root))
    grid = sample_grid(reader, reader.ids("train_aug")[:5], tmp_path / "grid.png", columns=2, tile=32)
    assert (tmp_path / "grid.png").is_file() and grid.shape[1] == 4 + 2 * (2 * 32 + 4 + 4)


# -------------------------------------------------------------------------------- bad inputs

def test_missing_root_names_key_and_synthetic_default(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as error:
        open_dataset(config(tmp_path / "VOC2012", name="voc"))
    message = str(error.value)
    assert str(tmp_path / "VOC2012") in message and "datasets.voc.root" in message
    assert "snakemake --cores 2 results/synth/mctformer/miou.json" in message


def test_unknown_format_and_split(synth_root: Path) -> None:
    with pytest.raises(ConfigError, match="datasets.synth.format"):
        open_dataset(config(synth_root, format="cityscapes"))
    with pytest.raises(ConfigError, match="datasets.synth.splits"):
        open_dataset(config(synth_root)).ids("test")
    with pytest.raises(ConfigError, match="datasets.synth.classes"):
        open_dataset(config(synth_root, classes="ade"))


def test_missing_list_file(copy_root: Path) -> None:
    (copy_root / "ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(DatasetError, match=r"val\.txt.*datasets\.synth\.splits\.val"):
        open_dataset(config(copy_root)).ids("val")


def test_malformed_list_line_number(copy_root: Path) -> None:
    (copy_root / "bad.txt").write_text(f"{first_id(copy_root)}\n\na b c\n")
    with pytest.raises(DatasetError, match=r"bad\.txt' line 3"):
        open_dataset(config(copy_root, splits={"bad": "bad.txt"})).ids("bad")
    (copy_root / "dup.txt").write_text(f"{first_id(copy_root)}\n{first_id(copy_root)}\n")
    with pytest.raises(DatasetError, match=r"dup\.txt' line 2 repeats"):
        open_dataset(config(copy_root, splits={"dup": "dup.txt"})).ids("dup")


def test_list_names_missing_image(copy_root: Path) -> None:
    image_id = first_id(copy_root)
    (copy_root / "JPEGImages" / f"{image_id}.jpg").unlink()
    with pytest.raises(DatasetError, match=rf"line 1 names image '{image_id}'.*JPEGImages/{image_id}\.jpg"):
        open_dataset(config(copy_root)).ids("train_aug")


def test_corrupt_image(copy_root: Path) -> None:
    image_id = first_id(copy_root)
    (copy_root / "JPEGImages" / f"{image_id}.jpg").write_bytes(b"not a jpeg at all")
    reader = open_dataset(config(copy_root))
    reader.ids("train_aug")  # cheap checks pass: the file exists
    with pytest.raises(DatasetError, match=rf"{image_id}\.jpg"):
        reader.check_split("train_aug")


def test_mask_values_out_of_range(copy_root: Path) -> None:
    image_id = first_id(copy_root)
    save_mask(copy_root / "SegmentationClassAug" / f"{image_id}.png", np.full((48, 48), 42))
    with pytest.raises(DatasetError, match=rf"{image_id}\.png' holds values \[42\] outside 0\.\.20"):
        open_dataset(config(copy_root)).check_split("train_aug")


def test_rgb_mask_and_missing_mask(copy_root: Path) -> None:
    image_id = first_id(copy_root)
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(copy_root / "SegmentationClassAug" / f"{image_id}.png")
    with pytest.raises(DatasetError, match="is a RGB image"):
        open_dataset(config(copy_root)).mask(image_id)
    with pytest.raises(DatasetError, match="datasets.synth.mask_dir"):
        open_dataset(config(copy_root, mask_dir="Nowhere")).mask(image_id)


def test_mask_size_differs_from_image(copy_root: Path) -> None:
    image_id = first_id(copy_root)
    save_mask(copy_root / "SegmentationClassAug" / f"{image_id}.png", np.zeros((40, 48)))
    with pytest.raises(DatasetError, match=r"is 48x40 but image .* restore the mask of this image"):
        open_dataset(config(copy_root)).check_split("train_aug")


def test_labels_disagreeing_with_list(copy_root: Path) -> None:
    ids = open_dataset(config(copy_root)).ids("train_aug")
    np.save(copy_root / "partial.npy", {ids[0]: np.eye(20, dtype=np.float32)[0]}, allow_pickle=True)
    with pytest.raises(DatasetError, match=rf"'{ids[1]}' is absent from labels file .*partial\.npy"):
        open_dataset(config(copy_root, cls_labels="partial.npy")).check_split("train_aug")
    np.save(copy_root / "short.npy", {ids[0]: np.ones(5, dtype=np.float32)}, allow_pickle=True)
    with pytest.raises(DatasetError, match="5 labels"):
        open_dataset(config(copy_root, cls_labels="short.npy")).labels(ids[0])
    with pytest.raises(DatasetError, match=r"missing\.npy"):
        open_dataset(config(copy_root, cls_labels="missing.npy")).labels(ids[0])


def test_bad_annotations(copy_root: Path) -> None:
    image_id = first_id(copy_root)
    xml = copy_root / "Annotations" / f"{image_id}.xml"
    xml.write_text("<annotation><object><name>unicorn</name></object></annotation>")
    with pytest.raises(DatasetError, match=rf"{image_id}\.xml' names unknown class 'unicorn'"):
        open_dataset(config(copy_root)).labels(image_id)
    xml.write_text("<annotation></annotation>")
    with pytest.raises(DatasetError, match=rf"{image_id}\.xml' has no object"):
        open_dataset(config(copy_root)).check_split("train_aug")
    xml.write_text("<annotation>")
    with pytest.raises(DatasetError, match="not valid XML"):
        open_dataset(config(copy_root)).labels(image_id)


def test_empty_split(copy_root: Path) -> None:
    (copy_root / "empty.txt").write_text("\n\n")
    with pytest.raises(DatasetError, match=r"split 'empty' is empty.*empty\.txt"):
        open_dataset(config(copy_root, splits={"empty": "empty.txt"})).ids("empty")


# ------------------------------------------------------------------------------------- COCO

@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    """Two train images and one val image in the WSSS COCO layout, with instances JSONs."""
    root = tmp_path / "COCO2014"
    for subset, number in (("train2014", 9), ("train2014", 25), ("val2014", 42)):
        (root / subset).mkdir(parents=True, exist_ok=True)
        (root / "SegmentationClass" / subset).mkdir(parents=True, exist_ok=True)
        stem = f"COCO_{subset}_{number:012d}"
        Image.fromarray(np.full((8, 10, 3), 120, np.uint8)).save(root / subset / f"{stem}.jpg")
        save_mask(root / "SegmentationClass" / subset / f"{stem}.png", np.full((8, 10), 80 if number == 9 else 0))
    # COCO category ids have gaps (1..90 for 80 classes): id 90 (toothbrush) must become class 79
    category_ids = [*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
                    *range(72, 83), *range(84, 91)]
    assert len(category_ids) == 80
    categories = [{"id": category_id, "name": str(category_id)} for category_id in category_ids]
    (root / "annotations").mkdir()
    train = {"categories": categories, "images": [{"id": 9}, {"id": 25}],
             "annotations": [{"image_id": 9, "category_id": 90}, {"image_id": 9, "category_id": 1},
                             {"image_id": 9, "category_id": 1}]}
    val = {"categories": categories, "images": [{"id": 42}], "annotations": [{"image_id": 42, "category_id": 13}]}
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(train))
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(val))
    (root / "train14.txt").write_text("000000000009\nCOCO_train2014_000000000025\n")
    (root / "val14.txt").write_text("000000000042\n")
    return root


def coco_config(root: Path, **overrides) -> dict:
    base = {"name": "coco", "format": "coco", "root": str(root), "classes": "coco",
            "splits": {"train": "train14.txt", "val": "val14.txt"}}
    return {**base, **overrides}


def test_coco_reader_labels_from_instances(coco_root: Path) -> None:
    reader = open_dataset(coco_config(coco_root))
    assert isinstance(reader, COCOReader) and reader.class_names == COCO_CLASSES
    assert reader.ids("train") == ["COCO_train2014_000000000009", "COCO_train2014_000000000025"]
    assert reader.ids("val") == ["COCO_val2014_000000000042"]
    assert np.flatnonzero(reader.labels("COCO_train2014_000000000009")).tolist() == [0, 79]  # person, toothbrush
    assert not reader.labels("COCO_train2014_000000000025").any()  # unlabelled image: allowed for COCO
    assert np.flatnonzero(reader.labels("COCO_val2014_000000000042")).tolist() == [11]  # id 13 = stop_sign
    assert reader.mask("COCO_train2014_000000000009").max() == 80
    reader.check_split("train")
    reader.check_split("val")


def test_coco_labels_from_npy_with_int_keys(coco_root: Path) -> None:
    np.save(coco_root / "cls_labels_coco.npy", {9: np.eye(80, dtype=np.float32)[2], 25: np.eye(80, dtype=np.float32)[4]},
            allow_pickle=True)
    reader = open_dataset(coco_config(coco_root, cls_labels="cls_labels_coco.npy"))
    assert np.flatnonzero(reader.labels("COCO_train2014_000000000025")).tolist() == [4]
    with pytest.raises(DatasetError, match="COCO_val2014_000000000042' is absent"):
        reader.labels("COCO_val2014_000000000042")


def test_coco_bad_inputs(coco_root: Path) -> None:
    (coco_root / "bad.txt").write_text("000000000009\nnot_an_id\n")
    with pytest.raises(DatasetError, match=r"bad\.txt' line 2"):
        open_dataset(coco_config(coco_root, splits={"bad": "bad.txt"})).ids("bad")
    (coco_root / "missing.txt").write_text("000000000077\n")
    with pytest.raises(DatasetError, match=r"train2014/COCO_train2014_000000000077\.jpg"):
        open_dataset(coco_config(coco_root, splits={"missing": "missing.txt"})).ids("missing")
    moved = coco_config(coco_root, instances="annotations/moved_{subset}.json")
    with pytest.raises(DatasetError, match="moved_val2014.json' does not exist"):
        open_dataset(moved).labels("COCO_val2014_000000000042")
    (coco_root / "annotations" / "instances_val2014.json").unlink()
    with pytest.raises(DatasetError, match="instances_val2014.json' does not exist"):
        open_dataset(coco_config(coco_root)).labels("COCO_val2014_000000000042")
    save_mask(coco_root / "SegmentationClass" / "train2014" / "COCO_train2014_000000000025.png", np.full((8, 10), 81))
    with pytest.raises(DatasetError, match=r"values \[81\] outside 0\.\.80"):
        open_dataset(coco_config(coco_root)).check_split("train")
