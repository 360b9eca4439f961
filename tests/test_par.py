"""PAR against a direct, slow per-pixel evaluation of its kernel, and its invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wsss_core.single_stage.par import PixelAdaptiveRefinement, neighbour_distances

OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def slow_par(image: np.ndarray, scores: np.ndarray, dilations: list[int], iterations: int,
             w1: float = 0.3, w2: float = 0.01) -> np.ndarray:
    """PAR written pixel by pixel from the paper/code description (float64, clamped borders)."""
    channels, height, width = image.shape

    def neighbours(y: int, x: int) -> list[tuple[int, int]]:
        return [
            (min(max(y + dy * d, 0), height - 1), min(max(x + dx * d, 0), width - 1))
            for d in dilations for dy, dx in OFFSETS
        ]

    distances = np.array([d * math.hypot(dy, dx) for d in dilations for dy, dx in OFFSETS])
    position = -((distances / distances.std(ddof=1) / w1) ** 2)
    position = np.exp(position - position.max())
    position /= position.sum()
    kernel = np.zeros((height, width, len(distances)))
    for y in range(height):
        for x in range(width):
            points = neighbours(y, x)
            colour = np.zeros(len(points))
            for c in range(channels):
                values = np.array([image[c, py, px] for py, px in points])
                colour += -((np.abs(values - image[c, y, x]) / (values.std(ddof=1) + 1e-8) / w1) ** 2)
            colour /= channels
            colour = np.exp(colour - colour.max())
            kernel[y, x] = colour / colour.sum() + w2 * position
    current = scores.astype(np.float64)
    for _ in range(iterations):
        updated = np.zeros_like(current)
        for y in range(height):
            for x in range(width):
                for weight, (py, px) in zip(kernel[y, x], neighbours(y, x)):
                    updated[:, y, x] += weight * current[:, py, px]
        current = updated
    return current


def test_par_matches_slow_kernel_evaluation() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((3, 6, 7))
    scores = rng.random((2, 6, 7))
    dilations = [1, 2, 3]
    par = PixelAdaptiveRefinement(dilations=dilations, num_iterations=3)
    refined = par(torch.tensor(image[None], dtype=torch.float64), torch.tensor(scores[None], dtype=torch.float64))
    expected = slow_par(image, scores, dilations, iterations=3)
    np.testing.assert_allclose(refined[0].numpy(), expected, rtol=1e-6, atol=1e-9)


def test_kernel_weights_sum_to_one_plus_position_weight() -> None:
    image = torch.rand(1, 3, 9, 8)
    weights = PixelAdaptiveRefinement(num_iterations=1).kernel(image)
    assert weights.shape == (1, 1, 48, 9, 8)
    torch.testing.assert_close(weights.sum(dim=2), torch.full((1, 1, 9, 8), 1.01))


def test_default_neighbourhood_distances() -> None:
    distances = neighbour_distances((1, 2, 4, 8, 12, 24))
    assert distances.shape == (48,)
    assert distances[:8].tolist() == pytest.approx([math.sqrt(2), 1, math.sqrt(2), 1, 1, math.sqrt(2), 1, math.sqrt(2)])
    assert distances[-8:].max().item() == pytest.approx(24 * math.sqrt(2))


def test_constant_scores_grow_by_kernel_mass_per_iteration() -> None:
    image = torch.rand(1, 3, 5, 5)
    scores = torch.full((1, 2, 5, 5), 0.5)
    refined = PixelAdaptiveRefinement(dilations=(1, 2), num_iterations=4)(image, scores)
    torch.testing.assert_close(refined, torch.full_like(refined, 0.5 * 1.01**4))


def test_scores_are_resized_to_the_image_with_aligned_corners() -> None:
    scores = torch.tensor([[[[0.0, 1.0]]]])  # 1×2 → 1×3 with align_corners=True: 0, 0.5, 1
    refined = PixelAdaptiveRefinement(dilations=(1,), num_iterations=0)(torch.rand(1, 3, 1, 3), scores)
    torch.testing.assert_close(refined, torch.tensor([[[[0.0, 0.5, 1.0]]]]))


def test_channels_propagate_independently() -> None:
    """Stacking score channels gives the same result as refining them apart (one kernel per image)."""
    image, first, second = torch.rand(1, 3, 7, 7), torch.rand(1, 2, 7, 7), torch.rand(1, 3, 7, 7)
    par = PixelAdaptiveRefinement(dilations=(1, 2), num_iterations=3)
    together = par(image, torch.cat([first, second], dim=1))
    torch.testing.assert_close(together, torch.cat([par(image, first), par(image, second)], dim=1))
