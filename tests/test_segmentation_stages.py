"""train_segmentation and infer_segmentation end to end on a tiny VOC-layout dataset made here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsss_core.errors import ConfigError, StoreError
from wsss_core.io.seed_store import MaskStore, MaskStoreWriter
from wsss_core.stages import infer_segmentation, train_segmentation

torch.set_num_threads(1)

CLASS_NAMES = ["square", "disc"]
HEIGHT, WIDTH = 40, 48


# ------------------------------------------------------------------------------------------ fixtures
def make_dataset(root: Path, num_train: int = 8, num_val: int = 3) -> dict:
    """A VOC-layout folder: JPEG images of a red square or a green disc on grey, palette PNG masks."""
    rng = np.random.default_rng(0)
    for folder in ("JPEGImages", "SegmentationClassAug", "Annotations", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    ids = [f"img_{index:03d}" for index in range(num_train + num_val)]
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    for index, image_id in enumerate(ids):
        label = 1 + index % 2
        top, left = rng.integers(4, 16), rng.integers(4, 20)
        if label == 1:
            inside = (yy >= top) & (yy < top + 18) & (xx >= left) & (xx < left + 18)
        else:
            inside = (yy - top - 9) ** 2 + (xx - left - 9) ** 2 < 81
        image = np.full((HEIGHT, WIDTH, 3), 110, np.uint8)
        image[inside] = (220, 30, 30) if label == 1 else (30, 200, 40)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        mask = np.where(inside, label, 0).astype(np.uint8)
        png = Image.fromarray(mask, mode="P")
        png.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
        png.save(root / "SegmentationClassAug" / f"{image_id}.png")
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><object><name>{CLASS_NAMES[label - 1]}</name></object></annotation>"
        )
    lists = root / "ImageSets/Segmentation"
    (lists / "train_aug.txt").write_text("\n".join(ids[:num_train]) + "\n")
    (lists / "val.txt").write_text("\n".join(ids[num_train:]) + "\n")
    return {
        "name": "tiny", "format": "voc", "root": str(root), "class_names": CLASS_NAMES,
        "splits": {"train_aug": "ImageSets/Segmentation/train_aug.txt", "val": "ImageSets/Segmentation/val.txt"},
        "cls_labels": None,
    }


def write_pseudo_masks(dataset: dict, path: Path, split: str = "train_aug", num_classes: int = 2,
                       skip: int = 0) -> None:
    """The ground truth stands in for refined pseudo-masks."""
    import wsss_core.data

    reader = wsss_core.data.open_dataset(dataset)
    with MaskStoreWriter(path, num_classes=num_classes, attrs={"source": "test"}) as writer:
        for image_id in reader.ids(split)[skip:]:
            writer.add(image_id, reader.mask(image_id))


@pytest.fixture()
def workspace(tmp_path: Path) -> dict:
    dataset = make_dataset(tmp_path / "dataset")
    masks = tmp_path / "masks" / "train_aug.h5"
    write_pseudo_masks(dataset, masks)
    stage = {
        "network": "deeplab_v2", "backbone": "resnet18", "weights": None, "batch_norm": "train",
        "backbone_args": {"channels": [8, 16, 32, 64], "layers": [1, 1, 1, 1], "stem_width": 8},
        "batch_size": 4, "iterations": 6, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
        "crop_size": 32, "scales": [0.75, 1.0, 1.25], "num_workers": 0, "log_every": 1,
        "checkpoint_every": 1, "device": "cpu",
    }
    config = {"dataset": dataset, "stage": stage, "weights": {"files": {}, "use_hub": False}, "seed": 0,
              "device": "cpu", "num_workers": 0}
    return {"root": tmp_path, "config": config, "masks": masks}


def train(config: dict, masks: Path, output: Path) -> None:
    train_segmentation.main(["--config", json.dumps(config), "--masks", str(masks), "--output", str(output)])


# ------------------------------------------------------------------------------------------ training
def test_train_writes_the_model_and_removes_its_state(workspace) -> None:
    output = workspace["root"] / "seg" / "model.pt"
    train(workspace["config"], workspace["masks"], output)
    saved = torch.load(output, map_location="cpu", weights_only=True)
    assert saved["network"] == "deeplab_v2" and saved["num_labels"] == 3
    assert saved["stage_config"]["backbone"] == "resnet18"
    assert [record["step"] for record in saved["history"]] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(record["loss"]) for record in saved["history"])
    assert saved["images_per_second"] > 0
    assert saved["provenance"]["stage"] == "wsss_core.stages.train_segmentation"
    assert not (output.parent / "_state").exists()
    # lr decays by poly 0.9 over 6 steps: logged after step 6 it is 0
    assert saved["history"][-1]["lr"] == pytest.approx(0.0)
    assert saved["history"][0]["lr"] == pytest.approx(0.01 * (5 / 6) ** 0.9)


def test_interrupted_training_resumes_from_its_state(workspace, monkeypatch) -> None:
    config, masks = workspace["config"], workspace["masks"]
    reference = workspace["root"] / "reference" / "model.pt"
    train(config, masks, reference)

    output = workspace["root"] / "resumed" / "model.pt"
    original_step = train_segmentation.SegmentationTask.training_step

    def failing_step(self, model, batch, progress):
        if progress.step == 4:
            raise KeyboardInterrupt("killed")
        return original_step(self, model, batch, progress)

    monkeypatch.setattr(train_segmentation.SegmentationTask, "training_step", failing_step)
    with pytest.raises(SystemExit) as stop:  # the stage turns Ctrl-C into one line and exit code 130
        train(config, masks, output)
    assert stop.value.code == 130 and not output.exists()
    state = torch.load(output.parent / "_state" / "last.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 4

    monkeypatch.setattr(train_segmentation.SegmentationTask, "training_step", original_step)
    calls = []
    counting = lambda self, model, batch, progress: calls.append(progress.step) or original_step(  # noqa: E731
        self, model, batch, progress
    )
    monkeypatch.setattr(train_segmentation.SegmentationTask, "training_step", counting)
    train(config, masks, output)
    assert calls == [4, 5]  # only the missing steps ran
    resumed = torch.load(output, map_location="cpu", weights_only=True)
    expected = torch.load(reference, map_location="cpu", weights_only=True)
    assert [record["step"] for record in resumed["history"]] == [1, 2, 3, 4, 5, 6]
    for key, value in expected["model"].items():
        assert torch.allclose(resumed["model"][key].float(), value.float(), atol=1e-5), key


def test_mask_store_must_cover_the_split(workspace) -> None:
    partial = workspace["root"] / "partial.h5"
    write_pseudo_masks(workspace["config"]["dataset"], partial, skip=2)
    with pytest.raises(StoreError, match="lacks 2 of the 8"):
        train_segmentation.train(workspace["config"], partial, workspace["root"] / "x" / "model.pt")


def test_mask_store_class_count_must_match(workspace) -> None:
    other = workspace["root"] / "other.h5"
    write_pseudo_masks(workspace["config"]["dataset"], other, num_classes=20)
    with pytest.raises(StoreError, match="20 classes"):
        train_segmentation.train(workspace["config"], other, workspace["root"] / "x" / "model.pt")


def test_bad_input_exits_with_one_line(workspace, capsys) -> None:
    config = dict(workspace["config"], stage={"network": "deeplab_v2"})
    with pytest.raises(SystemExit) as exit_info:
        train(config, workspace["masks"], workspace["root"] / "x" / "model.pt")
    assert exit_info.value.code == 1
    assert "ConfigError: config key stage.batch_size is missing" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- inference
def infer(config: dict, model: Path, output: Path, split: str = "val") -> None:
    infer_segmentation.main(["--config", json.dumps(config), "--model", str(model), "--split", split,
                             "--output", str(output)])


@pytest.mark.parametrize("crf", ["default", None])
def test_inference_writes_a_valid_mask_store(workspace, crf) -> None:
    model = workspace["root"] / "seg" / "model.pt"
    train(workspace["config"], workspace["masks"], model)
    stage = {"scales": [0.5, 1.0], "flip": True, "fuse": "max", "device": "cpu"}
    if crf is None:
        stage["crf"] = None
    config = dict(workspace["config"], stage=stage)
    output = workspace["root"] / "seg" / "val.h5"
    infer(config, model, output)
    store = MaskStore(output)
    assert store.ids() == ["img_008", "img_009", "img_010"]
    assert store.num_classes == 2
    for image_id in store.ids():
        mask = store.get(image_id)
        assert mask.shape == (HEIGHT, WIDTH) and mask.dtype == np.uint8 and mask.max() <= 2
    attrs = store.attrs
    assert attrs["images_per_second"] > 0
    assert attrs["provenance"]["stage"] == "wsss_core.stages.infer_segmentation"
    if crf is None:
        assert attrs["crf"] is None
    else:
        assert attrs["crf"]["bilateral_sxy"] == 67 and attrs["crf"]["gaussian_sxy"] == 1


def test_end_to_end_method_checkpoints_use_the_methods_segment(workspace, monkeypatch) -> None:
    class HalfAndHalf:
        """Fake end-to-end method: left half class 2, right half background."""

        end_to_end = True

        def __init__(self, name, config, num_classes):
            assert (name, config, num_classes) == ("fake", {"train": {}}, 2)

        def build_model(self, weights):
            assert weights.get("any_key") is None  # nothing pretrained is loaded before the state dict
            return torch.nn.Conv2d(3, 3, 1)

        def segment(self, model, image):
            assert not model.training
            probabilities = np.zeros((3, *image.shape[:2]), np.float32)
            probabilities[2, :, : image.shape[1] // 2] = 1.0
            probabilities[0, :, image.shape[1] // 2 :] = 1.0
            return probabilities

    monkeypatch.setattr(infer_segmentation, "build_method", HalfAndHalf)
    checkpoint = {"method": "fake", "method_config": {"train": {}}, "num_classes": 2,
                  "model": torch.nn.Conv2d(3, 3, 1).state_dict(), "provenance": {"config_hash": "abc"}}
    model = workspace["root"] / "train" / "model.pt"
    model.parent.mkdir()
    torch.save(checkpoint, model)
    config = dict(workspace["config"], stage={"crf": None, "device": "cpu"})
    output = workspace["root"] / "pred.h5"
    infer(config, model, output)
    store = MaskStore(output)
    expected = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected[:, : WIDTH // 2] = 2
    assert all(np.array_equal(store.get(image_id), expected) for image_id in store.ids())
    assert store.attrs["model_config_hash"] == "abc"


def test_model_of_another_dataset_is_refused(workspace, tmp_path) -> None:
    model = tmp_path / "seg" / "model.pt"
    train(workspace["config"], workspace["masks"], model)
    saved = torch.load(model, map_location="cpu", weights_only=True)
    saved["num_labels"] = 21
    torch.save(saved, model)
    with pytest.raises(StoreError):
        infer_segmentation.infer(dict(workspace["config"], stage={}), model, tmp_path / "p.h5")


def test_missing_model_file_is_a_store_error(workspace) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        infer_segmentation.infer(workspace["config"], workspace["root"] / "absent.pt", workspace["root"] / "p.h5")


@pytest.mark.parametrize("key, value", [("fuse", "median"), ("fuse_space", "odds"), ("scales", [])])
def test_bad_inference_settings_are_config_errors(workspace, key, value) -> None:
    model = workspace["root"] / "seg" / "model.pt"
    train(workspace["config"], workspace["masks"], model)
    config = dict(workspace["config"], stage={key: value, "crf": None})
    with pytest.raises(ConfigError, match=f"stage.{key}"):
        infer_segmentation.infer(config, model, workspace["root"] / "p.h5")
