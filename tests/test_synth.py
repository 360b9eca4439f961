"""The synthetic VOC-layout dataset: determinism, layout, splits, ignore band, label consistency."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss_core.data import open_dataset
from wsss_core.data.classes import SYNTH_CLASSES, voc_palette
from wsss_core.data.synth import CLASS_STYLES, generate_sample, ignore_band, synth_params
from wsss_core.errors import ConfigError
from wsss_core.stages.synth_dataset import build_dataset, main

STAGE = {"image_size": 48, "num_train_aug": 10, "num_train": 4, "num_val": 3, "seed": 3}


def synth_config(root: Path) -> dict:
    return {"name": "synth", "format": "voc", "root": str(root), "classes": "synth",
            "splits": {split: f"ImageSets/Segmentation/{split}.txt" for split in ("train_aug", "train", "val")}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "dataset"
    build_dataset({"stage": STAGE}, root)
    return root


def read_ids(root: Path, split: str) -> list[str]:
    return (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()


def test_layout_and_splits(dataset: Path) -> None:
    train_aug, train, val = (read_ids(dataset, split) for split in ("train_aug", "train", "val"))
    assert (len(train_aug), len(train), len(val)) == (10, 4, 3)
    assert set(train) <= set(train_aug) and not set(val) & set(train_aug)
    everything = train_aug + val
    assert sorted(path.stem for path in (dataset / "JPEGImages").glob("*.jpg")) == sorted(everything)
    assert sorted(path.stem for path in (dataset / "SegmentationClassAug").glob("*.png")) == sorted(everything)
    assert sorted(path.stem for path in (dataset / "SegmentationClass").glob("*.png")) == sorted(train + val)
    assert sorted(path.stem for path in (dataset / "Annotations").glob("*.xml")) == sorted(everything)
    with Image.open(dataset / "SegmentationClassAug" / f"{train_aug[0]}.png") as mask:
        assert mask.mode == "P" and mask.size == (48, 48)
        assert np.array_equal(np.array(mask.getpalette()).reshape(-1, 3)[:21], voc_palette()[:21])
    manifest = json.loads((dataset / "synth_manifest.json").read_text())
    assert manifest["counts"] == {"train_aug": 10, "train": 4, "val": 3}
    assert manifest["class_names"] == list(SYNTH_CLASSES)
    assert manifest["provenance"]["stage"] == "wsss_core.stages.synth_dataset"
    assert not list(dataset.parent.glob(".*partial"))


def test_reader_reads_it_back_and_xml_matches_mask(dataset: Path) -> None:
    reader = open_dataset(synth_config(dataset))
    assert reader.class_names == SYNTH_CLASSES and reader.num_classes == 20
    for split in ("train_aug", "val"):
        reader.check_split(split)
    table = np.load(dataset / "cls_labels.npy", allow_pickle=True).item()
    for image_id in reader.ids("train_aug") + reader.ids("val"):
        mask = reader.mask(image_id)
        in_mask = {int(value) - 1 for value in np.unique(mask) if value not in (0, 255)}
        root = ElementTree.parse(dataset / "Annotations" / f"{image_id}.xml").getroot()
        in_xml = {SYNTH_CLASSES.index(element.findtext("name")) for element in root.iter("object")}
        assert in_mask == in_xml and in_xml, image_id
        assert set(np.flatnonzero(reader.labels(image_id))) == in_xml
        assert np.array_equal(table[image_id], reader.labels(image_id))
        for element in root.iter("object"):  # boxes are 1-based, inside the image
            box = [int(element.find("bndbox").findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax")]
            assert 1 <= box[0] <= box[2] <= 48 and 1 <= box[1] <= box[3] <= 48
        assert reader.image(image_id).shape == (48, 48, 3)


def test_ignore_band_present_and_around_objects(dataset: Path) -> None:
    reader = open_dataset(synth_config(dataset))
    for image_id in reader.ids("train_aug"):
        mask = reader.mask(image_id)
        assert (mask == 255).any()
        # no foreground pixel touches a pixel of another label: the band separates them
        for shifted, original in ((mask[1:], mask[:-1]), (mask[:, 1:], mask[:, :-1])):
            change = (shifted != original) & (shifted != 255) & (original != 255)
            assert not change.any(), image_id


def test_ignore_band_by_hand() -> None:
    labels = np.zeros((5, 6), dtype=np.uint8)
    labels[:, 3:] = 7
    expected = labels.copy()
    expected[:, 2:4] = 255  # radius 1: the column on each side of the change
    assert np.array_equal(ignore_band(labels, 1), expected)
    assert np.array_equal(ignore_band(labels, 0), labels)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    build_dataset({"stage": {**STAGE, "num_train_aug": 5, "num_train": 2, "num_val": 2}}, first)
    main(["--config", json.dumps({"stage": {**STAGE, "num_train_aug": 5, "num_train": 2, "num_val": 2,
                                             "workers": 2}}), "--output", str(second)])
    for folder in ("SegmentationClassAug", "SegmentationClass", "Annotations", "JPEGImages", "ImageSets/Segmentation"):
        files = sorted((first / folder).iterdir())
        assert files
        for path in files:
            assert path.read_bytes() == (second / folder / path.name).read_bytes(), path
    assert (first / "cls_labels.npy").read_bytes() == (second / "cls_labels.npy").read_bytes()


def test_other_seed_other_images() -> None:
    params = synth_params({"image_size": 48})
    assert not np.array_equal(generate_sample(0, 1, params).image, generate_sample(1, 1, params).image)
    assert np.array_equal(generate_sample(0, 1, params).mask, generate_sample(0, 1, params).mask)


def test_benchmark_properties_over_many_images() -> None:
    """Several objects, co-occurring partners and context backgrounds actually happen."""
    params = synth_params({"image_size": 64})
    counts = [len(generate_sample(0, index, params).objects) for index in range(150)]
    assert 1 <= min(counts) and max(counts) >= 3
    assert 0.25 < np.mean(np.array(counts) > 1) < 0.85
    pairs = np.zeros((20, 20))
    for index in range(150):
        present = np.flatnonzero(generate_sample(0, index, params).labels)
        pairs[np.ix_(present, present)] += 1
    partner_pairs = [(index, SYNTH_CLASSES.index(CLASS_STYLES[name].partner))
                     for index, name in enumerate(SYNTH_CLASSES)]
    partner_rate = np.mean([pairs[a, b] for a, b in partner_pairs])
    off_diagonal = pairs[~np.eye(20, dtype=bool)].mean()
    assert partner_rate > 4 * off_diagonal  # partners co-occur far more often than chance
    # backgrounds are class-correlated: the first object's context background most of the time
    samples = [generate_sample(0, index, params) for index in range(100)]
    in_context = [sample.background == CLASS_STYLES[SYNTH_CLASSES[sample.objects[0][0]]].context
                  for sample in samples]
    assert 0.6 < np.mean(in_context) < 0.95


def test_presets_and_bad_keys() -> None:
    voc_scale = synth_params({"preset": "voc_scale"})
    assert (voc_scale.num_train_aug, voc_scale.num_train, voc_scale.num_val) == (10582, 1464, 1449)
    assert voc_scale.image_size == (375, 500) and voc_scale.band_radius == 2
    assert synth_params({}).band_radius == 1
    with pytest.raises(ConfigError, match="image_sise"):
        synth_params({"image_sise": 64})
    with pytest.raises(ConfigError, match="preset"):
        synth_params({"preset": "huge"})
    with pytest.raises(ConfigError, match="num_train"):
        synth_params({"num_train_aug": 5, "num_train": 6})


def test_mask_png_keeps_indices() -> None:
    """Single-value masks keep their index (PIL re-indexes palette images saved without a palette)."""
    import io

    from wsss_core.data.synth import encode_mask

    for value in (0, 7, 20, 255):
        decoded = np.array(Image.open(io.BytesIO(encode_mask(np.full((3, 4), value, np.uint8)))))
        assert (decoded == value).all()
