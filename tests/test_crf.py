"""Dense CRF from probabilities (PSA) and from labels (IRN) on tiny synthetic images."""

from __future__ import annotations

import numpy as np
import pytest

from wsss_core.errors import ConfigError
from wsss_core.refine.crf import LABEL_CRF_PARAMS, CRFParams, crf_labels, crf_probabilities


def two_regions(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Image whose left half is dark red and right half light blue, and its true labels."""
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[:, : size // 2] = (120, 20, 20)
    image[:, size // 2 :] = (60, 160, 230)
    labels = np.zeros((size, size), dtype=np.int64)
    labels[:, size // 2 :] = 1
    return image, labels


def test_defaults_are_psa_and_irn_settings():
    assert CRFParams().model_dump() == {"iterations": 10, "gaussian_sxy": 3.0, "gaussian_compat": 3.0,
                                        "bilateral_sxy": 80.0, "bilateral_srgb": 13.0, "bilateral_compat": 10.0}
    assert (LABEL_CRF_PARAMS.bilateral_sxy, LABEL_CRF_PARAMS.bilateral_srgb) == (50, 5)
    assert CRFParams.load({"iterations": 5, "bilateral_srgb": 5}, "stage.crf") == CRFParams(
        iterations=5, bilateral_srgb=5.0
    )
    with pytest.raises(ConfigError, match="unknown key 'stage.crf.sxy'"):
        CRFParams.load({"sxy": 3}, "stage.crf")
    with pytest.raises(ConfigError, match="stage.crf.iterations = 0: must be greater than 0"):
        CRFParams.load({"iterations": 0}, "stage.crf")
    with pytest.raises(ConfigError, match="stage.crf.gaussian_sxy = 'three': must be a valid number"):
        CRFParams.load({"gaussian_sxy": "three"}, "stage.crf")


def test_without_pairwise_terms_marginals_equal_the_input():
    rng = np.random.default_rng(0)
    probabilities = rng.random((3, 6, 7)).astype(np.float32) + 0.05
    probabilities /= probabilities.sum(axis=0, keepdims=True)
    image = rng.integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    no_pairwise = CRFParams(iterations=3, gaussian_compat=0, bilateral_compat=0)
    # mean-field with only the unary -log p gives back softmax(log p) = p
    np.testing.assert_allclose(crf_probabilities(image, probabilities, no_pairwise), probabilities, atol=1e-5)


def test_probability_crf_shapes_ranges_and_cleaning():
    image, truth = two_regions()
    rng = np.random.default_rng(1)
    confident = np.where(rng.random(truth.shape) < 0.2, 0.35, 0.65)  # 20% of pixels point the wrong way
    foreground = np.where(truth == 1, confident, 1 - confident)
    probabilities = np.stack([1 - foreground, foreground]).astype(np.float32)
    noisy_errors = np.mean(probabilities.argmax(0) != truth)
    refined = crf_probabilities(image, probabilities)
    assert refined.shape == (2, 32, 32) and refined.dtype == np.float32
    assert refined.min() >= 0 and refined.max() <= 1
    np.testing.assert_allclose(refined.sum(axis=0), 1.0, atol=1e-5)
    assert noisy_errors > 0.15
    assert np.mean(refined.argmax(0) != truth) == 0.0


def test_label_crf_keeps_confident_labels_and_removes_an_outlier():
    image, truth = two_regions()
    kept = crf_labels(image, truth, num_labels=2)
    assert kept.dtype == np.uint8 and kept.tolist() == truth.tolist()
    noisy = truth.copy()
    noisy[5, 5] = 1  # a single wrong pixel inside the left region
    assert crf_labels(image, noisy, num_labels=2).tolist() == truth.tolist()
    three = crf_labels(image, truth, num_labels=3)  # an unused label stays unused
    assert set(np.unique(three)) == {0, 1}


def test_bad_inputs_raise():
    image, truth = two_regions(8)
    with pytest.raises(ValueError, match="uint8"):
        crf_probabilities(image.astype(np.float32), np.full((2, 8, 8), 0.5))
    with pytest.raises(ValueError, match="size"):
        crf_probabilities(image, np.full((2, 4, 8), 0.5))
    with pytest.raises(ValueError, match="labels must be in"):
        crf_labels(image, truth + 1, num_labels=2)
    # a non-contiguous view (e.g. BGR→RGB flip) is accepted
    flipped = image[:, :, ::-1]
    assert crf_labels(flipped, truth, num_labels=2).shape == (8, 8)
