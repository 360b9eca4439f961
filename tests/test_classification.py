"""Classification mAP (the training diagnostic of issue 13, item 8): the AP maths on hand-checked inputs,
every method's class_scores, and the summary's near-chance flag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from wsss_core import workflow_config as resolve
from wsss_core.evaluation.classification import average_precision, classification_report
from wsss_core.methods.base import METHODS, build_method
from wsss_core.reporting.summary import Classification, classification_flag
from wsss_core.stages.export_seeds import RandomInitCatalog

REPOSITORY = Path(__file__).resolve().parents[1]


def test_average_precision_by_hand() -> None:
    # ranking 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): precisions at the positives 1/1 and 2/3
    assert average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx(5 / 6)
    assert average_precision(np.array([0, 1, 0, 1]), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert average_precision(np.array([0, 0]), np.array([0.3, 0.1])) is None
    with pytest.raises(ValueError):
        average_precision(np.array([1, 0]), np.array([0.3, 0.1, 0.2]))


def test_report_means_over_classes_that_occur_and_states_chance() -> None:
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    perfect = labels.astype(float)
    inverted = 1.0 - perfect
    report = classification_report(labels, {"good": perfect, "bad": inverted})
    assert report["heads"]["good"]["map"] == pytest.approx(1.0)
    assert report["heads"]["good"]["ap"][2] is None  # class 2 never occurs: not in the mean
    # inverted: class 0 positives at ranks 3, 4 of 4 → (1/3 + 2/4) / 2; class 1 the same
    assert report["heads"]["bad"]["map"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert report["chance_map"] == pytest.approx(0.5)  # classes 0 and 1 occur in 2 of 4 images
    assert report["num_images"] == 4


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_scores_every_class_of_one_image(name: str) -> None:
    config = yaml.safe_load((REPOSITORY / "config.yaml").read_text())
    method = build_method(name, resolve.method_config(config, "synth", name), num_classes=5)
    torch.manual_seed(0)
    model = method.build_model(RandomInitCatalog())
    image = np.random.default_rng(0).integers(0, 255, (72, 88, 3), dtype=np.uint8)
    scores = method.class_scores(model, image)
    assert scores, name
    for head, values in scores.items():
        assert values.shape == (5,) and values.dtype == np.float32 and np.isfinite(values).all(), (name, head)
    # the scores depend on the image (a head that ignored it would rank every image alike)
    other = method.class_scores(model, np.full_like(image, 128))
    assert any(not np.allclose(scores[head], other[head]) for head in scores), name


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_declares_whether_its_seeds_carry_a_background_map(name: str) -> None:
    """``Method.seed_background`` (what the workflow checks IRN's ``background: seeds`` against) is what
    ``infer_seeds`` exports: key 0 or not."""
    config = yaml.safe_load((REPOSITORY / "config.yaml").read_text())
    method = build_method(name, resolve.method_config(config, "synth", name), num_classes=5)
    torch.manual_seed(0)
    model = method.build_model(RandomInitCatalog())
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    seeds = method.infer_seeds(model, image, np.array([0, 1, 0, 1, 0], np.float32))
    assert (0 in np.asarray(seeds.keys).tolist()) == type(method).seed_background, (name, seeds.keys)


def test_summary_flags_a_classifier_near_chance_only() -> None:
    near = Classification({"token": 0.37, "patch": 0.48}, chance=0.078)  # halfway = 0.539
    flag = classification_flag(near)
    assert list(flag) == ["near_chance_classifier"] and "token 37.0, patch 48.0" in flag["near_chance_classifier"]
    assert classification_flag(Classification({"cls": 0.60}, chance=0.078)) == {}
    assert classification_flag(None) == {}
