"""train_method and export_seeds end to end on a tiny VOC-layout dataset with vit_synth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from wsss_core.io.seed_store import SeedStore
from wsss_core.stages import export_seeds, train_method

IDS = [f"img_{index}" for index in range(6)]


def _write_dataset(root: Path) -> dict[str, Any]:
    """Six 36×40 images with a red and/or blue square; labels in a PSA-style cls_labels.npy."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {}
    for index, image_id in enumerate(IDS):
        image = rng.integers(80, 120, (36, 40, 3), dtype=np.uint8)
        present = np.array([index % 2 == 0, index % 3 != 0 or index % 2 == 1], dtype=np.float32)
        if present[0]:
            image[4:16, 4:16] = (220, 20, 20)
        if present[1]:
            image[18:32, 20:36] = (20, 20, 220)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        labels[image_id] = present
    np.save(root / "cls_labels.npy", labels, allow_pickle=True)
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(IDS) + "\n")
    return {"name": "tiny", "format": "voc", "root": str(root), "class_names": ["red", "blue"],
            "splits": {"train_aug": "ImageSets/Segmentation/train_aug.txt"}, "cls_labels": "cls_labels.npy"}


def _config(dataset: dict[str, Any]) -> dict[str, Any]:
    method = {
        "name": "mctformer",
        "model": {"backbone": "vit_synth", "weights": None, "drop_path": 0.0, "image_size": 32},
        "train": {"batch_size": 2, "epochs": 2, "lr": 5e-4, "weight_decay": 0.05, "warmup_epochs": 1,
                  "warmup_lr": 1e-6, "min_lr": 1e-5, "crop_size": 32, "scale": [0.5, 1.0],
                  "rand_augment": "rand-m9-mstd0.5-inc1", "random_erasing": 0.25},
        "seeds": {"class_attention_blocks": [-3, -2, -1], "patch_attention_blocks": "all", "scales": [1.0],
                  "flip": True},
    }
    return {"dataset": dataset, "method": method, "stage": {"split": "train_aug", "log_every": 1},
            "weights": {"files": {}, "use_hub": False}, "seed": 0, "device": "cpu", "num_workers": 0}


def test_training_resumes_and_seeds_cover_every_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(_write_dataset(tmp_path / "dataset"))

    straight = tmp_path / "straight" / "train" / "model.pt"
    train_method.main(["--config", json.dumps(config), "--output", str(straight)])
    reference = torch.load(straight, weights_only=True)
    assert reference["method"] == "mctformer" and reference["num_classes"] == 2
    assert [record["step"] for record in reference["history"]] == [1, 2, 3, 4, 5, 6]
    assert reference["images_per_second"] > 0 and reference["provenance"]["stage"] == train_method.STAGE
    assert not (straight.parent / "_state").exists()

    # a run killed while writing its model leaves the epoch-0 state behind; the rerun resumes from it
    resumed = tmp_path / "resumed" / "train" / "model.pt"

    def killed(payload: Any, path: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_method, "save_torch", killed)
    with pytest.raises(KeyboardInterrupt):
        train_method.train_method(config, resumed)
    monkeypatch.undo()
    assert (resumed.parent / "_state" / "last.pt").is_file() and not resumed.exists()
    assert torch.load(resumed.parent / "_state" / "last.pt", weights_only=False)["step"] == 3
    payload = train_method.train_method(config, resumed)
    assert resumed.is_file() and not (resumed.parent / "_state").exists()
    assert [record["step"] for record in payload["history"]] == [1, 2, 3, 4, 5, 6]
    for name, tensor in reference["model"].items():  # same batches, same augmentation, same result
        assert torch.allclose(payload["model"][name], tensor, atol=1e-6), name

    seeds = tmp_path / "seeds" / "train_aug.h5"
    export_seeds.main(["--config", json.dumps(config), "--model", str(straight), "--output", str(seeds)])
    store = SeedStore(seeds)
    assert sorted(store.ids()) == sorted(IDS)
    assert store.method == "mctformer" and store.num_classes == 2 and store.normalization == "minmax"
    assert store.attrs["images_per_second"] > 0
    labels = np.load(tmp_path / "dataset" / "cls_labels.npy", allow_pickle=True).item()
    for image_id in IDS:
        maps = store.get(image_id)
        assert maps.keys.tolist() == (np.flatnonzero(labels[image_id]) + 1).tolist()
        assert maps.maps.shape == (len(maps.keys), 36, 40)
        assert float(maps.maps.min()) >= 0.0 and float(maps.maps.max()) <= 1.0


def test_export_refuses_a_missing_model(tmp_path: Path) -> None:
    config = _config(_write_dataset(tmp_path / "dataset"))
    with pytest.raises(SystemExit) as stop:
        export_seeds.main(["--config", json.dumps(config), "--model", str(tmp_path / "absent.pt"),
                           "--output", str(tmp_path / "seeds.h5")])
    assert stop.value.code == 1 and not (tmp_path / "seeds.h5").exists()


def test_unknown_method_is_a_config_error(tmp_path: Path) -> None:
    config = _config(_write_dataset(tmp_path / "dataset"))
    config["method"]["name"] = "nonexistent"
    with pytest.raises(SystemExit) as stop:
        train_method.main(["--config", json.dumps(config), "--output", str(tmp_path / "model.pt")])
    assert stop.value.code == 1


def test_export_pseudo_labels_writes_a_mask_per_image_and_refuses_methods_without(tmp_path: Path) -> None:
    from wsss_core.io.seed_store import MaskStore
    from wsss_core.methods.base import build_method
    from wsss_core.models.weights import WeightsCatalog
    from wsss_core.stages import export_pseudo_labels

    config = _config(_write_dataset(tmp_path / "dataset"))
    config["method"] = {
        "name": "toco",
        "model": {"backbone": "vit_synth", "weights": None, "backbone_args": {"depth": 2}, "aux_layer": -1,
                  "projector": {"out_dim": 16, "hidden_dim": 16, "bottleneck_dim": 8}, "decoder": {"channels": 16}},
        "train": {"iterations": 1, "batch_size": 2, "crop_size": 32},
        "losses": {"par": {"dilations": [1, 2], "iterations": 2}},
        "seeds": {"resize": 32}, "inference": {"scales": [1.0]},
    }
    torch.manual_seed(0)
    network = build_method("toco", config["method"], 2).build_model(WeightsCatalog({}))
    model = tmp_path / "model.pt"
    torch.save({"method": "toco", "num_classes": 2, "model": network.state_dict()}, model)
    output = tmp_path / "masks" / "own" / "masks.h5"
    export_pseudo_labels.main(["--config", json.dumps(config), "--model", str(model), "--output", str(output)])
    store = MaskStore(output)
    assert sorted(store.ids()) == sorted(IDS) and store.attrs["source"] == "par"
    labels = np.load(tmp_path / "dataset" / "cls_labels.npy", allow_pickle=True).item()
    for image_id in IDS:
        mask = store.get(image_id)
        assert mask.shape == (36, 40)
        allowed = {0, *(np.flatnonzero(labels[image_id]) + 1).tolist()}
        assert set(np.unique(mask).tolist()) <= allowed  # only present classes, never 255

    mctformer = _config(_write_dataset(tmp_path / "other"))
    straight = tmp_path / "mctformer.pt"
    mctformer["method"]["train"]["epochs"] = 1
    train_method.main(["--config", json.dumps(mctformer), "--output", str(straight)])
    refused = tmp_path / "refused.h5"
    with pytest.raises(SystemExit) as stop:
        export_pseudo_labels.main(["--config", json.dumps(mctformer), "--model", str(straight),
                                   "--output", str(refused)])
    assert stop.value.code == 1 and not refused.exists()
