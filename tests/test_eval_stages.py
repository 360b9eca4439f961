"""The evaluate_seeds, refine_crf and evaluate_masks stages on a tiny VOC-layout dataset written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss_core.data.classes import voc_palette
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.io.seed_store import MaskStore, MaskStoreWriter, SeedStoreWriter
from wsss_core.refine.crf_masks import seed_probabilities
from wsss_core.stages import evaluate_masks, evaluate_seeds, refine_crf

CLASS_NAMES = ["cat", "dog"]
HEIGHT, WIDTH = 24, 32
# image id → (class id, rectangle rows, rectangle columns)
OBJECTS = {
    "img_a": (1, slice(4, 16), slice(6, 20)),
    "img_b": (2, slice(8, 20), slice(12, 28)),
    "img_c": (1, slice(2, 12), slice(16, 30)),
    "img_d": (2, slice(10, 22), slice(2, 14)),
}
TRAIN = ["img_a", "img_b"]


def truth_of(image_id: str, with_border: bool = True) -> np.ndarray:
    class_id, rows, cols = OBJECTS[image_id]
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[rows, cols] = class_id
    if with_border:  # VOC-style ignore band on the object's top edge
        mask[rows.start - 1, cols] = 255
    return mask


@pytest.fixture()
def dataset(tmp_path: Path) -> dict:
    """A real VOC-layout folder: JPEGs, palette PNG masks, split lists, XML annotations."""
    root = tmp_path / "voc"
    for folder in ("JPEGImages", "SegmentationClassAug", "Annotations", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    palette = voc_palette().reshape(-1).tolist()
    for image_id, (class_id, rows, cols) in OBJECTS.items():
        image = np.full((HEIGHT, WIDTH, 3), (40, 60, 40), dtype=np.uint8)
        image[rows, cols] = (230, 200, 60) if class_id == 1 else (60, 120, 240)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        png = Image.fromarray(truth_of(image_id), mode="P")
        png.putpalette(palette)
        png.save(root / "SegmentationClassAug" / f"{image_id}.png")
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><object><name>{CLASS_NAMES[class_id - 1]}</name></object></annotation>"
        )
    lists = root / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (lists / "train_aug.txt").write_text("\n".join(OBJECTS) + "\n")
    return {
        "name": "tiny",
        "format": "voc",
        "root": str(root),
        "class_names": CLASS_NAMES,
        "splits": {"train": "ImageSets/Segmentation/train.txt", "train_aug": "ImageSets/Segmentation/train_aug.txt"},
        "cls_labels": None,
    }


def make_config(dataset: dict, stage: dict | None = None, method: str = "cti") -> str:
    return json.dumps({"dataset": dataset, "method": {"name": method}, "stage": stage or {}, "seed": 0})


def write_seed_store(path: Path, ids=tuple(OBJECTS), method: str = "cti", background: bool = False) -> None:
    """Seeds scoring 0.8 inside each object and 0.2 outside (plus a background channel if asked)."""
    with SeedStoreWriter(path, method=method, num_classes=2, attrs={"provenance": {"config_hash": "seedhash"}}) as w:
        for image_id in ids:
            inside = truth_of(image_id, with_border=False) > 0
            cam = np.where(inside, 0.8, 0.2).astype(np.float32)[None]
            keys = np.array([OBJECTS[image_id][0]])
            if background:
                w.add(image_id, np.concatenate([1 - cam, cam]), np.concatenate([[0], keys]))
            else:
                w.add(image_id, cam, keys)


def test_evaluate_seeds_sweeps_and_records(tmp_path, dataset):
    seeds, output = tmp_path / "seeds.h5", tmp_path / "eval_train.json"
    write_seed_store(seeds)
    stage = {"split": "train", "thresholds": {"start": 0.1, "stop": 0.9, "step": 0.1}}
    evaluate_seeds.main(["--config", make_config(dataset, stage), "--seeds", str(seeds), "--output", str(output)])
    result = json.loads(output.read_text())
    assert [point["threshold"] for point in result["sweep"]] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    # below 0.2 everything is foreground; 0.2 … 0.7 separate perfectly; from 0.8 on all is background
    assert result["best_threshold"] == 0.2
    assert result["best"]["miou"] == pytest.approx(1.0)
    assert result["best"]["iou"] == {"background": 1.0, "cat": 1.0, "dog": 1.0}
    assert result["diagnostics"]["errors"] == {"correct": 1.0, "missed": 0.0, "confused": 0.0,
                                               "false_foreground": 0.0, "foreground_iou": 1.0}
    # at 0.9 everything is background: IoU = (background pixels / valid pixels, 0, 0)
    truths = [truth_of(image_id) for image_id in TRAIN]
    background_share = sum(int((t == 0).sum()) for t in truths) / sum(int((t != 255).sum()) for t in truths)
    assert result["sweep"][-1]["miou"] == pytest.approx(background_share / 3)
    assert result["num_images"] == 2 and result["has_background"] is False
    assert result["seeds"]["config_hash"] == "seedhash"
    assert result["provenance"]["stage"] == "wsss_core.stages.evaluate_seeds"


def test_evaluate_seeds_with_background_channel_uses_argmax(tmp_path, dataset):
    seeds, output = tmp_path / "seeds.h5", tmp_path / "eval.json"
    write_seed_store(seeds, background=True)
    evaluate_seeds.main(["--config", make_config(dataset), "--seeds", str(seeds), "--output", str(output)])
    result = json.loads(output.read_text())
    assert result["best_threshold"] is None and result["sweep"] == [] and result["has_background"] is True
    assert result["best"]["miou"] == pytest.approx(1.0)


def test_evaluate_seeds_rejects_incomplete_or_foreign_store(tmp_path, dataset, capsys):
    seeds, output = tmp_path / "seeds.h5", tmp_path / "eval.json"
    write_seed_store(seeds, ids=["img_a"])
    with pytest.raises(SystemExit):
        evaluate_seeds.main(["--config", make_config(dataset), "--seeds", str(seeds), "--output", str(output)])
    assert "lacks 1 of the 2 images" in capsys.readouterr().err
    write_seed_store(seeds, method="mctformer")
    with pytest.raises(SystemExit):
        evaluate_seeds.main(["--config", make_config(dataset), "--seeds", str(seeds), "--output", str(output)])
    assert "written by method 'mctformer'" in capsys.readouterr().err
    assert not output.exists()


def run_refine(tmp_path, dataset, stage, background_store=False, with_eval=True, seeds_hash="seedhash") -> Path:
    seeds, evaluation, masks = tmp_path / "seeds.h5", tmp_path / "eval.json", tmp_path / "masks.h5"
    write_seed_store(seeds, background=background_store)
    argv = ["--config", make_config(dataset, stage), "--seeds", str(seeds), "--output", str(masks)]
    if with_eval:  # an evaluate_seeds result of this store (hash as recorded by the stage)
        evaluation.write_text(json.dumps({"best_threshold": 0.5, "seeds": {"config_hash": seeds_hash}}))
        argv += ["--seed-eval", str(evaluation)]
    refine_crf.main(argv)
    return masks


@pytest.mark.parametrize(
    "stage, background_store, with_eval",
    [
        ({"background": {"mode": "threshold"}}, False, True),
        ({"background": {"mode": "power", "alpha": 4}, "crf": {"iterations": 5}}, False, False),
        ({}, True, False),
    ],
)
def test_refine_crf_recovers_objects(tmp_path, dataset, stage, background_store, with_eval):
    masks_path = run_refine(tmp_path, dataset, stage, background_store, with_eval)
    masks = MaskStore(masks_path)
    assert masks.ids() == sorted(OBJECTS) and masks.method == "cti" and masks.num_classes == 2
    for image_id in OBJECTS:
        np.testing.assert_array_equal(masks.get(image_id), truth_of(image_id, with_border=False))
    attrs = masks.attrs
    assert attrs["images_per_second"] > 0
    assert attrs["split"] == "train_aug" and attrs["seeds"]["config_hash"] == "seedhash"
    if with_eval:
        assert attrs["background"] == {"mode": "threshold", "threshold": 0.5}
    elif background_store:
        assert attrs["background"] == {"mode": "stored"}
    else:
        assert attrs["background"] == {"mode": "power", "alpha": 4.0} and attrs["crf"]["iterations"] == 5


def test_refine_crf_background_power_values():
    seeds = SeedMaps(np.array([[[0.5, 1.0, 0.0]]], np.float32), np.array([2]))
    probabilities, keys = seed_probabilities(seeds, {"mode": "power", "alpha": 2})
    # background (1 - 0.5)^2 = 0.25 vs 0.5 → 1/3, 2/3; (1 - 1)^2 = 0 vs 1; (1 - 0)^2 = 1 vs 0
    np.testing.assert_allclose(probabilities[:, 0], [[1 / 3, 0.0, 1.0], [2 / 3, 1.0, 0.0]], atol=1e-6)
    assert keys.tolist() == [0, 2]
    probabilities, _ = seed_probabilities(seeds, {"mode": "threshold", "threshold": 0.5})
    np.testing.assert_allclose(probabilities[:, 0], [[0.5, 1 / 3, 1.0], [0.5, 2 / 3, 0.0]], atol=1e-6)


def test_refine_crf_config_errors(tmp_path, dataset, capsys):
    with pytest.raises(SystemExit):
        run_refine(tmp_path, dataset, {"background": {"mode": "threshold"}}, with_eval=False)
    assert "needs --seed-eval" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_refine(tmp_path, dataset, {"background": {"mode": "sigmoid"}}, with_eval=False)
    assert "stage.background.mode = 'sigmoid': must be 'threshold' or 'power'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_refine(tmp_path, dataset, {"crf": {"sxy": 3}}, with_eval=True)
    assert "unknown key 'stage.crf.sxy'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_refine(tmp_path, dataset, {}, with_eval=True, seeds_hash="otherhash")
    assert "scored another seed store" in capsys.readouterr().err


@pytest.mark.slow
def test_refine_crf_with_worker_processes(tmp_path, dataset):
    seeds, masks = tmp_path / "seeds.h5", tmp_path / "masks.h5"
    write_seed_store(seeds)
    config = json.loads(make_config(dataset, {"background": {"mode": "power", "alpha": 4}}))
    config["num_workers"] = 2
    refine_crf.main(["--config", json.dumps(config), "--seeds", str(seeds), "--output", str(masks)])
    store = MaskStore(masks)
    for image_id in OBJECTS:
        np.testing.assert_array_equal(store.get(image_id), truth_of(image_id, with_border=False))


def test_evaluate_masks_scores_ignored_pixels_and_sources(tmp_path, dataset):
    masks, output, evaluation = tmp_path / "masks.h5", tmp_path / "miou.json", tmp_path / "eval.json"
    evaluation.write_text(json.dumps({"provenance": {"stage": "x", "config_hash": "evalhash"}}))
    with MaskStoreWriter(masks, num_classes=2, attrs={"provenance": {"config_hash": "maskhash"}}) as writer:
        for image_id in TRAIN:
            prediction = truth_of(image_id, with_border=False)
            if image_id == "img_a":
                prediction[0, :4] = 255  # 4 background pixels left unlabelled
                prediction[5, 6:10] = 0  # 4 cat pixels called background
            writer.add(image_id, prediction)
    evaluate_masks.main(
        ["--config", make_config(dataset, {"split": "train"}), "--masks", str(masks), "--output", str(output),
         "--sources", str(evaluation)]
    )
    result = json.loads(output.read_text())
    valid = sum(int((truth_of(i) != 255).sum()) for i in TRAIN)
    assert result["ignored_fraction"] == pytest.approx(4 / valid)
    assert result["num_pixels"] == valid - 4
    cat_pixels = 12 * 14  # img_a's rectangle (its ignore band lies above it)
    assert result["iou"]["cat"] == pytest.approx((cat_pixels - 4) / cat_pixels)
    assert result["recall"]["cat"] == pytest.approx((cat_pixels - 4) / cat_pixels)
    assert result["precision"]["cat"] == pytest.approx(1.0)
    assert result["iou"]["dog"] == pytest.approx(1.0)
    dog_pixels = 12 * 16  # img_b's rectangle
    errors = result["diagnostics"]["errors"]
    assert errors["missed"] == pytest.approx(4 / (cat_pixels + dog_pixels))
    assert errors["confused"] == 0.0 and errors["false_foreground"] == 0.0
    assert errors["names_absent_class"] == 0.0 and errors["misses_present_class"] == 0.0
    assert result["masks"]["config_hash"] == "maskhash"
    assert result["sources"] == [
        {"path": str(evaluation), "stage": "x", "config_hash": "evalhash", "code_fingerprint": None, "git_commit": None}
    ]
    assert result["provenance"]["stage"] == "wsss_core.stages.evaluate_masks"


def test_evaluate_masks_rejects_wrong_size(tmp_path, dataset, capsys):
    masks = tmp_path / "masks.h5"
    with MaskStoreWriter(masks, num_classes=2) as writer:
        for image_id in TRAIN:
            writer.add(image_id, np.zeros((HEIGHT, WIDTH + 1), np.uint8))
    with pytest.raises(SystemExit):
        evaluate_masks.main(["--config", make_config(dataset, {"split": "train"}), "--masks", str(masks),
                             "--output", str(tmp_path / "out.json")])
    assert "ground truth is (24, 32)" in capsys.readouterr().err


def test_held_out_protocol_tunes_on_other_images_and_reports_the_scored_split(tmp_path, dataset, capsys):
    """Train images separate at 0.1 … 0.3, the other train_aug images only at 0.45: the oracle picks 0.1
    on train itself; the held-out protocol picks 0.45 on img_c/img_d and reports train's score there."""
    seeds, output = tmp_path / "seeds.h5", tmp_path / "eval.json"
    with SeedStoreWriter(seeds, method="cti", num_classes=2, attrs={"provenance": {"config_hash": "h"}}) as writer:
        for image_id in OBJECTS:
            inside, outside = (0.4, 0.1) if image_id in TRAIN else (0.5, 0.45)
            cam = np.where(truth_of(image_id, with_border=False) > 0, inside, outside).astype(np.float32)[None]
            writer.add(image_id, cam, np.array([OBJECTS[image_id][0]]))
    stage = {"split": "train", "thresholds": {"start": 0.05, "stop": 0.95, "step": 0.05},
             "held_out": {"tune_split": "train_aug", "max_tune_images": None}}
    evaluate_seeds.main(["--config", make_config(dataset, stage), "--seeds", str(seeds), "--output", str(output)])
    result = json.loads(output.read_text())
    assert result["best_threshold"] == 0.1 and result["best"]["miou"] == pytest.approx(1.0)
    held_out = result["held_out"]
    assert held_out["tune_images"] == "train_aug minus train" and held_out["num_tune_images"] == 2
    assert held_out["threshold"] == 0.45 and held_out["tune_miou"] == pytest.approx(1.0)
    at_045 = next(point for point in result["sweep"] if point["threshold"] == 0.45)
    assert held_out["miou"] == at_045["miou"] < 0.5  # train's objects (0.4) fall below the held-out threshold
    assert held_out["report_split"] == "train" and held_out["oracle_threshold"] == 0.1
    # tuning on the reported split itself leaves nothing to tune on: one line naming the key
    stage["held_out"] = {"tune_split": "train"}
    with pytest.raises(SystemExit):
        evaluate_seeds.main(["--config", make_config(dataset, stage), "--seeds", str(seeds), "--output", str(output)])
    assert "held_out.tune_split 'train' has no image outside the reported split 'train'" in capsys.readouterr().err
    stage["held_out"] = {"tune_split": "train_aug", "max_images": 3}
    with pytest.raises(SystemExit):
        evaluate_seeds.main(["--config", make_config(dataset, stage), "--seeds", str(seeds), "--output", str(output)])
    assert "unknown key 'stage.held_out.max_images'" in capsys.readouterr().err  # the typed section's message


def test_tuning_ids_exclude_the_reported_split_and_spread_evenly():
    from wsss_core.evaluation.threshold_protocol import tuning_ids

    candidates = [f"id{index:02d}" for index in range(10)]
    assert tuning_ids(candidates, ["id00", "id05"], None) == [c for c in candidates if c not in ("id00", "id05")]
    assert tuning_ids(candidates, ["id00"], 3) == ["id01", "id05", "id09"]


def test_refine_crf_can_take_the_held_out_threshold(tmp_path, dataset, capsys):
    seeds, evaluation, masks = tmp_path / "seeds.h5", tmp_path / "eval.json", tmp_path / "masks.h5"
    write_seed_store(seeds)
    evaluation.write_text(json.dumps({"best_threshold": 0.5, "held_out": {"threshold": 0.3},
                                      "seeds": {"config_hash": "seedhash"}}))
    stage = {"background": {"mode": "threshold", "threshold_from": "held_out"}}
    refine_crf.main(["--config", make_config(dataset, stage), "--seeds", str(seeds), "--seed-eval", str(evaluation),
                     "--output", str(masks)])
    assert MaskStore(masks).attrs["background"] == {"mode": "threshold", "threshold": 0.3, "threshold_from": "held_out"}
    evaluation.write_text(json.dumps({"best_threshold": 0.5, "held_out": None, "seeds": {"config_hash": "seedhash"}}))
    with pytest.raises(SystemExit):
        refine_crf.main(["--config", make_config(dataset, stage), "--seeds", str(seeds), "--seed-eval",
                         str(evaluation), "--output", str(masks)])
    assert "has no held_out threshold: set stages.evaluate_seeds.held_out" in capsys.readouterr().err
