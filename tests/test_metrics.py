"""Confusion-matrix metrics, seed → label conversion and the one-pass threshold sweep."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsss_core.errors import StoreError
from wsss_core.evaluation.metrics import (
    ConfusionMatrix,
    label_names,
    score_seeds_by_argmax,
    seeds_to_labels,
    threshold_sweep,
)
from wsss_core.io.seed_maps import SeedMaps

torch.set_num_threads(1)


class FakeSeeds:
    def __init__(self, seeds: dict[str, SeedMaps]) -> None:
        self.seeds = seeds

    def get(self, image_id: str) -> SeedMaps:
        return self.seeds[image_id]


class FakeReader:
    def __init__(self, masks: dict[str, np.ndarray], num_classes: int) -> None:
        self.masks = masks
        self.num_classes = num_classes
        self.class_names = [f"c{index}" for index in range(1, num_classes + 1)]

    def mask(self, image_id: str) -> np.ndarray:
        return self.masks[image_id]


NAMES4 = ["background", "a", "b", "c"]


def test_hand_computed_scores_with_ignore_and_absent_class():
    gt = np.array([[0, 0, 0, 1, 1], [1, 2, 2, 255, 255]], dtype=np.uint8)
    pred = np.array([[0, 0, 1, 1, 1], [0, 2, 0, 2, 3]], dtype=np.uint8)  # last two pixels ignored
    matrix = ConfusionMatrix(4)
    matrix.update(pred, gt)
    assert matrix.counts.dtype == np.int64
    assert matrix.counts.tolist() == [[2, 1, 0, 0], [1, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    scores = matrix.scores(NAMES4)
    # T = [3, 3, 2, 0], P = [4, 3, 1, 0], TP = [2, 2, 1, 0]
    assert scores["iou"] == pytest.approx({"background": 0.4, "a": 0.5, "b": 0.5, "c": None}, nan_ok=True)
    assert scores["iou"]["c"] is None
    assert scores["miou"] == pytest.approx(1.4 / 3)
    assert scores["precision"]["background"] == pytest.approx(0.5)
    assert scores["precision"]["a"] == pytest.approx(2 / 3)
    assert scores["precision"]["b"] == pytest.approx(1.0)
    assert scores["recall"]["background"] == pytest.approx(2 / 3)
    assert scores["recall"]["b"] == pytest.approx(0.5)
    assert scores["mean_precision"] == pytest.approx(13 / 18)
    assert scores["mean_recall"] == pytest.approx(11 / 18)
    assert scores["pixel_accuracy"] == pytest.approx(5 / 8)
    assert scores["num_pixels"] == 8
    assert scores["confusion"] == matrix.counts.tolist()


def test_class_predicted_but_absent_from_ground_truth_counts_as_zero():
    matrix = ConfusionMatrix(3)
    matrix.update(np.array([0, 2, 1]), np.array([0, 0, 1]))
    scores = matrix.scores(["background", "a", "b"])
    assert scores["iou"] == {"background": 0.5, "a": 1.0, "b": 0.0}
    assert scores["miou"] == pytest.approx(0.5)
    assert scores["mean_precision"] == pytest.approx(2 / 3)  # precisions 1, 1, 0
    assert scores["mean_recall"] == pytest.approx(0.5)  # recalls 0.5, 1, 0 (b never in GT)


def test_update_rejects_bad_predictions_and_merge_adds():
    matrix = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="prediction values"):
        matrix.update(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="prediction values"):
        matrix.update(np.array([255]), np.array([1]))
    with pytest.raises(ValueError, match="shape"):
        matrix.update(np.zeros(3), np.zeros(4))
    matrix.update(np.array([255, 1, 2]), np.array([255, 1, 1]))  # prediction at an ignored pixel is fine
    other = ConfusionMatrix(3)
    other.update(np.array([255, 0]), np.array([2, 0]), prediction_ignore_index=255)
    matrix.merge(other)
    assert matrix.counts.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    assert matrix.ignored_predictions == 1
    assert matrix.scores(["bg", "a", "b"])["ignored_fraction"] == pytest.approx(1 / 4)


@pytest.mark.parametrize("seed", [0, 1])
def test_iou_matches_torchmetrics(seed):
    from torchmetrics.classification import MulticlassJaccardIndex

    rng = np.random.default_rng(seed)
    num_labels = 6
    matrix = ConfusionMatrix(num_labels)
    macro = MulticlassJaccardIndex(num_classes=num_labels, ignore_index=255, average="macro")
    per_class = MulticlassJaccardIndex(num_classes=num_labels, ignore_index=255, average=None)
    for _ in range(3):
        gt = rng.integers(0, 4, size=(17, 23)).astype(np.uint8)  # classes 4, 5 never in GT
        gt[rng.random(gt.shape) < 0.1] = 255
        pred = rng.integers(0, 5, size=gt.shape).astype(np.uint8)  # class 5 never predicted either
        matrix.update(pred, gt)
        macro.update(torch.from_numpy(pred).long(), torch.from_numpy(gt).long())
        per_class.update(torch.from_numpy(pred).long(), torch.from_numpy(gt).long())
    scores = matrix.scores([str(index) for index in range(num_labels)])
    assert scores["miou"] == pytest.approx(float(macro.compute()), abs=1e-6)
    expected = per_class.compute().numpy()
    for index in range(5):
        assert scores["iou"][str(index)] == pytest.approx(float(expected[index]), abs=1e-6)
    assert scores["iou"]["5"] is None


def test_seeds_to_labels_threshold_and_ties():
    maps = np.array([[[0.2, 0.6, 0.4]], [[0.1, 0.7, 0.4]]], dtype=np.float32)
    seeds = SeedMaps(maps=maps, keys=np.array([3, 5]))
    assert seeds_to_labels(seeds, 0.3).tolist() == [[0, 5, 3]]  # tie between classes: first key
    assert seeds_to_labels(seeds, 0.4).tolist() == [[0, 5, 0]]  # tie with the threshold: background
    assert seeds_to_labels(seeds, 0.3).dtype == np.uint8
    with_background = SeedMaps(maps=np.array([[[0.9, 0.1]], [[0.2, 0.8]]], np.float32), keys=np.array([0, 2]))
    assert seeds_to_labels(with_background, None).tolist() == [[0, 2]]
    empty = SeedMaps(maps=np.zeros((0, 1, 2), np.float32), keys=np.zeros(0, np.int64))
    assert seeds_to_labels(empty, 0.5).tolist() == [[0, 0]]


def test_threshold_sweep_hand_example():
    seeds = FakeSeeds({"x": SeedMaps(np.array([[[0.1, 0.5, 0.8, 0.3]]], np.float32), np.array([1]))})
    reader = FakeReader({"x": np.array([[0, 1, 1, 0]], np.uint8)}, num_classes=1)
    result = threshold_sweep(seeds, reader, ["x"], [0.6, 0.2, 0.4])
    curve = {point["threshold"]: point["miou"] for point in result["sweep"]}
    assert list(curve) == [0.2, 0.4, 0.6]
    assert curve[0.2] == pytest.approx(7 / 12)
    assert curve[0.4] == pytest.approx(1.0)
    assert curve[0.6] == pytest.approx(7 / 12)
    assert result["best_threshold"] == 0.4
    assert result["best"]["confusion"] == [[2, 0], [0, 2]]
    assert result["num_images"] == 1
    assert label_names(reader) == ["background", "c1"]


def test_threshold_sweep_equals_per_threshold_scoring():
    rng = np.random.default_rng(3)
    num_classes = 4
    seeds, masks = {}, {}
    for index in range(4):
        height, width = rng.integers(5, 12, size=2)
        keys = np.sort(rng.choice(np.arange(1, num_classes + 1), size=rng.integers(1, 3), replace=False))
        maps = (rng.integers(0, 21, size=(len(keys), height, width)) * 0.05).astype(np.float32)  # ties
        gt = rng.integers(0, num_classes + 1, size=(height, width)).astype(np.uint8)
        gt[rng.random(gt.shape) < 0.15] = 255
        seeds[f"i{index}"], masks[f"i{index}"] = SeedMaps(maps, keys), gt
    thresholds = [round(0.05 * step, 2) for step in range(21)]
    names = ["bg", "a", "b", "c", "d"]
    result = threshold_sweep(FakeSeeds(seeds), FakeReader(masks, num_classes), list(seeds), thresholds, names)
    for point in result["sweep"]:
        matrix = ConfusionMatrix(num_classes + 1)
        for image_id in seeds:
            matrix.update(seeds_to_labels(seeds[image_id], point["threshold"]), masks[image_id])
        direct = matrix.scores(names)
        assert point["miou"] == pytest.approx(direct["miou"])
        assert point["mean_precision"] == pytest.approx(direct["mean_precision"])
        if point["threshold"] == result["best_threshold"]:
            assert result["best"]["confusion"] == direct["confusion"]
    assert result["best"]["miou"] == max(point["miou"] for point in result["sweep"])


def test_sweep_size_mismatch_and_argmax_scoring():
    seeds = FakeSeeds({"x": SeedMaps(np.ones((1, 2, 2), np.float32), np.array([1]))})
    reader = FakeReader({"x": np.zeros((2, 3), np.uint8)}, num_classes=1)
    with pytest.raises(StoreError, match="'x'"):
        threshold_sweep(seeds, reader, ["x"], [0.5])
    with_background = FakeSeeds(
        {"x": SeedMaps(np.array([[[0.9, 0.1, 0.6]], [[0.2, 0.8, 0.5]]], np.float32), np.array([0, 1]))}
    )
    reader = FakeReader({"x": np.array([[0, 1, 1]], np.uint8)}, num_classes=1)
    result = score_seeds_by_argmax(with_background, reader, ["x"])
    assert result["best"]["confusion"] == [[1, 0], [1, 1]]
    assert result["best"]["miou"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert result["best_threshold"] is None
