"""A user's own VOC-layout dataset with its own class list: config, reader, and a real chain on it.

The fabricated dataset has two classes (``disc``, ``square``), 64x64 images, labels from
``Annotations/*.xml`` and palette masks; ``like: synth`` gives it the synthetic presets (tiny networks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from wsss_core import workflow_config as resolve
from wsss_core.data import open_dataset
from wsss_core.data.classes import voc_palette
from wsss_core.errors import ConfigError

REPOSITORY = Path(__file__).resolve().parents[1]
CLASSES = ["disc", "square"]


def fabricate_two_class_dataset(root: Path, num_train_aug: int = 16, num_train: int = 8, num_val: int = 8,
                                size: int = 64, seed: int = 0) -> dict:
    """A VOC-layout folder: JPEGImages, SegmentationClass (palette PNGs, 255 band), Annotations XML,
    ImageSets/Segmentation/{train_aug,train,val}.txt (train ⊂ train_aug, val disjoint)."""
    rng = np.random.default_rng(seed)
    for folder in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    ids = [f"img_{index:04d}" for index in range(num_train_aug + num_val)]
    for image_id in ids:
        image = np.full((size, size, 3), rng.integers(60, 120), dtype=np.uint8)
        mask = np.zeros((size, size), dtype=np.uint8)
        present = [label for label in (1, 2) if rng.random() < 0.6] or [int(rng.integers(1, 3))]
        objects = []
        for label in present:
            centre = rng.integers(size // 4, 3 * size // 4, size=2)
            radius = int(rng.integers(size // 8, size // 4))
            shape = np.zeros_like(mask)
            if label == 1:
                cv2.circle(shape, (int(centre[0]), int(centre[1])), radius, 1, -1)
                colour = (230, 40, 40)
            else:
                cv2.rectangle(shape, (int(centre[0] - radius), int(centre[1] - radius)),
                              (int(centre[0] + radius), int(centre[1] + radius)), 1, -1)
                colour = (40, 40, 230)
            image[shape > 0] = colour
            mask[shape > 0] = label
            objects.append(f"<object><name>{CLASSES[label - 1]}</name></object>")
        edges = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        mask[edges] = 255
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        png = Image.fromarray(mask, mode="P")
        png.putpalette(voc_palette().reshape(-1).tolist())
        png.save(root / "SegmentationClass" / f"{image_id}.png")
        (root / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{''.join(objects)}</annotation>")
    train_aug, val = ids[:num_train_aug], ids[num_train_aug:]
    train = train_aug[::max(num_train_aug // num_train, 1)][:num_train]
    for split, members in (("train_aug", train_aug), ("train", train), ("val", val)):
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(members) + "\n")
    return {
        "format": "voc", "class_names": list(CLASSES), "like": "synth", "root": str(root),
        "mask_dir": "SegmentationClass", "cls_labels": None,
        "splits": {split: f"ImageSets/Segmentation/{split}.txt" for split in ("train_aug", "train", "val")},
        "roles": {"train": "train_aug", "score": "train", "evaluate": "val"},
    }


def test_reader_takes_class_names_and_needs_exactly_one_label_space(tmp_path: Path) -> None:
    entry = fabricate_two_class_dataset(tmp_path / "mine", num_train_aug=4, num_train=2, num_val=2)
    reader = open_dataset({**entry, "name": "mine"})
    assert reader.class_names == ("disc", "square") and reader.num_classes == 2
    image_id = reader.ids("train")[0]
    assert set(np.unique(reader.mask(image_id))) <= {0, 1, 2, 255}
    assert reader.labels(image_id).shape == (2,)
    with pytest.raises(ConfigError, match="exactly one of classes .* has both"):
        open_dataset({**entry, "name": "mine", "classes": "voc"})
    without = {key: value for key, value in entry.items() if key != "class_names"}
    with pytest.raises(ConfigError, match="datasets.mine needs exactly one .* has neither"):
        open_dataset({**without, "name": "mine"})
    with pytest.raises(ConfigError, match="background is label 0"):
        open_dataset({**entry, "name": "mine", "class_names": ["background", "disc"]})


def test_schema_and_config_checks_accept_own_classes_and_stop_on_unknown_like(tmp_path: Path) -> None:
    from snakemake.utils import validate

    config = yaml.safe_load((REPOSITORY / "config.yaml").read_text())
    entry = fabricate_two_class_dataset(tmp_path / "mine", num_train_aug=4, num_train=2, num_val=2)
    config["datasets"]["mine"] = entry
    validate(config, str(REPOSITORY / "workflow/schemas/config.schema.yaml"))
    resolve.check_datasets(config)
    assert resolve.preset_name(config, "mine") == "synth"
    assert resolve.compute_resources(config, "mine") == config["compute"]["synth"]
    assert resolve.method_config(config, "mine", "mctformer")["model"]["backbone"] == "vit_synth"
    config["datasets"]["mine"]["like"] = "vocc"
    with pytest.raises(ConfigError, match="datasets.mine.like is 'vocc'"):
        resolve.check_datasets(config)


@pytest.mark.e2e
def test_chain_runs_on_a_two_class_dataset(tmp_path: Path) -> None:
    """train → seeds → seed evaluation → CRF masks → DeepLab → final mIoU on the 2-class dataset."""
    entry = fabricate_two_class_dataset(tmp_path / "data" / "mine")
    overlay = tmp_path / "mine.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": {"mine": entry}}))
    target = "results/mine/mctformer/miou.json"
    command = [
        str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(REPOSITORY / "Snakefile"),
        "--directory", str(tmp_path), "--configfile", str(REPOSITORY / "config.yaml"),
        str(REPOSITORY / "tests" / "e2e_config.yaml"), str(overlay), "--cores", "2", target,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-6000:]
    final = json.loads((tmp_path / target).read_text())
    assert final["result"]["class_names"] == ["background", "disc", "square"]
    assert 0.0 <= final["miou"] <= 1.0
    seeds = json.loads((tmp_path / "results/mine/mctformer/seeds/eval.json").read_text())
    assert seeds["split"] == "train" and seeds["num_images"] == 8
    # config.yaml's held-out protocol: threshold tuned on train_aug (the train role) minus train
    held_out = seeds["held_out"]
    assert held_out["tune_images"] == "train_aug minus train" and held_out["num_tune_images"] == 8
    assert held_out["report_split"] == "train" and 0.0 <= held_out["miou"] <= seeds["best"]["miou"]
    # the summary of this chain shows both protocols and names each number's split
    from wsss_core.stages import summary

    output = tmp_path / "results/mine/summary.md"
    config = {"dataset": {**entry, "name": "mine"}, "stage": {}}
    summary.main(["--config", json.dumps(config), "--runs", str(tmp_path / "results/mine/mctformer"),
                  "--output", str(output)])
    markdown = output.read_text()
    assert "seed mIoU [train]" in markdown and "final mIoU [val]" in markdown
    assert "| mctformer | held-out | train_aug minus train (8 images) | train |" in markdown
    print(markdown)
