"""Augmentations on tiny arrays with hand-checked expectations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsss_core.data import transforms


class FixedRng:
    """A stand-in generator that returns scripted draws, so expectations are computed by hand."""

    def __init__(self, uniforms=(), integers=()):
        self._uniforms, self._integers = list(uniforms), list(integers)

    def uniform(self, low=0.0, high=1.0):
        return self._uniforms.pop(0)

    def integers(self, low, high=None):
        value = self._integers.pop(0)
        assert (0 if high is None else low) <= value < (low if high is None else high)
        return value


def ramp(height: int, width: int) -> np.ndarray:
    return np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3)


def test_random_crop_larger_image_takes_a_window() -> None:
    image = ramp(4, 5)
    mask = np.arange(20, dtype=np.uint8).reshape(4, 5)
    crop, mask_crop, box = transforms.random_crop(image, 3, FixedRng(integers=[1, 2]), mask=mask)
    assert np.array_equal(crop, image[1:4, 2:5])
    assert np.array_equal(mask_crop, [[7, 8, 9], [12, 13, 14], [17, 18, 19]])
    assert box == (0, 3, 0, 3)


def test_random_crop_smaller_image_is_padded_with_fills() -> None:
    image = np.full((2, 3, 3), 9, dtype=np.uint8)
    mask = np.ones((2, 3), dtype=np.uint8)
    # height 2 < 4: placed at crop row 1; width 3 < 4: placed at crop column 0
    crop, mask_crop, box = transforms.random_crop(image, 4, FixedRng(integers=[1, 0]), mask=mask)
    assert box == (1, 3, 0, 3)
    expected_mask = np.full((4, 4), 255, dtype=np.uint8)
    expected_mask[1:3, 0:3] = 1
    assert np.array_equal(mask_crop, expected_mask)
    assert crop[0].sum() == 0 and crop[3].sum() == 0 and crop[:, 3].sum() == 0
    assert (crop[1:3, 0:3] == 9).all()


def test_random_crop_is_reproducible_with_a_real_generator() -> None:
    image = ramp(10, 12)
    first = transforms.random_crop(image, 5, np.random.default_rng(4))
    second = transforms.random_crop(image, 5, np.random.default_rng(4))
    assert np.array_equal(first[0], second[0]) and first[2] == second[2]


def test_horizontal_flip_flips_image_and_mask_together() -> None:
    image = ramp(2, 3)
    mask = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    flipped, flipped_mask = transforms.horizontal_flip(image, FixedRng(uniforms=[0.2]), mask=mask)
    assert np.array_equal(flipped_mask, [[3, 2, 1], [6, 5, 4]])
    assert np.array_equal(flipped[0, 0], image[0, 2])
    kept, kept_mask = transforms.horizontal_flip(image, FixedRng(uniforms=[0.7]), mask=mask)
    assert kept is image and kept_mask is mask


def test_random_rescale_and_long_side_resize_sizes() -> None:
    image = np.zeros((10, 20, 3), dtype=np.uint8)
    mask = np.zeros((10, 20), dtype=np.uint8)
    scaled, scaled_mask = transforms.random_rescale(image, (0.5, 1.5), FixedRng(uniforms=[0.5]), mask=mask)
    assert scaled.shape == (5, 10, 3) and scaled_mask.shape == (5, 10)
    resized, _ = transforms.random_long_side_resize(image, (30, 40), FixedRng(integers=[30]))
    assert resized.shape == (15, 30, 3)


def test_mask_resize_is_nearest() -> None:
    mask = np.array([[0, 255], [3, 7]], dtype=np.uint8)
    _, enlarged = transforms.resize(np.zeros((2, 2, 3), np.uint8), (4, 4), mask)
    assert set(np.unique(enlarged)) == {0, 3, 7, 255}
    assert np.array_equal(enlarged[:2, :2], np.zeros((2, 2)))


def test_normalize_to_tensor_values_by_hand() -> None:
    image = np.zeros((1, 2, 3), dtype=np.uint8)
    image[0, 1] = (255, 255, 255)
    tensor = transforms.normalize_to_tensor(image)
    assert tensor.shape == (3, 1, 2) and tensor.dtype == torch.float32
    assert torch.allclose(tensor[:, 0, 0], torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]))
    assert torch.allclose(tensor[:, 0, 1], torch.tensor([0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225]))


def test_random_resized_crop_box_first_attempt_by_hand() -> None:
    # area 100, scale draw 0.36 → 36 px, log-ratio draw 0 → aspect 1 → 6x6 crop at (2, 3)
    rng = FixedRng(uniforms=[0.36, 0.0], integers=[2, 3])
    assert transforms.random_resized_crop_box(10, 10, (0.08, 1.0), (0.75, 4 / 3), rng) == (2, 3, 6, 6)


def test_random_resized_crop_falls_back_to_centre_crop() -> None:
    # scale 1.2 of a 4x12 image never fits: centre crop at the largest allowed ratio 4/3 → 4 x 5
    rng = FixedRng(uniforms=[1.2, 0.0] * 10)
    assert transforms.random_resized_crop_box(4, 12, (1.2, 1.2), (0.75, 4 / 3), rng) == (0, 3, 4, 5)
    out, out_mask = transforms.random_resized_crop(ramp(4, 12), 8, np.random.default_rng(0), scale=(0.3, 1.2),
                                                   mask=np.zeros((4, 12), np.uint8))
    assert out.shape == (8, 8, 3) and out_mask.shape == (8, 8)


def test_colour_adjustments_by_hand() -> None:
    pixel = np.array([[[100, 50, 200]]], dtype=np.uint8)
    assert np.array_equal(transforms.adjust_brightness(pixel, 1.5), [[[150, 75, 255]]])  # clipped
    grey = 0.299 * 100 + 0.587 * 50 + 0.114 * 200  # 81.05
    assert np.array_equal(transforms.adjust_saturation(pixel, 0.0), np.full((1, 1, 3), int(grey)))
    two = np.array([[[0, 0, 0], [200, 200, 200]]], dtype=np.uint8)  # mean grey 100
    assert np.array_equal(transforms.adjust_contrast(two, 0.5), [[[50, 50, 50], [150, 150, 150]]])
    red = np.array([[[255, 0, 0]]], dtype=np.uint8)
    shifted = transforms.adjust_hue(red, 1 / 3)  # red rotated a third of a turn is green
    assert shifted[0, 0, 1] > 240 and shifted[0, 0, 0] < 15 and shifted[0, 0, 2] < 15


def test_color_jitter_zero_strength_is_identity_and_draws_in_range() -> None:
    image = ramp(3, 3)
    assert np.array_equal(transforms.color_jitter(image, np.random.default_rng(0), 0, 0, 0, 0), image)
    flat = np.full((2, 2, 3), 100, dtype=np.uint8)
    jittered = transforms.color_jitter(flat, FixedRng(uniforms=[1.2]), brightness=0.4, contrast=0, saturation=0)
    assert (jittered == 120).all()
    with pytest.raises(IndexError):  # a brightness factor is drawn only when asked for
        transforms.color_jitter(flat, FixedRng(uniforms=[]), brightness=0.4, contrast=0, saturation=0)
