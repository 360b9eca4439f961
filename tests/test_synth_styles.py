"""Styles of the synthetic generator: the default stays bit-identical, style ``b`` is a VOC-layout dataset
of its own (layout, labels, determinism, the same kinds of difficulty), and the DAG plans ``synth_b``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from wsss_core.data import open_dataset
from wsss_core.data.classes import SYNTH_B_CLASSES, SYNTH_CLASSES, voc_palette
from wsss_core.data.synth import (
    BACKGROUNDS,
    CLASS_STYLES,
    DEFAULT_STYLE,
    PLAIN_PARTS,
    SHAPES,
    SYNTH_STYLES,
    TEXTURES,
    draw_object,
    generate_sample,
    synth_params,
    synth_style,
    write_dataset,
)
from wsss_core.errors import ConfigError
from wsss_core.stages.synth_dataset import build_dataset, main

REPOSITORY = Path(__file__).resolve().parents[1]
SPLITS = ("train_aug", "train", "val")
STAGE_B = {"style": "b", "image_size": 48, "num_train_aug": 10, "num_train": 4, "num_val": 3, "seed": 3}

# Computed on main at e139952, before styles existed (sha256 of image, mask, objects and background).
DEFAULT_SAMPLE_HASHES = {
    (128, 0, 0): "6d636f5c0cc5460844ec727bfef18eac34bb25fd75d224c7b11397a79fb53348",
    (128, 0, 7): "59c12421fbe6758915e77e416dc3e084761e8740e445db73718f99136722a517",
    (64, 3, 11): "80c21675c3549c594a7eb55e5ca00323b8bcf8ea61315f2d28f3690a0160d8de",
    ((96, 128), 1, 5): "a2cbb276887fb1ce93f83ddb72730ca3ae96d0b5a9f0dd76f947cf4d717b0bd6",
}
# Every file write_dataset wrote for a 48 px, 6 + 2 image default dataset (seed 3), same commit.
DEFAULT_DATASET_HASH = "b8fd760f620d1a6a38e8b3c6e07e4f5cd4b9661bf56289672c8f9906c1850b40"


def sample_hash(sample) -> str:
    payload = sample.image.tobytes() + sample.mask.tobytes() + repr(sample.objects).encode() + sample.background.encode()
    return hashlib.sha256(payload).hexdigest()


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def reader_of(root: Path, classes: str = "synth_b"):
    return open_dataset({"name": "synth_b", "format": "voc", "root": str(root), "classes": classes,
                         "splits": {split: f"ImageSets/Segmentation/{split}.txt" for split in SPLITS}})


@pytest.fixture(scope="module")
def dataset_b(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_b") / "dataset"
    build_dataset({"stage": STAGE_B, "dataset": {"name": "synth_b", "classes": "synth_b"}}, root)
    return root


# ------------------------------------------------------------------------------- default style


@pytest.mark.parametrize("size, seed, index", list(DEFAULT_SAMPLE_HASHES))
def test_default_style_samples_are_bit_identical(size, seed, index) -> None:
    params = synth_params({"image_size": size, "seed": seed})
    assert params.style == "default"
    assert sample_hash(generate_sample(seed, index, params)) == DEFAULT_SAMPLE_HASHES[(size, seed, index)]


def test_default_style_files_are_bit_identical(tmp_path: Path) -> None:
    write_dataset(tmp_path, synth_params({"image_size": 48, "num_train_aug": 6, "num_train": 2, "num_val": 2,
                                          "seed": 3}))
    assert tree_hash(tmp_path) == DEFAULT_DATASET_HASH


def test_draw_object_keeps_its_signature_and_default_world() -> None:
    """The pretraining pool calls draw_object(style, label, radius, centre, canvas, labels, instances, id, rng)."""
    results = []
    for world in ((), (DEFAULT_STYLE,)):
        canvas, labels = np.zeros((64, 64, 3), np.float32), np.zeros((64, 64), np.uint8)
        instances = np.zeros((64, 64), np.int32)
        rng = np.random.default_rng(5)
        assert draw_object(CLASS_STYLES["crab"], 7, 20.0, np.array([32.0, 30.0]), canvas, labels, instances, 1, rng,
                           *world)
        results.append((canvas, labels))
    assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])
    assert set(np.unique(results[0][1])) == {0, 7}
    assert DEFAULT_STYLE.shapes is SHAPES and DEFAULT_STYLE.textures is TEXTURES
    assert DEFAULT_STYLE.backgrounds is BACKGROUNDS and DEFAULT_STYLE.plain_parts is PLAIN_PARTS


# ----------------------------------------------------------------------------------- style b


def test_style_b_is_registered_with_its_own_classes_and_parts() -> None:
    style_b = synth_style("b")
    assert SYNTH_STYLES.names() == ["b", "default"]
    assert style_b.class_names == SYNTH_B_CLASSES and len(SYNTH_B_CLASSES) == 20
    assert not set(SYNTH_B_CLASSES) & set(SYNTH_CLASSES)
    for own, default in ((style_b.shapes, SHAPES), (style_b.textures, TEXTURES), (style_b.backgrounds, BACKGROUNDS),
                         (style_b.plain_parts, PLAIN_PARTS)):
        assert own and not set(own) & set(default)
    assert sum(style.plain_part is not None for style in style_b.classes.values()) >= 6
    assert len({style.context for style in style_b.classes.values()}) == len(style_b.backgrounds)


def test_editing_a_style_reruns_the_dataset_rule() -> None:
    """Styles are imported through the registry; the rule's code fingerprint must still cover them."""
    from wsss_core.utils.provenance import module_closure

    assert "wsss_core.data.synth_styles.b" in module_closure("wsss_core.stages.synth_dataset")


def test_unknown_style_and_mismatched_classes_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"stage.style .*'c' is unknown; use one of: b, default"):
        synth_params({"style": "c"})
    with pytest.raises(ConfigError, match=r"datasets.mine.classes is 'synth'.*set datasets.mine.classes: synth_b"):
        build_dataset({"stage": STAGE_B, "dataset": {"name": "mine", "classes": "synth"}}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_style_b_layout_masks_and_xml(dataset_b: Path) -> None:
    ids = {split: (dataset_b / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split() for split in SPLITS}
    assert [len(ids[split]) for split in SPLITS] == [10, 4, 3]
    assert set(ids["train"]) <= set(ids["train_aug"]) and not set(ids["val"]) & set(ids["train_aug"])
    everything = ids["train_aug"] + ids["val"]
    assert everything[0] == "synthb_000000"
    for folder, suffix, expected in (("JPEGImages", "jpg", everything), ("SegmentationClassAug", "png", everything),
                                     ("SegmentationClass", "png", ids["train"] + ids["val"]),
                                     ("Annotations", "xml", everything)):
        assert sorted(path.stem for path in (dataset_b / folder).glob(f"*.{suffix}")) == sorted(expected), folder
    manifest = json.loads((dataset_b / "synth_manifest.json").read_text())
    assert manifest["style"] == "b" and manifest["class_set"] == "synth_b"
    assert manifest["class_names"] == list(SYNTH_B_CLASSES)

    reader = reader_of(dataset_b)
    table = np.load(dataset_b / "cls_labels.npy", allow_pickle=True).item()
    for image_id in everything:
        with Image.open(dataset_b / "SegmentationClassAug" / f"{image_id}.png") as png:
            assert png.mode == "P" and png.size == (48, 48)
            assert np.array_equal(np.array(png.getpalette()).reshape(-1, 3)[:21], voc_palette()[:21])
        mask = reader.mask(image_id)
        assert set(np.unique(mask)) <= set(range(21)) | {255} and (mask == 255).any()
        root = ElementTree.parse(dataset_b / "Annotations" / f"{image_id}.xml").getroot()
        assert root.findtext("folder") == "synthb"
        in_xml = {SYNTH_B_CLASSES.index(element.findtext("name")) for element in root.iter("object")}
        in_mask = {int(value) - 1 for value in np.unique(mask) if value not in (0, 255)}
        assert in_xml and in_mask == in_xml, image_id
        assert set(np.flatnonzero(reader.labels(image_id))) == in_xml
        assert np.array_equal(table[image_id], reader.labels(image_id))
        assert reader.image(image_id).shape == (48, 48, 3)
    for split in ("train_aug", "val"):
        reader.check_split(split)


def test_style_b_same_seed_same_bytes_in_any_number_of_processes(tmp_path: Path) -> None:
    small = {**STAGE_B, "num_train_aug": 5, "num_train": 2, "num_val": 2}
    build_dataset({"stage": small}, tmp_path / "a")
    main(["--config", json.dumps({"stage": {**small, "workers": 2}}), "--output", str(tmp_path / "b")])
    (tmp_path / "a" / "synth_manifest.json").unlink()
    (tmp_path / "b" / "synth_manifest.json").unlink()
    assert tree_hash(tmp_path / "a") == tree_hash(tmp_path / "b")
    params = synth_params({"image_size": 48, "style": "b"})
    assert not np.array_equal(generate_sample(0, 1, params).image, generate_sample(1, 1, params).image)
    default = synth_params({"image_size": 48})
    assert not np.array_equal(generate_sample(0, 1, params).image, generate_sample(0, 1, default).image)


def test_style_b_has_the_default_kinds_of_difficulty() -> None:
    """Every class is drawn; several objects, partners and context backgrounds happen as in the default."""
    params = synth_params({"image_size": 64, "style": "b"})
    classes = synth_style("b").classes
    samples = [generate_sample(0, index, params) for index in range(200)]
    counts = np.array([len(sample.objects) for sample in samples])
    assert counts.min() >= 1 and counts.max() >= 3 and 0.25 < np.mean(counts > 1) < 0.85
    present = np.array([sample.labels for sample in samples])
    assert present.sum(axis=0).min() >= 3  # every class appears
    pairs = present.T @ present
    partner_rate = np.mean([pairs[index, SYNTH_B_CLASSES.index(style.partner)]
                            for index, style in enumerate(classes.values())])
    assert partner_rate > 4 * pairs[~np.eye(20, dtype=bool)].mean()
    in_context = [sample.background == classes[SYNTH_B_CLASSES[sample.objects[0][0]]].context for sample in samples]
    assert 0.6 < np.mean(in_context) < 0.95


# ------------------------------------------------------------------------------ config and DAG


def test_config_schema_and_registry_agree_and_synth_b_takes_the_synth_presets() -> None:
    schema = yaml.safe_load((REPOSITORY / "workflow" / "schemas" / "config.schema.yaml").read_text())
    dataset = schema["$defs"]["dataset"]["properties"]
    assert sorted(dataset["generator"]["properties"]["style"]["enum"]) == SYNTH_STYLES.names()
    assert "synth_b" in dataset["classes"]["enum"]
    config = yaml.safe_load((REPOSITORY / "config.yaml").read_text())
    entry = config["datasets"]["synth_b"]
    assert entry["like"] == "synth" and entry["classes"] == "synth_b" and entry["root"] == "results/synth_b/dataset"
    assert entry["generator"] == {**config["datasets"]["synth"]["generator"], "style": "b"}


@pytest.mark.slow
def test_dry_run_plans_the_synth_b_chain(tmp_path: Path) -> None:
    command = [str(Path(sys.executable).with_name("snakemake")), "-n", "--snakefile", str(REPOSITORY / "Snakefile"),
               "--directory", str(tmp_path), "--configfile", str(REPOSITORY / "config.yaml"), "--cores", "1",
               "results/synth_b/mctformer/seeds/eval.json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for rule in ("synth_dataset", "train_method", "export_seeds", "evaluate_seeds"):
        assert f"rule {rule}:" in output, rule
    assert "output: results/synth_b/dataset" in output
