"""Reliability, through what a user runs: the stage entry points (``wsss_core.stages.<stage>.main``).

* a matrix of bad inputs, one row each: the stage exits with code 1, prints one error line naming the
  file or config key at fault, and leaves neither its output nor a temporary partial file behind;
  plus a schema-violating ``config.yaml`` loaded as the Snakefile loads it;
* a seed export killed with SIGKILL leaves nothing a later stage consumes, and a re-run recovers;
* the same config and seed give bit-identical models, seeds and seed scores;
* scores of splits in which a class (or every foreground class) has no pixel.

Everything runs on a tiny VOC-layout dataset (36×40 images, the ``vit_synth`` backbone, MCTformer) on
the CPU; the reader-level checks behind these errors are in ``test_data_readers.py`` and
``test_eval_stages.py``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image

from wsss_core import workflow_config as resolve
from wsss_core.data.classes import voc_palette
from wsss_core.errors import InputError
from wsss_core.errors import StoreError
from wsss_core.io.seed_store import MaskStoreWriter, SeedStore, SeedStoreWriter
from wsss_core.stages import evaluate_masks, evaluate_seeds, export_seeds, refine_crf, train_method

torch.set_num_threads(1)

REPOSITORY = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["red", "blue"]
HEIGHT, WIDTH = 36, 40
RED, BLUE = (slice(4, 16), slice(4, 16)), (slice(18, 32), slice(20, 36))


# --------------------------------------------------------------------------------- tiny dataset

def _ids(count: int) -> list[str]:
    return [f"img_{index}" for index in range(count)]


def _save_mask(path: Path, values: np.ndarray) -> None:
    """A palette PNG with the full VOC palette (as VOC's SegmentationClassAug)."""
    image = Image.fromarray(values.astype(np.uint8), mode="P")
    image.putpalette(voc_palette().reshape(-1).tolist())
    image.save(path)


def _write_dataset(root: Path, count: int = 6, objects: bool = True) -> dict[str, Any]:
    """``count`` 36×40 images with a red and/or blue square, their ground-truth masks (red = 1, blue = 2,
    an ignore row above the red square) and PSA-style ``cls_labels.npy``; split ``train_aug`` lists them
    all. Without ``objects`` the ground truth is background only (the labels stay as they are)."""
    for folder in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {}
    for index, image_id in enumerate(_ids(count)):
        image = rng.integers(80, 120, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        present = np.array([index % 2 == 0, index % 3 != 0 or index % 2 == 1], dtype=np.float32)
        if present[0]:
            image[RED] = (220, 20, 20)
            mask[RED] = 1
            mask[RED[0].start - 1, RED[1]] = 255
        if present[1]:
            image[BLUE] = (20, 20, 220)
            mask[BLUE] = 2
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        _save_mask(root / "SegmentationClassAug" / f"{image_id}.png", mask if objects else np.zeros_like(mask))
        labels[image_id] = present
    np.save(root / "cls_labels.npy", labels, allow_pickle=True)
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(_ids(count)) + "\n")
    return {"name": "tiny", "format": "voc", "root": str(root), "class_names": CLASS_NAMES,
            "splits": {"train_aug": "ImageSets/Segmentation/train_aug.txt"}, "cls_labels": "cls_labels.npy"}


def _config(dataset: dict[str, Any], **stage: Any) -> dict[str, Any]:
    """The stage configuration of tests/test_method_stages.py: MCTformer on vit_synth, 2 epochs."""
    method = {
        "name": "mctformer",
        "model": {"backbone": "vit_synth", "weights": None, "drop_path": 0.0, "image_size": 32},
        "train": {"batch_size": 2, "epochs": 2, "lr": 5e-4, "weight_decay": 0.05, "warmup_epochs": 1,
                  "warmup_lr": 1e-6, "min_lr": 1e-5, "crop_size": 32, "scale": [0.5, 1.0],
                  "rand_augment": "rand-m9-mstd0.5-inc1", "random_erasing": 0.25},
        "seeds": {"class_attention_blocks": [-3, -2, -1], "patch_attention_blocks": "all", "scales": [1.0],
                  "flip": True},
    }
    return {"dataset": dataset, "method": method, "stage": {"split": "train_aug", "log_every": 1, **stage},
            "weights": {"files": {}, "use_hub": False}, "seed": 0, "device": "cpu", "num_workers": 0,
            "threads": 1}


def _write_seed_store(path: Path, ids: list[str], method: str = "mctformer", num_classes: int = 2) -> None:
    """A seed store as export_seeds writes it: each labelled class scores 0.8 inside its square."""
    with SeedStoreWriter(path, method=method, num_classes=num_classes) as writer:
        for image_id in ids:
            index = int(image_id.rsplit("_", 1)[1])
            keys, maps = [], []
            for key, (present, box) in enumerate(((index % 2 == 0, RED), (index % 3 != 0 or index % 2 == 1, BLUE)), 1):
                if present:
                    cam = np.full((HEIGHT, WIDTH), 0.2, np.float32)
                    cam[box] = 0.8
                    keys.append(key)
                    maps.append(cam)
            writer.add(image_id, np.stack(maps), np.array(keys))


def _write_mask_store(path: Path, ids: list[str], root: Path) -> None:
    with MaskStoreWriter(path, method="mctformer", num_classes=2) as writer:
        for image_id in ids:
            writer.add(image_id, np.array(Image.open(root / "SegmentationClassAug" / f"{image_id}.png")))


def _train(config: dict[str, Any], output: Path) -> Path:
    train_method.main(["--config", json.dumps(config), "--output", str(output)])
    return output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """A 6-image dataset and an MCTformer trained on it from scratch (2 epochs, a few seconds)."""
    base = tmp_path_factory.mktemp("trained")
    dataset = _write_dataset(base / "dataset")
    return dataset, _train(_config(dataset), base / "run" / "train" / "model.pt")


def _error_line(stderr: str) -> str:
    """The one line a stage prints for an InputError: its last line, the only ERROR one, no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.rstrip("\n").splitlines()
    assert lines and [line for line in lines if " ERROR " in line] == lines[-1:], stderr
    return lines[-1].split(" ERROR wsss_core: ", 1)[1]


def _leftovers(output: Path) -> list[Path]:
    """Temporary siblings of ``output`` (``wsss_core.utils.atomic.atomic_path`` names them
    ``.<name>.<random>.partial``)."""
    return sorted(output.parent.glob(f".{output.name}.*")) if output.parent.is_dir() else []


# ------------------------------------------------------------------------------ bad-input matrix

@dataclass
class Inputs:
    """What a matrix row may break: a private copy of the tiny dataset, the stage config, a trained
    model, and a seed store and a mask store of the split."""

    tmp: Path
    root: Path
    config: dict[str, Any]
    model: Path
    seeds: Path
    masks: Path


@dataclass(frozen=True)
class Row:
    id: str
    breaks: Callable[[Inputs], None]
    stage: ModuleType
    error: str  # InputError subclass printed
    expect: tuple[str, ...]  # substrings of the printed message; {root} and {tmp} are filled in


OUTPUTS = {train_method: "train/model.pt", export_seeds: "seeds/train_aug.h5", evaluate_seeds: "seeds/eval.json",
           refine_crf: "masks/train_aug.h5", evaluate_masks: "miou.json"}


def _argv(stage: ModuleType, inputs: Inputs, output: Path) -> list[str]:
    argv = ["--config", json.dumps(inputs.config), "--output", str(output)]
    if stage is export_seeds:
        argv += ["--model", str(inputs.model)]
    if stage in (evaluate_seeds, refine_crf):
        argv += ["--seeds", str(inputs.seeds)]
    if stage is evaluate_masks:
        argv += ["--masks", str(inputs.masks)]
    return argv


def _set_weights(inputs: Inputs, key: str, path: Path | None) -> None:
    """Ask for pretrained ``key`` (method.model.weights) and catalog ``path`` under weights.files."""
    inputs.config["method"]["model"]["weights"] = key
    if path is not None:
        inputs.config["weights"]["files"][key] = str(path)


def _weights_of_another_width(inputs: Inputs) -> None:
    """A real ViT checkpoint, but 64 wide where vit_synth is 96: every tensor has the wrong shape."""
    other = timm.create_model("vit_small_patch16_224", patch_size=8, embed_dim=64, depth=4, num_heads=2,
                              mlp_ratio=2.0, img_size=96, num_classes=0)
    torch.save(other.state_dict(), inputs.tmp / "vit_synth.pth")
    _set_weights(inputs, "vit_synth", inputs.tmp / "vit_synth.pth")


def _weights_of_another_network(inputs: Inputs) -> None:
    """A loadable checkpoint whose keys belong to another network (a ResNet stem)."""
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64)}, inputs.tmp / "vit_synth.pth")
    _set_weights(inputs, "vit_synth", inputs.tmp / "vit_synth.pth")


def _weights_empty(inputs: Inputs) -> None:
    """A zero-byte file, as an interrupted download leaves."""
    (inputs.tmp / "vit_synth.pth").write_bytes(b"")
    _set_weights(inputs, "vit_synth", inputs.tmp / "vit_synth.pth")


def _corrupt_jpeg(inputs: Inputs) -> None:
    path = inputs.root / "JPEGImages" / "img_2.jpg"
    path.write_bytes(path.read_bytes()[:40])  # a truncated copy: the header survives, the pixels do not


def _labels_without(image_id: str) -> Callable[[Inputs], None]:
    def breaks(inputs: Inputs) -> None:
        table = np.load(inputs.root / "cls_labels.npy", allow_pickle=True).item()
        del table[image_id]
        np.save(inputs.root / "cls_labels.npy", table, allow_pickle=True)
    return breaks


def _mask_value_out_of_range(inputs: Inputs) -> None:
    mask = np.array(Image.open(inputs.root / "SegmentationClassAug" / "img_1.png"))
    mask[0, :3] = 7  # 2 classes: labels are 0..2 and 255
    _save_mask(inputs.root / "SegmentationClassAug" / "img_1.png", mask)


def _seed_store_of(method: str, num_classes: int) -> Callable[[Inputs], None]:
    def breaks(inputs: Inputs) -> None:
        _write_seed_store(inputs.seeds, _ids(6), method=method, num_classes=num_classes)
    return breaks


def _model_of_another_method(inputs: Inputs) -> None:
    """The trained checkpoint as train_method writes it for method 'cti' (only its label differs)."""
    checkpoint = torch.load(inputs.model, weights_only=True)
    checkpoint["method"] = "cti"
    inputs.model = inputs.tmp / "cti_model.pt"
    torch.save(checkpoint, inputs.model)


def _model_truncated(inputs: Inputs) -> None:
    """Half of the trained model file (a copy interrupted by a full disk or a kill)."""
    data = inputs.model.read_bytes()
    inputs.model = inputs.tmp / "truncated_model.pt"
    inputs.model.write_bytes(data[: len(data) // 2])


def _model_of_another_network(inputs: Inputs) -> None:
    """method.model changed since training: 48-pixel inputs have 36 patch tokens, the checkpoint 16."""
    inputs.config["method"]["model"]["image_size"] = 48


def _score_on(split: str, lines: str | None = None, then: Callable[[Inputs], None] | None = None
              ) -> Callable[[Inputs], None]:
    """The chain scores seeds and evaluates on ``split`` (datasets.<name>.roles), whose list file gets
    ``lines`` when given; ``then`` breaks something more."""
    def breaks(inputs: Inputs) -> None:
        if lines is not None:
            (inputs.root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(lines)
            inputs.config["dataset"]["splits"][split] = f"ImageSets/Segmentation/{split}.txt"
        inputs.config["dataset"]["roles"] = {"train": "train_aug", "score": split, "evaluate": split}
        if then is not None:
            then(inputs)
    return breaks


def _mask_of_another_size(inputs: Inputs) -> None:
    mask = np.array(Image.open(inputs.root / "SegmentationClassAug" / "img_1.png"))
    _save_mask(inputs.root / "SegmentationClassAug" / "img_1.png", mask[:30])


def _jpeg_cut_in_half(inputs: Inputs) -> None:
    """Half of a JPEG's bytes: the header and the upper rows decode, cv2 fills the rest with grey and only
    warns "Premature end of JPEG file"."""
    path = inputs.root / "JPEGImages" / "img_2.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


TRUNCATED = ("image '{root}/JPEGImages/img_2.jpg' is a truncated JPEG", "restore the file or remove 'img_2'")
WRONG_SIZE = ("mask '{root}/SegmentationClassAug/img_1.png' is 40x30 but image '{root}/JPEGImages/img_1.jpg' is "
              "40x36", "restore the mask of this image")

ROWS = [
    Row("missing dataset root", lambda i: i.config["dataset"].update(root=str(i.tmp / "VOC2012")),
        train_method, "DatasetError", ("dataset root '{tmp}/VOC2012' does not exist", "datasets.tiny.root")),
    Row("list names a missing image", lambda i: (i.root / "JPEGImages" / "img_2.jpg").unlink(),
        train_method, "DatasetError",
        ("train_aug.txt' line 3 names image 'img_2'", "'{root}/JPEGImages/img_2.jpg' does not exist")),
    Row("corrupt JPEG", _corrupt_jpeg,
        export_seeds, "DatasetError", ("cannot read image '{root}/JPEGImages/img_2.jpg'",)),
    Row("GT mask value outside 0..C and 255 (seeds)", _mask_value_out_of_range,
        evaluate_seeds, "DatasetError", ("'{root}/SegmentationClassAug/img_1.png' holds values [7] outside 0..2",)),
    Row("GT mask value outside 0..C and 255 (masks)", _mask_value_out_of_range,
        evaluate_masks, "DatasetError", ("'{root}/SegmentationClassAug/img_1.png' holds values [7] outside 0..2",)),
    Row("cls_labels lacks an id of the list (train)", _labels_without("img_3"),
        train_method, "DatasetError",
        ("image 'img_3' is absent from labels file '{root}/cls_labels.npy'", "datasets.tiny.cls_labels")),
    Row("cls_labels lacks an id of the list (export)", _labels_without("img_3"),
        export_seeds, "DatasetError",
        ("image 'img_3' is absent from labels file '{root}/cls_labels.npy'", "datasets.tiny.cls_labels")),
    Row("empty split", lambda i: (i.root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n"),
        train_method, "DatasetError",
        ("split 'train_aug' is empty", "'{root}/ImageSets/Segmentation/train_aug.txt' names no image")),
    Row("weights key not in the catalog", lambda i: _set_weights(i, "deit_tiny", None),
        train_method, "MissingWeightsError", ("no weight file configured for 'deit_tiny'", "weights.files.deit_tiny")),
    Row("missing weight file", lambda i: _set_weights(i, "vit_synth", i.tmp / "vit_synth.pth"),
        train_method, "MissingWeightsError",
        ("weight file '{tmp}/vit_synth.pth' (config key weights.files.vit_synth) does not exist",)),
    Row("weight file with wrong tensor shapes", _weights_of_another_width,
        train_method, "BackboneWeightsError",
        ("weight file '{tmp}/vit_synth.pth' (weights.files.vit_synth) cannot be loaded", "size mismatch for")),
    Row("weight file of another network", _weights_of_another_network,
        train_method, "BackboneWeightsError",
        ("weight file '{tmp}/vit_synth.pth' did not load into VisionTransformer", "weights.files.<key>")),
    Row("empty weight file", _weights_empty,
        train_method, "BackboneWeightsError",
        ("weight file '{tmp}/vit_synth.pth' (weights.files.vit_synth) cannot be loaded", "EOFError")),
    Row("seed store with another class count", _seed_store_of("mctformer", 3),
        evaluate_seeds, "StoreError",
        ("seed store {tmp}/seeds.h5 was written by method 'mctformer' with 3 classes", "expects 'mctformer' with 2")),
    Row("seed store of another method", _seed_store_of("cti", 2),
        refine_crf, "StoreError",
        ("seed store {tmp}/seeds.h5 was written by method 'cti' with 2 classes", "expects 'mctformer' with 2")),
    Row("model of another method", _model_of_another_method,
        export_seeds, "StoreError",
        ("model file '{tmp}/cti_model.pt' holds method 'cti'", "the config asks for 'mctformer'")),
    Row("truncated model file", _model_truncated,
        export_seeds, "StoreError", ("model file '{tmp}/truncated_model.pt' cannot be read",)),
    Row("model of another network", _model_of_another_network,
        export_seeds, "StoreError", ("model file '{tmp}/model.pt' does not fit the network of method.model",
                                     "size mismatch for encoder.patch_pos_embed")),
    # issue 15: what a chain reads after training is checked before its first training step (item 3)
    Row("empty score/evaluate split, at training", _score_on("val", "\n"),
        train_method, "DatasetError",
        ("split 'val' is empty", "'{root}/ImageSets/Segmentation/val.txt' names no image")),
    Row("evaluate split names a missing image, at training", _score_on("val", "img_1\nimg_9\n"),
        train_method, "DatasetError",
        ("val.txt' line 2 names image 'img_9'", "'{root}/JPEGImages/img_9.jpg' does not exist")),
    Row("evaluate split lacks a mask, at training",
        _score_on("val", "img_1\n", lambda i: (i.root / "SegmentationClassAug" / "img_1.png").unlink()),
        train_method, "DatasetError", ("mask '{root}/SegmentationClassAug/img_1.png' does not exist",)),
    Row("mask value out of range in the score split, at training", _score_on("train_aug", None, _mask_value_out_of_range),
        train_method, "DatasetError", ("'{root}/SegmentationClassAug/img_1.png' holds values [7] outside 0..2",)),
    Row("mask of another size than its image, at training", _score_on("train_aug", None, _mask_of_another_size),
        train_method, "DatasetError", WRONG_SIZE),
    Row("mask of another size than its image, at seed scoring", _mask_of_another_size,
        evaluate_seeds, "DatasetError", WRONG_SIZE),
    # a truncated JPEG is refused, not used with grey rows (item 4)
    Row("truncated JPEG, at training", _jpeg_cut_in_half, train_method, "DatasetError", TRUNCATED),
    Row("truncated JPEG, at seed export", _jpeg_cut_in_half, export_seeds, "DatasetError", TRUNCATED),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input_stops_the_stage_with_one_line_naming_the_culprit(
    row: Row, trained: tuple[dict[str, Any], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, model = trained
    root = Path(shutil.copytree(dataset["root"], tmp_path / "dataset"))
    shutil.copy(model, tmp_path / "model.pt")
    inputs = Inputs(tmp_path, root, _config(copy.deepcopy({**dataset, "root": str(root)})), tmp_path / "model.pt",
                    tmp_path / "seeds.h5", tmp_path / "masks.h5")
    _write_seed_store(inputs.seeds, _ids(6))
    _write_mask_store(inputs.masks, _ids(6), root)
    row.breaks(inputs)
    output = tmp_path / "out" / OUTPUTS[row.stage]
    capsys.readouterr()

    with pytest.raises(SystemExit) as stop:
        row.stage.main(_argv(row.stage, inputs, output))

    message = _error_line(capsys.readouterr().err)
    print(f"\n[{row.id}] {row.stage.__name__.rsplit('.', 1)[1]}: {message}")
    assert stop.value.code == 1
    assert message.startswith(f"{row.error}: "), message
    for expected in row.expect:
        assert expected.format(root=root, tmp=tmp_path) in message, message
    assert not output.exists() and _leftovers(output) == []


def test_matrix_rows_break_what_they_say(trained: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    """The unbroken inputs of the matrix pass every stage it calls (so each row fails for its break)."""
    dataset, model = trained
    inputs = Inputs(tmp_path, Path(dataset["root"]), _config(dataset, background={"mode": "power", "alpha": 4}),
                    model, tmp_path / "seeds.h5", tmp_path / "masks.h5")
    _write_seed_store(inputs.seeds, _ids(6))
    _write_mask_store(inputs.masks, _ids(6), inputs.root)
    for stage in (export_seeds, evaluate_seeds, refine_crf, evaluate_masks):
        output = tmp_path / "out" / OUTPUTS[stage]
        stage.main(_argv(stage, inputs, output))
        assert output.is_file() and _leftovers(output) == []
    assert json.loads((tmp_path / "out" / OUTPUTS[evaluate_masks]).read_text())["miou"] == pytest.approx(1.0)


# ---------------------------------------------------------------------- config.yaml, as Snakemake

def _load_like_the_snakefile(path: Path) -> dict[str, Any]:
    """What the Snakefile does with a config file, through the functions its rules call: snakemake's
    ``configfile:`` loader, ``schema_problem`` (workflow/rules/checks.smk), then Snakemake's ``validate``
    and ``config_problem`` (workflow/rules/config.smk: every method, variant and pipeline resolved for
    every dataset); a problem becomes the one-line WorkflowError the workflow stops with."""
    from snakemake.common.configfile import load_configfile
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from wsss_core.workflow_checks import config_problem, schema_problem

    config = load_configfile(str(path))
    schema = REPOSITORY / "workflow" / "schemas" / "config.schema.yaml"
    problem = schema_problem(config, schema)
    if problem:
        raise WorkflowError(problem)
    validate(config, schema=str(schema))
    problem = config_problem(config)
    if problem:
        raise WorkflowError(problem)
    return config


def test_the_shipped_config_passes_the_workflow_checks() -> None:
    assert _load_like_the_snakefile(REPOSITORY / "config.yaml")["methods"]["cti"]


def _misspell_cti_synth_train(config: dict[str, Any]) -> None:
    preset = config["methods"]["cti"]["params"]["presets"]["synth"]
    preset["trian"] = preset.pop("train")


CONFIG_BREAKS = [
    ("misspelt preset key", _misspell_cti_synth_train,
     ("unknown key 'methods.cti.params.presets.synth.trian'", "known keys there: losses, model, seeds, train")),
    ("wrong type", lambda config: config.update(seed="zero"),
     ("config.yaml: seed: 'zero' is not of type 'integer'",)),
    ("misspelt top-level key", lambda config: config.update(num_wrokers=2),
     ("config.yaml: the top level: Additional properties are not allowed ('num_wrokers' was unexpected); known "
      "keys there: compute, datasets, default_targets, device, methods, num_workers, pretraining, seed,",)),
    ("wrong type in a nested key", lambda config: config["compute"]["synth"].update(mem_mb="4G"),
     ("config.yaml: compute.synth.mem_mb: '4G' is not of type 'integer'",)),
    # issue 15: an unknown network or refinement in `pipeline` (here through a preset, which the schema
    # does not see) is named, with the known ones, instead of a missing predictions.h5 at DAG time
    ("unknown network in pipeline", lambda config: config["methods"]["cti"]["pipeline"]["presets"]["synth"].update(
        segmentation="deeplab_v3"),
     ("config.yaml: methods.cti.pipeline (dataset synth) names segmentation network 'deeplab_v3'; known networks "
      "(stages.segmentation): deeplab_v1_resnet38, deeplab_v2",)),
    ("unknown refinement in pipeline", lambda config: config["methods"]["cti"]["pipeline"]["presets"]["synth"].update(
        refine="cfr"),
     ("config.yaml: methods.cti.pipeline (dataset synth) names refinement 'cfr'; known refinements: crf, irn, psa, "
      "own",)),
    ("two label spaces", lambda config: config["datasets"]["voc"].update(class_names=["cell", "nucleus"]),
     ("config.yaml: datasets.voc needs exactly one of classes", "it has both")),
    # a refinement the schema allows but the method cannot feed (config.smk checks it; a copy here missed it)
    ("own pseudo-labels of a method without them", lambda config: config["methods"]["cti"]["pipeline"]["presets"][
        "synth"].update(refine="own"),
     ("config.yaml: methods.cti.pipeline.refine is 'own', but method 'cti' makes no pseudo-labels of its own",)),
    # SIPE's IRN reading needs the seeds' own background map: stopped at parse, not after the classifier trained
    ("IRN on the seeds' background for a method without one", lambda config: config["methods"]["swtformer_v1"][
        "pipeline"].update(refine_overrides={"irn": {"settings": {"preset": "sipe"}}}),
     ("config.yaml: run 'swtformer_v1' on", "refines with IRN's background: seeds",
      "method 'swtformer_v1' exports no background map: use preset irn or rib for it")),
]


@pytest.mark.parametrize(
    "breaks, expect", [case[1:] for case in CONFIG_BREAKS], ids=[case[0] for case in CONFIG_BREAKS]
)
def test_schema_violating_config_names_the_key(
    breaks: Callable[[dict[str, Any]], None], expect: tuple[str, ...], tmp_path: Path
) -> None:
    from snakemake.exceptions import WorkflowError

    config = yaml.safe_load((REPOSITORY / "config.yaml").read_text())
    breaks(config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(WorkflowError) as error:
        _load_like_the_snakefile(tmp_path / "config.yaml")
    message = str(error.value)
    print(f"\n[config: {expect[0]}] {message[:600]}")
    for expected in expect:
        assert expected in message, message
    assert "\n" not in message, message  # one line: no dump of the schema or the config


# ----------------------------------------------------------------------- SIGKILL during export

COUNT = 60  # images of the killed export


def test_killed_seed_export_leaves_nothing_a_later_stage_reads(
    trained: tuple[dict[str, Any], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, model = trained
    # the trained model on a larger split (the checkpoint holds no dataset path); 3 scales slow each image
    # down: the export takes ~1.5 s here once the model is loaded
    config = _config(_write_dataset(tmp_path / "dataset", count=COUNT))
    config["method"]["seeds"]["scales"] = [1.0, 1.5, 2.0]
    (tmp_path / "export.json").write_text(json.dumps(config))
    output = tmp_path / "seeds" / "train_aug.h5"
    argv = ["--config", f"@{tmp_path / 'export.json'}", "--model", str(model), "--output", str(output)]

    log = (tmp_path / "export.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "wsss_core.stages.export_seeds", *argv], cwd=REPOSITORY, start_new_session=True,
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not _leftovers(output) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _leftovers(output), f"no temporary file: rc {process.poll()}, {(tmp_path / 'export.log').read_text()}"
        time.sleep(0.1)  # let it write some maps
        assert process.poll() is None, "the export finished before it could be killed: give it more work"
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()

    # the kill leaves the temporary file (no cleanup runs), never the output
    leftover = _leftovers(output)
    assert not output.exists() and len(leftover) == 1 and leftover[0].name.endswith(".partial")
    with pytest.raises(StoreError):  # even pointed at directly, the half-written file is refused
        SeedStore(leftover[0]).ids()
    # a later stage given the output path stops with a clear message instead of reading half a store
    evaluation = tmp_path / "seeds" / "eval.json"
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        evaluate_seeds.main(["--config", json.dumps(config), "--seeds", str(output), "--output", str(evaluation)])
    message = _error_line(capsys.readouterr().err)
    print(f"\n[after SIGKILL] evaluate_seeds: {message}")
    assert stop.value.code == 1 and message == (
        f"StoreError: seed store {output} does not exist; run the stage that writes it")
    assert not evaluation.exists()

    # re-running the export sweeps the leftover and writes a complete store
    export_seeds.main(["--config", json.dumps(config), "--model", str(model), "--output", str(output)])
    assert _leftovers(output) == [] and not leftover[0].exists()
    store = SeedStore(output)
    assert store.ids() == sorted(_ids(COUNT)) and store.num_classes == 2 and store.method == "mctformer"
    assert all(store.get(image_id).maps.shape[1:] == (HEIGHT, WIDTH) for image_id in _ids(COUNT))


# --------------------------------------------------------------------------------- determinism

def _differing_tensors(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors that are not bit-identical (or missing from one side)."""
    return sorted(name for name in first.keys() | second.keys()
                  if name not in first or name not in second or not torch.equal(first[name], second[name]))


def test_same_config_and_seed_give_identical_models_seeds_and_scores(
    trained: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    dataset, first_model = trained
    config = _config(dataset)
    second_model = _train(copy.deepcopy(config), tmp_path / "second" / "train" / "model.pt")

    first, second = (torch.load(path, weights_only=True) for path in (first_model, second_model))
    assert first["model"].keys() == second["model"].keys() and len(first["model"]) > 50
    assert _differing_tensors(first["model"], second["model"]) == []
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in first["history"]] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in second["history"]]
    assert first["provenance"]["config_hash"] == second["provenance"]["config_hash"]

    results = []
    for name, model in (("first", first_model), ("second", second_model)):
        seeds, evaluation = tmp_path / name / "seeds" / "train_aug.h5", tmp_path / name / "seeds" / "eval.json"
        export_seeds.main(["--config", json.dumps(config), "--model", str(model), "--output", str(seeds)])
        evaluate_seeds.main(["--config", json.dumps(config), "--seeds", str(seeds), "--output", str(evaluation)])
        results.append((SeedStore(seeds), json.loads(evaluation.read_text())))
    (store_a, eval_a), (store_b, eval_b) = results

    assert store_a.ids() == store_b.ids() == sorted(_ids(6))
    for image_id in _ids(6):
        a, b = store_a.get(image_id), store_b.get(image_id)
        assert np.array_equal(a.keys, b.keys) and np.array_equal(a.maps, b.maps), image_id
        assert a.maps.size and np.unique(a.maps).size > 10  # real maps, not a constant
    for field in ("split", "num_images", "has_background", "normalization", "best_threshold", "best", "sweep"):
        assert eval_a[field] == eval_b[field], field
    assert eval_a["num_images"] == 6 and len(eval_a["sweep"]) == 91 and eval_a["best"]["miou"] > 0


def test_a_different_seed_gives_a_different_model(trained: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    """The determinism check above can fail: the seed does reach the weights."""
    dataset, first_model = trained
    config = _config(dataset)
    config["seed"] = 1
    other = _train(config, tmp_path / "train" / "model.pt")
    first, second = (torch.load(path, weights_only=True)["model"] for path in (first_model, other))
    assert len(_differing_tensors(first, second)) > len(first) // 2


# ----------------------------------------------------------------- classes without any pixel

def _evaluate_masks(tmp_path: Path, dataset: dict[str, Any], predict: Callable[[str], np.ndarray]) -> dict[str, Any]:
    masks, output = tmp_path / "masks.h5", tmp_path / "miou.json"
    with MaskStoreWriter(masks, method="mctformer", num_classes=2) as writer:
        for image_id in _ids(6):
            writer.add(image_id, predict(image_id))
    config = json.dumps({"dataset": dataset, "method": {"name": "mctformer"}, "stage": {"split": "train_aug"}})
    evaluate_masks.main(["--config", config, "--masks", str(masks), "--output", str(output)])
    return json.loads(output.read_text())


def test_background_only_ground_truth(tmp_path: Path) -> None:
    """A split whose ground truth is background only: classes absent from ground truth and prediction are
    null in the JSON and left out of the means; a class that is only predicted scores 0 and counts."""
    dataset = _write_dataset(tmp_path / "dataset", objects=False)
    pixels = 6 * HEIGHT * WIDTH

    perfect = _evaluate_masks(tmp_path / "perfect", dataset, lambda image_id: np.zeros((HEIGHT, WIDTH), np.uint8))
    assert perfect["iou"] == {"background": 1.0, "red": None, "blue": None}
    assert perfect["precision"] == {"background": 1.0, "red": None, "blue": None}
    assert perfect["miou"] == 1.0 and perfect["mean_precision"] == 1.0 and perfect["mean_recall"] == 1.0
    assert perfect["num_pixels"] == pixels and perfect["pixel_accuracy"] == 1.0

    def some_red(image_id: str) -> np.ndarray:
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        if image_id == "img_0":
            mask[RED] = 1  # 144 false-positive red pixels
        return mask

    false_red = _evaluate_masks(tmp_path / "false_red", dataset, some_red)
    background_iou = (pixels - 144) / pixels
    assert false_red["iou"] == pytest.approx({"background": background_iou, "red": 0.0, "blue": None})
    assert false_red["miou"] == pytest.approx(background_iou / 2)  # background and red, not blue
    assert false_red["precision"]["red"] == 0.0 and false_red["recall"]["red"] == 0.0
    assert false_red["recall"]["background"] == pytest.approx(background_iou)


def test_seed_scores_of_a_split_without_one_class(tmp_path: Path) -> None:
    """evaluate_seeds on a split where 'blue' is in neither the ground truth nor the seeds (img_0 and img_6
    hold only red): blue is null at every threshold and the best mIoU averages background and red."""
    dataset = _write_dataset(tmp_path / "dataset", count=7)
    (tmp_path / "dataset" / "red_only.txt").write_text("img_0\nimg_6\n")
    dataset["splits"]["red_only"] = "red_only.txt"
    seeds, output = tmp_path / "seeds.h5", tmp_path / "eval.json"
    _write_seed_store(seeds, ["img_0", "img_6"])
    config = json.dumps({"dataset": dataset, "method": {"name": "mctformer"},
                         "stage": {"split": "red_only", "thresholds": {"start": 0.1, "stop": 0.9, "step": 0.1}}})
    evaluate_seeds.main(["--config", config, "--seeds", str(seeds), "--output", str(output)])
    result = json.loads(output.read_text())
    assert result["num_images"] == 2 and result["best_threshold"] == 0.2
    assert result["best"]["iou"] == {"background": 1.0, "red": 1.0, "blue": None}
    assert result["best"]["miou"] == 1.0
    # at 0.9 everything is background: IoU (background share, 0); blue still does not count
    valid = 2 * (HEIGHT * WIDTH - 12)
    assert result["sweep"][-1]["miou"] == pytest.approx((valid - 2 * 144) / valid / 2)


# ------------------------------------------------------------- AFA's propagated label (issue 15, item 9)

def _authors_propagated_label(par: Any, image: torch.Tensor, scores: torch.Tensor, box: tuple[int, int, int, int],
                              keys: torch.Tensor) -> torch.Tensor:
    """The published sequence written out step by step (dist_train_voc.py: scores upsampled to the crop;
    refine_cams_with_cls_label: cut the box, image at half size, PAR, back to the box, argmax; 255 outside)."""
    import torch.nn.functional as F

    top, bottom, left, right = box
    full = F.interpolate(scores, size=image.shape[-2:], mode="bilinear", align_corners=False)
    region = image[:, :, top:bottom, left:right]
    half = F.interpolate(region, size=((bottom - top) // 2, (right - left) // 2), mode="bilinear", align_corners=False)
    refined = F.interpolate(par(half, full[:, :, top:bottom, left:right]), size=(bottom - top, right - left),
                            mode="bilinear", align_corners=False)
    label = torch.full(image.shape[-2:], 255, dtype=torch.long)
    label[top:bottom, left:right] = keys[refined.argmax(dim=1)[0]]
    return label


def test_afa_propagated_label_follows_the_authors_code() -> None:
    """Hand-built crop: a 24×20 image (left half dark, right half bright) at rows 3..27, cols 5..25 of a
    32×32 crop whose padding is zero; random-walk scores on a 4×4 token grid favour background on the left
    and class 2 on the right. The default (``box``) label is the authors' sequence, pixel for pixel, and
    ignores the padding; ``crop`` (the former reading) lets the padding in and differs."""
    from wsss_core.methods.afa import refine_propagated_scores
    from wsss_core.single_stage.par import PixelAdaptiveRefinement

    torch.manual_seed(0)
    par = PixelAdaptiveRefinement(dilations=(1, 2, 4), num_iterations=5)
    box = (3, 27, 5, 25)
    image = torch.zeros(1, 3, 32, 32)
    image[:, :, 3:27, 5:15] = 0.2
    image[:, :, 3:27, 15:25] = 0.9
    image[:, :, 3:27, 5:25] += 0.05 * torch.rand(1, 3, 24, 20)
    scores = torch.zeros(1, 2, 4, 4)
    scores[0, 0] = torch.tensor([0.9, 0.7, 0.3, 0.1]).repeat(4, 1)  # background falls off to the right
    scores[0, 1] = 1.0 - scores[0, 0] + 0.02 * torch.rand(4, 4)
    keys = torch.tensor([0, 2])
    box_tensor = torch.tensor(box)

    label = refine_propagated_scores(par, image, scores, keys, box_tensor, 2)
    assert torch.equal(label, _authors_propagated_label(par, image, scores, box, keys))
    assert set(label[3:27, 5:25].unique().tolist()) == {0, 2}
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[3:27, 5:25] = False
    assert (label[outside] == 255).all()

    # the padding and the scores over it never reach the box label ...
    painted = image.clone()
    painted[..., :3, :], painted[..., 27:, :] = 1.0, 1.0
    assert torch.equal(refine_propagated_scores(par, painted, scores, keys, box_tensor, 2), label)
    # ... whereas the former reading runs PAR over the padding, and its label differs inside the box
    former = refine_propagated_scores(par, image, scores, keys, box_tensor, 2, mode="crop")
    assert (former[outside] == 255).all() and (former != label).any()


def test_afa_propagation_par_switch_is_checked() -> None:
    from wsss_core.errors import ConfigError
    from wsss_core.methods.afa import AFA

    base = {"model": {"backbone": "mit_synth", "weights": None}, "train": {"batch_size": 2}}
    assert AFA(base, 2).propagation_par == "box"
    assert AFA({**base, "losses": {"propagation": {"par": "crop"}}}, 2).propagation_par == "crop"
    with pytest.raises(ConfigError, match="method.losses.propagation.par = 'half': must be 'box' or 'crop'"):
        AFA({**base, "losses": {"propagation": {"par": "half"}}}, 2)


# ------------------------------------------------------ resume state of other code (issue 15, item 2)

def _leave_resume_state(monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], output: Path) -> Path:
    """Train, keeping the resume state that train_method removes after writing model.pt (its last
    checkpoint: the end of epoch 1 of 2), as a run killed in epoch 2 leaves it."""
    import types

    with monkeypatch.context() as patch:
        patch.setattr(train_method, "shutil", types.SimpleNamespace(rmtree=lambda *args, **kwargs: None))
        _train(config, output)
    output.unlink()
    return output.parent / "_state" / "last.pt"


def test_resume_state_of_other_code_is_not_resumed(
    trained: tuple[dict[str, Any], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A killed run's state written under another code fingerprint (the stage or the method edited since)
    is discarded with a log line saying why; the run starts afresh and ends bit-identical to an
    uninterrupted run. The same state under this code's fingerprint is resumed (so the check can fail)."""
    dataset, fresh = trained
    config = _config(dataset)
    output = tmp_path / "train" / "model.pt"
    state_path = _leave_resume_state(monkeypatch, config, output)
    state = torch.load(state_path, weights_only=False)
    assert state["step"] == 3 and state["code_fingerprint"]
    # poison the weights: a resumed run ends elsewhere than a fresh one
    state["model"] = {name: tensor + 0.5 if tensor.is_floating_point() else tensor
                      for name, tensor in state["model"].items()}

    torch.save({**state, "code_fingerprint": "0123456789abcdef"}, state_path)
    capsys.readouterr()
    _train(config, output)
    log = capsys.readouterr().err
    assert f"WARNING wsss_core.training.checkpoint: resume state {state_path} was made by other code (fingerprint " \
        f"0123456789abcdef, now {state['code_fingerprint']}): starting afresh rather than mixing two code versions " \
        "in one model\n" in log, log
    assert log.count("was made by other code") == 1 and "resumed from" not in log
    first, second = (torch.load(path, weights_only=True)["model"] for path in (fresh, output))
    assert _differing_tensors(first, second) == []

    output.unlink()
    state_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, state_path)  # this code's fingerprint: resumed
    _train(config, output)
    assert f"resumed from {state_path} at step 3/6\n" in capsys.readouterr().err
    first, second = (torch.load(path, weights_only=True)["model"] for path in (fresh, output))
    assert len(_differing_tensors(first, second)) > len(first) // 2

    # run-time settings are not in the resume key (wsss_core.runtime): a job resumed with another
    # log_every and device (as --runtime passes them) continues from its checkpoint
    output.unlink()
    state_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, state_path)
    run_time = {"device": "cpu", "num_workers": 0, "sections": {"train_method": {"log_every": 2, "checkpoint_every": 5}}}
    train_method.main(["--config", json.dumps(config), "--output", str(output), "--runtime", json.dumps(run_time),
                       "--runtime-section", "train_method"])
    log = capsys.readouterr().err
    assert f"resumed from {state_path} at step 3/6\n" in log and "starting afresh" not in log, log
    history = torch.load(output, weights_only=True)["history"]
    steps = [record["step"] for record in history]
    assert steps == [1, 2, 3, 4, 6], steps  # log_every 1 up to the kill, then 2


def test_training_checks_every_split_of_the_chain(
    trained: tuple[dict[str, Any], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sound chain passes the pre-training check, which names each split it read and whether its masks
    were read too (the train split's are not)."""
    dataset, _ = trained
    root = Path(shutil.copytree(dataset["root"], tmp_path / "dataset"))
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("img_1\nimg_4\n")
    config = _config({**copy.deepcopy(dataset), "root": str(root),
                      "roles": {"train": "train_aug", "score": "train_aug", "evaluate": "val"}})
    config["dataset"]["splits"]["val"] = "ImageSets/Segmentation/val.txt"
    config["method"]["train"]["epochs"] = 1
    capsys.readouterr()
    _train(config, tmp_path / "train" / "model.pt")
    log = capsys.readouterr().err
    assert "checked the chain's splits (train_aug: 6 images + masks, val: 2 images + masks) in " in log, log
    assert log.index("checked the chain's splits") < log.index('{"step": 1,')


# ------------------------------------------------------------- the workflow itself (issue 15, items 5-8)

SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def _snakemake(workdir: Path, *arguments: str, python: Path | str = SNAKEMAKE,
               configfiles: tuple[Path, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``snakemake`` on the repository's Snakefile in ``workdir`` with config.yaml, tests/e2e_config.yaml
    (tiny synthetic sizes) and ``configfiles``; the stages import this checkout (PYTHONPATH)."""
    command = [str(python)] if python == SNAKEMAKE else [str(python), "-m", "snakemake"]
    command += ["--snakefile", str(REPOSITORY / "Snakefile"), "--directory", str(workdir), "--configfile",
                str(REPOSITORY / "config.yaml"), str(REPOSITORY / "tests" / "e2e_config.yaml"),
                *map(str, configfiles), "--cores", "1", *arguments]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPOSITORY)}
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=workdir, timeout=600)


@pytest.mark.slow  # Snakemake parses the workflow (seconds; a minute on a loaded 2-core machine)
def test_jobs_run_with_an_interpreter_under_a_path_with_a_space(tmp_path: Path) -> None:
    """A clone under "My Projects" with the README's .venv: every rule quotes the interpreter, so the
    synthetic dataset job runs (it failed with "/…/My: No such file or directory" before)."""
    venv = tmp_path / "My Projects" / ".venv"
    venv.parent.mkdir()
    venv.symlink_to(Path(sys.executable).parent.parent)
    python = venv / "bin" / Path(sys.executable).name
    probe = subprocess.run([str(python), "-c", "import sys; print(sys.executable)"], capture_output=True, text=True)
    assert probe.stdout.strip() == str(python)  # Snakemake's PYTHON (sys.executable) holds the space
    workdir = tmp_path / "work"
    workdir.mkdir()

    result = _snakemake(workdir, "results/synth/dataset", python=python)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"'{python}' -m wsss_core.stages.synth_dataset" in result.stdout + result.stderr
    assert (workdir / "results" / "synth" / "dataset" / "ImageSets" / "Segmentation" / "val.txt").is_file()
    rules = sorted((REPOSITORY / "workflow" / "rules").glob("*.smk"))
    assert [rule.name for rule in rules if "{PYTHON}" in rule.read_text()] == []


@pytest.mark.slow  # Snakemake parses the workflow (seconds; a minute on a loaded 2-core machine)
def test_snakemake_stops_with_the_line_of_the_config_checks(tmp_path: Path) -> None:
    """``snakemake -n`` stops on a config that only resolving shows to be wrong, with the very line that
    ``_load_like_the_snakefile`` (the checks' functions) gives for it, before any job."""
    from snakemake.exceptions import WorkflowError

    overlay = tmp_path / "own_for_cti.yaml"
    overlay.write_text(yaml.safe_dump({"methods": {"cti": {"pipeline": {"presets": {"synth": {"refine": "own"}}}}}}))
    config = yaml.safe_load((REPOSITORY / "config.yaml").read_text())
    config["methods"]["cti"]["pipeline"]["presets"]["synth"]["refine"] = "own"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(WorkflowError) as error:
        _load_like_the_snakefile(tmp_path / "config.yaml")
    workdir = tmp_path / "work"
    workdir.mkdir()

    result = _snakemake(workdir, "-n", "results/synth/dataset", configfiles=(overlay,))
    assert result.returncode != 0
    assert str(error.value) in result.stdout + result.stderr, result.stderr[-3000:]
    assert not (workdir / "results").exists()


@pytest.fixture
def umask_002() -> Any:
    """A shared-project umask (group-writable), restored afterwards."""
    previous = os.umask(0o002)
    yield
    os.umask(previous)


def test_results_honour_the_umask(trained: tuple[dict[str, Any], Path], tmp_path: Path, umask_002: None) -> None:
    """Stage outputs (a JSON score, an HDF5 store, a model) get 0o664 under umask 002, as any file a
    teammate's tools write, not mkstemp's owner-only 0o600."""
    dataset, model = trained
    config = _config(dataset)
    seeds, scores = tmp_path / "seeds" / "train_aug.h5", tmp_path / "seeds" / "eval.json"
    export_seeds.main(["--config", json.dumps(config), "--model", str(model), "--output", str(seeds)])
    evaluate_seeds.main(["--config", json.dumps(config), "--seeds", str(seeds), "--output", str(scores)])
    config["method"]["train"]["epochs"] = 1
    trained_here = _train(config, tmp_path / "train" / "model.pt")
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in (seeds, scores, trained_here)} == \
        {"train_aug.h5": "0o664", "eval.json": "0o664", "model.pt": "0o664"}


def test_killed_synth_dataset_leftover_is_swept_and_the_folder_honours_the_umask(
    tmp_path: Path, umask_002: None
) -> None:
    """A SIGKILLed synth_dataset leaves its temporary folder ``.dataset.<random>.partial``; the next run
    removes it (and a stale ``.dataset.stale``) and writes a folder with the umask's mode."""
    import tempfile

    from wsss_core.stages import synth_dataset

    output = tmp_path / "results" / "synth" / "dataset"
    output.parent.mkdir(parents=True)
    killed = Path(tempfile.mkdtemp(prefix=".dataset.", suffix=".partial", dir=output.parent))
    (killed / "JPEGImages").mkdir()
    (killed / "JPEGImages" / "0.jpg").write_bytes(b"\xff\xd8half")
    (output.parent / ".dataset.stale").mkdir()
    config = {"stage": {"image_size": 32, "num_train_aug": 4, "num_train": 2, "num_val": 2}, "seed": 0}
    synth_dataset.main(["--config", json.dumps(config), "--output", str(output)])
    assert sorted(path.name for path in output.parent.iterdir()) == ["dataset"]
    assert oct(output.stat().st_mode & 0o777) == "0o775"
    assert (output / "synth_manifest.json").is_file()


def _fake_voc_overlay(tmp_path: Path) -> Path:
    """A VOC root with one id per split list and two GPUs per heavy job (as tests/test_slurm_profile.py)."""
    lists = tmp_path / "VOC2012" / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    for split in ("train_aug", "train", "val"):
        (lists / f"{split}.txt").write_text("2007_000032\n")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": {"voc": {"root": str(tmp_path / "VOC2012")}},
                                       "compute": {"voc": {"gpu": 2, "mem_mb": 48000, "runtime": 1440}}}))
    return overlay


@pytest.mark.slow
def test_slurm_as_a_user_profile_stops_instead_of_capping_gpus(tmp_path: Path) -> None:
    """``--profile profiles/slurm`` (which also loads profiles/default and its local ``gpu: 1``) stops with
    one message naming the right spelling; with ``--workflow-profile none`` added, the training job asks
    for its two GPUs."""
    overlay = _fake_voc_overlay(tmp_path)
    command = [str(SNAKEMAKE), "-n", "--profile", "profiles/slurm", "--configfile", "config.yaml", str(overlay),
               "--", "results/voc/cti/train/model.pt"]
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    stopped = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, env=environment, timeout=600)
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode == 1
    assert ("profile profiles/slurm runs jobs on a cluster (executor slurm), but Snakemake also loads the workflow "
            "profile profiles/default, whose local cap 'resources: gpu: 1' wins") in output, output
    assert "Use --workflow-profile profiles/slurm instead of --profile profiles/slurm" in output

    command[2:2] = ["--workflow-profile", "none"]
    planned = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, env=environment, timeout=600)
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]
    lines = (planned.stdout + planned.stderr).splitlines()
    job = next(index for index, line in enumerate(lines) if re.match(r"^(?:local)?rule train_method:", line))
    resources = next(line for line in lines[job:] if line.strip().startswith("resources:"))
    assert "gpu=2" in resources.replace(",", " ").split(), resources


def test_profile_conflict_reads_the_command_line(tmp_path: Path) -> None:
    """Which command lines stop: a cluster executor (from a profile, $SNAKEMAKE_PROFILE or --executor)
    with profiles/default as the workflow profile; not a local run, an explicit workflow profile, or a
    cap given with --resources."""
    from wsss_core.workflow_checks import profile_conflict

    def conflict(*argv: str, environ: dict[str, str] | None = None) -> str | None:
        return profile_conflict(argv, environ or {}, REPOSITORY, REPOSITORY)

    assert conflict("--cores", "2", "results/synth/cti/miou.json") is None
    assert conflict("--workflow-profile", "profiles/slurm", "results/voc/cti/miou.json") is None
    assert conflict("--profile", "profiles/slurm", "--workflow-profile", "none") is None
    assert conflict("--profile=profiles/slurm", "--resources", "gpu=8") is None
    assert "use --workflow-profile profiles/slurm instead of --profile profiles/slurm" in \
        conflict("--profile=profiles/slurm", "-n").lower()
    assert conflict("-n", environ={"SNAKEMAKE_PROFILE": "profiles/slurm"}) is not None
    assert conflict("--executor", "slurm", "-n").startswith("--executor slurm runs jobs on a cluster")
    assert conflict("--executor", "local") is None


# ------------------------------------------------------------------- messages (issue 15, item 7)

def _stage_process(tmp_path: Path, config: dict[str, Any], output: Path, limit_bytes: int | None = None
                   ) -> subprocess.Popen[bytes]:
    """train_method as Snakemake runs it (a process of its own, log to a file), optionally under a
    file-size limit (what a full disk does to the writer: no more bytes)."""
    import resource

    (tmp_path / "train.json").write_text(json.dumps(config))

    def limit() -> None:
        # Ctrl-C as in a terminal's foreground job: a shell without job control starts background jobs
        # (`pytest ... &`) with SIGINT ignored, the child inherits that, and Python then installs no
        # KeyboardInterrupt handler at all (the stage trained to the end and exited 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.RLIM_INFINITY))

    log = (tmp_path / "train.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "wsss_core.stages.train_method", "--config", f"@{tmp_path / 'train.json'}",
         "--output", str(output)], cwd=REPOSITORY, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPOSITORY)},
    )


@pytest.mark.slow  # a stage process of its own (seconds; more on a loaded machine)
def test_full_disk_during_torch_save_names_the_file_and_the_free_space(
    trained: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    """The model (about 1.3 MB) cannot be written past 512 KiB: one line naming the file, how far it got
    and the free space, instead of torch's "unexpected pos"; nothing partial is left; the re-run writes it."""
    dataset, model = trained
    assert model.stat().st_size > 2**20
    config = _config(dataset)
    config["method"]["train"]["epochs"] = 1
    output = tmp_path / "train" / "model.pt"
    process = _stage_process(tmp_path, config, output, limit_bytes=2**19)
    assert process.wait(timeout=300) == 1
    log = (tmp_path / "train.log").read_text()
    message = _error_line(log)
    print(f"\n[disk full] train_method: {message}")
    assert message.startswith(f"DiskFullError: cannot write '{output}': the file system refused more bytes after "
                              "512.0 KiB"), message
    assert f"free on the disk holding '{output.parent}'. Free space (or raise the quota) and re-run" in message
    assert not output.exists() and _leftovers(output) == []
    _train(config, output)
    assert torch.load(output, weights_only=True)["method"] == "mctformer"


@pytest.mark.slow  # a stage process of its own (seconds; more on a loaded machine)
def test_ctrl_c_stops_a_stage_with_one_line(trained: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    """SIGINT (Ctrl-C, which reaches the whole process group) during training: exit code 130 and one
    line, no traceback from the stage or its DataLoader workers; the output is not written."""
    dataset, _ = trained
    config = _config(dataset)
    config.update(num_workers=1)
    config["method"]["train"]["epochs"] = 500
    output = tmp_path / "train" / "model.pt"
    process = _stage_process(tmp_path, config, output)
    try:
        deadline = time.monotonic() + 600
        while '"step": 2,' not in (tmp_path / "train.log").read_text():
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "train.log").read_text()
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)  # the terminal's Ctrl-C: the stage and its worker
        assert process.wait(timeout=300) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = (tmp_path / "train.log").read_text()
    message = _error_line(log)
    assert message == "interrupted (Ctrl-C): nothing half-written is left; re-run to continue", log
    assert "KeyboardInterrupt" not in log and not output.exists()


TARGETS = [
    ("results/synth/ctii/miou.json",
     "target 'results/synth/ctii/miou.json' names 'ctii', which is neither a method nor a variant in config.yaml; "
     "known methods: afa, cam, cti, eca, mcc, mctformer, swtformer, swtformer_v1, toco, vitpcm; variants: cti_bcam, "),
    ("results/synth/cti/seg/crf.deeplab_v9/miou.json",
     "target 'results/synth/cti/seg/crf.deeplab_v9/miou.json' names segmentation network 'deeplab_v9'; known "
     "networks (stages.segmentation): deeplab_v1_resnet38, deeplab_v2"),
    ("results/synth/cti/masks/cfr/eval.json",
     "target 'results/synth/cti/masks/cfr/eval.json' names refinement 'cfr'; known refinements: crf, irn, psa, own"),
    ("results/synth/ctii@seed1/miou.json", "target 'results/synth/ctii@seed1/miou.json' names 'ctii@seed1', which is "
     "neither a method nor a variant in config.yaml; known methods: "),
    ("results/sinth/cti/miou.json", "target 'results/sinth/cti/miou.json' names dataset 'sinth'; known datasets: "),
]


def test_targets_naming_unknown_runs_refinements_or_networks() -> None:
    """What the Snakefile says for a target path the config cannot build, instead of "No rule to produce";
    the paths every rule writes stay accepted."""
    from wsss_core.workflow_checks import command_line_targets, target_problem

    config = yaml.safe_load((REPOSITORY / "config.yaml").read_text())
    for target, expected in TARGETS:
        problem = target_problem(config, target)
        assert problem is not None and problem.startswith(expected), problem
    for target in ("results/synth/cti/miou.json", "results/synth/cti_bcam/seeds/eval.json", "results/synth/dataset",
                   "results/synth/cti/ablation.md", "results/synth/summary.md", "results/synth/figures/class_iou.png",
                   "results/voc/mctformer/seg/psa.deeplab_v1_resnet38/miou.json", "results/synth/toco/masks/own/eval.json",
                   "results/synth/cti@seed2/seeds/eval.json", "results/synth/comparisons.md",
                   "results/synth/pretrained/dino_vit_synth.safetensors", "results/synth/pretrain_pool/train.npz",
                   "all", "logs/x.log"):
        assert target_problem(config, target) is None, target
    assert command_line_targets(["-n", "--cores", "2", "--config", "seed=1", "--", "results/synth/x/miou.json"]) \
        == ["results/synth/x/miou.json"]


@pytest.mark.slow
def test_unknown_method_in_a_target_lists_the_known_ones(tmp_path: Path) -> None:
    result = _snakemake(tmp_path, "-n", "results/synth/ctii/miou.json")
    output = result.stdout + result.stderr
    assert result.returncode == 1 and TARGETS[0][1] in output and "No rule to produce" not in output, output


# ------------------------------------------------- on-disk dataset contents in the DAG (issue 15, item 1)

def _job_names(dry_run: str) -> list[str]:
    """Rules of the jobs a dry run lists."""
    return re.findall(r"^(?:local)?rule (\w+):", dry_run, flags=re.MULTILINE)


@pytest.mark.slow  # four Snakemake runs (seconds each; a minute each on a loaded 2-core machine)
def test_a_changed_image_of_an_on_disk_dataset_reruns_its_stages(tmp_path: Path) -> None:
    """The fingerprint rule of a dataset on disk runs, then nothing is to be done; rewriting one image
    makes ``snakemake -n`` schedule the fingerprint and the training that read the dataset, and the
    fingerprint's log names the file."""
    dataset = _write_dataset(tmp_path / "tiny")
    overlay = tmp_path / "tiny.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": {"tiny": {
        "format": "voc", "classes": "synth", "like": "synth", "root": dataset["root"], "cls_labels": "cls_labels.npy",
        "splits": dataset["splits"], "roles": {"train": "train_aug", "score": "train_aug", "evaluate": "train_aug"}}},
        # random init: the job then depends on the dataset only (not on the pretrained stand-in's file)
        "methods": {"mctformer": {"params": {"presets": {"synth": {"model": {"weights": None}}}}}}}))
    workdir = tmp_path / "work"
    workdir.mkdir()
    fingerprint_file = workdir / "results" / "tiny" / "dataset.fingerprint.json"
    log = workdir / "logs" / "tiny" / "dataset_fingerprint.log"

    first = _snakemake(workdir, str(fingerprint_file.relative_to(workdir)), configfiles=(overlay,))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert json.loads(fingerprint_file.read_text())["num_files"] == 6 * 2 + 2  # images, masks, list, labels
    assert "dataset 'tiny': first fingerprint, 14 files" in log.read_text()
    model = workdir / "results" / "tiny" / "mctformer" / "train" / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"a model trained on the dataset as it was")
    target = str(model.relative_to(workdir))
    unchanged = _snakemake(workdir, "-n", target, configfiles=(overlay,))
    assert "Nothing to be done" in unchanged.stdout + unchanged.stderr, unchanged.stdout[-3000:]

    image = Path(dataset["root"]) / "JPEGImages" / "img_2.jpg"
    pixels = np.array(Image.open(image))
    pixels[:4] = 0  # a repaired image: same name, other bytes
    Image.fromarray(pixels).save(image, quality=95)
    stale = _snakemake(workdir, "-n", target, configfiles=(overlay,))
    output = stale.stdout + stale.stderr
    assert stale.returncode == 0 and sorted(_job_names(output)) == ["dataset_fingerprint", "train_method"], output

    rerun = _snakemake(workdir, str(fingerprint_file.relative_to(workdir)), configfiles=(overlay,))
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "dataset 'tiny' changed since the previous fingerprint" in log.read_text()
    assert "1 file changed: JPEGImages/img_2.jpg" in log.read_text()
    assert json.loads(fingerprint_file.read_text())["changes"] == ["1 file changed: JPEGImages/img_2.jpg"]


def test_fingerprint_stage_names_an_added_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Adding an id to the list (with its image and mask) changes the digest; the stage names the list
    and the new files."""
    from wsss_core.stages import dataset_fingerprint

    dataset = _write_dataset(tmp_path / "tiny", count=7)
    root = Path(dataset["root"])
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(_ids(6)) + "\n")
    output = tmp_path / "results" / "tiny" / "dataset.fingerprint.json"
    argv = ["--config", json.dumps({"dataset": dataset}), "--output", str(output)]
    dataset_fingerprint.main(argv)
    first = json.loads(output.read_text())
    dataset_fingerprint.main(argv)
    assert json.loads(output.read_text())["digest"] == first["digest"]
    assert "dataset 'tiny' is unchanged since the previous fingerprint" in capsys.readouterr().err

    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(_ids(7)) + "\n")
    dataset_fingerprint.main(argv)
    second = json.loads(output.read_text())
    assert second["digest"] != first["digest"] and second["num_files"] == first["num_files"] + 2
    assert second["changes"] == ["1 file changed: ImageSets/Segmentation/train_aug.txt",
                                 "2 files added: JPEGImages/img_6.jpg, SegmentationClassAug/img_6.png"]
    assert "; ".join(second["changes"]) in capsys.readouterr().err
    assert sorted(path.name for path in output.parent.iterdir()) == [".dataset.fingerprint.previous.json",
                                                                    "dataset.fingerprint.json"]
