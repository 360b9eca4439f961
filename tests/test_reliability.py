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
    """What the Snakefile does with a config file: snakemake's ``configfile:`` loader, then the two checks
    at the top of workflow/rules/common.smk (JSON-schema validation, then resolving every method and
    variant for every dataset, an InputError becoming a WorkflowError that starts with 'config.yaml: ')."""
    from snakemake.common.configfile import load_configfile
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = load_configfile(str(path))
    validate(config, schema=str(REPOSITORY / "workflow" / "schemas" / "config.schema.yaml"))
    try:
        resolve.check_datasets(config)
        for dataset in config["datasets"]:
            for run in resolve.run_names(config):
                resolve.method_config(config, dataset, run)
    except InputError as error:
        raise WorkflowError(f"config.yaml: {error}") from None
    return config


def test_config_loader_mirrors_common_smk() -> None:
    """_load_like_the_snakefile copies common.smk's checks; this fails when they drift apart."""
    rules = (REPOSITORY / "workflow" / "rules" / "common.smk").read_text()
    assert 'validate(config, schema="../schemas/config.schema.yaml")' in rules
    assert "resolve.method_config(config, _dataset, _run)" in rules
    assert "resolve.check_datasets(config)" in rules
    assert 'raise WorkflowError(f"config.yaml: {error}")' in rules
    assert 'configfile: "config.yaml"' in (REPOSITORY / "Snakefile").read_text()
    assert _load_like_the_snakefile(REPOSITORY / "config.yaml")["methods"]["cti"]  # the shipped file passes


def _misspell_cti_synth_train(config: dict[str, Any]) -> None:
    preset = config["methods"]["cti"]["params"]["presets"]["synth"]
    preset["trian"] = preset.pop("train")


CONFIG_BREAKS = [
    ("misspelt preset key", _misspell_cti_synth_train,
     ("unknown key 'methods.cti.params.presets.synth.trian'", "known keys there: losses, model, seeds, train")),
    ("wrong type", lambda config: config.update(seed="zero"),
     ("'zero' is not of type 'integer'", "schema['properties']['seed']")),
    ("misspelt top-level key", lambda config: config.update(num_wrokers=2),
     ("'num_wrokers' was unexpected",)),
    ("wrong type in a nested key", lambda config: config["compute"]["synth"].update(mem_mb="4G"),
     ("'4G' is not of type 'integer'", "instance['compute']['synth']['mem_mb']")),
    ("two label spaces", lambda config: config["datasets"]["voc"].update(class_names=["cell", "nucleus"]),
     ("config.yaml: datasets.voc needs exactly one of classes", "it has both")),
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
