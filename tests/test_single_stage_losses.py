"""Balanced segmentation loss (empty cases included), patch-token affinity loss and class-token contrast,
each on inputs small enough to work out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from wsss_core.losses.single_stage import (
    absolute_cosine_similarity,
    affinity_loss,
    balanced_segmentation_loss,
    class_token_contrast_loss,
)


def cross_entropy(logits: list[float], target: int) -> float:
    return -(logits[target] - math.log(sum(math.exp(v) for v in logits)))


# 3 labels, 1×4 image; pixel logits (as [label][pixel])
LOGITS = torch.tensor([[[[2.0, 0.0, 1.0, 0.5]], [[0.0, 1.0, 0.0, 0.5]], [[0.0, 3.0, 2.0, 0.5]]]])
PIXELS = [[2.0, 0.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [0.5, 0.5, 0.5]]


def test_balanced_loss_halves_background_and_foreground_means() -> None:
    target = torch.tensor([[[0, 2, 1, 255]]])
    background = cross_entropy(PIXELS[0], 0)
    foreground = (cross_entropy(PIXELS[1], 2) + cross_entropy(PIXELS[2], 1)) / 2
    assert balanced_segmentation_loss(LOGITS, target).item() == pytest.approx(0.5 * background + 0.5 * foreground)


def test_balanced_loss_without_foreground_keeps_only_the_background_half() -> None:
    target = torch.tensor([[[0, 0, 255, 255]]])
    expected = 0.5 * (cross_entropy(PIXELS[0], 0) + cross_entropy(PIXELS[1], 0)) / 2
    loss = balanced_segmentation_loss(LOGITS, target)
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(expected)


def test_balanced_loss_without_background_keeps_only_the_foreground_half() -> None:
    target = torch.tensor([[[255, 2, 255, 1]]])
    expected = 0.5 * (cross_entropy(PIXELS[1], 2) + cross_entropy(PIXELS[3], 1)) / 2
    assert balanced_segmentation_loss(LOGITS, target).item() == pytest.approx(expected)


def test_balanced_loss_all_ignored_is_zero_and_differentiable() -> None:
    logits = LOGITS.clone().requires_grad_(True)
    loss = balanced_segmentation_loss(logits, torch.full((1, 1, 4), 255))
    loss.backward()
    assert loss.item() == 0.0
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_absolute_cosine_similarity() -> None:
    tokens = torch.tensor([[[[1.0, 0.0, -2.0]], [[0.0, 3.0, 0.0]]]])  # t0=(1,0), t1=(0,3), t2=(-2,0)
    expected = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]])
    torch.testing.assert_close(absolute_cosine_similarity(tokens), expected)


def test_affinity_loss_by_hand() -> None:
    tokens = torch.tensor([[[[1.0, 0.0, -2.0]], [[0.0, 3.0, 0.0]]]])
    # token labels 0, 0, 1 → positive pair (0,1); negatives (0,2), (1,2); diagonal ignored
    pairs = torch.tensor([[[255, 1, 0], [1, 255, 0], [0, 0, 255]]])
    # positives: |cos(t0,t1)| = 0 twice → ½(1 − 0/(2+1)); negatives: 1, 0, 1, 0 → ½·2/(4+1)
    assert affinity_loss(tokens, pairs).item() == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 5)


def test_affinity_loss_sums_over_the_batch() -> None:
    first = torch.tensor([[[[1.0, 1.0]]]])  # |cos| = 1
    second = torch.tensor([[[[1.0, 1.0]]]])
    tokens = torch.cat([first, second])
    pairs = torch.tensor([[[255, 1], [1, 255]], [[255, 0], [0, 255]]])
    # positives: 2 pairs with |cos| 1 → ½(1 − 2/3); negatives: 2 pairs with 1 → ½·2/3
    assert affinity_loss(tokens, pairs).item() == pytest.approx(0.5 * (1 - 2 / 3) + 0.5 * 2 / 3)


def test_contrast_loss_by_hand() -> None:
    teacher = torch.tensor([[[1.0], [0.0]]])  # 2 global teacher outputs, 1-d
    student = torch.tensor([[[1.0], [2.0], [0.0]]])  # 2 positives, 1 negative
    positive = torch.tensor([[True, True, False]])
    eps = 1e-4
    # teacher a=1: ℓ = e, e², 1 (negative) ; a=2: ℓ = 1, 1, 1
    first = -math.log(math.e / (math.e + 1 + eps)) - math.log(math.e**2 / (math.e**2 + 1 + eps))
    second = -2 * math.log(1 / (1 + 1 + eps))
    negative_terms = 2 * math.log(1 + 1 + eps)
    expected = (first + second + negative_terms) / 2 / (2 + eps)
    assert class_token_contrast_loss(student, teacher, positive, 1.0).item() == pytest.approx(expected)
    without = (first + second) / 2 / (2 + eps)
    loss = class_token_contrast_loss(student, teacher, positive, 1.0, negative_term=False)
    assert loss.item() == pytest.approx(without)


def test_contrast_loss_temperature_and_batch_mean() -> None:
    teacher = torch.tensor([[[1.0], [1.0]]])
    student = torch.tensor([[[1.0], [1.0]]])
    eps = 1e-4
    # τ = 0.5: ℓ = e² for both pairs, no negatives: each teacher −log(e²/(e²+eps)) + log(1+eps)
    one = 2 * (-math.log(math.e**2 / (math.e**2 + eps)) + math.log(1 + eps)) / 2 / (2 + eps)
    # second image: all students negative → only the repulsion term, divided by eps
    negatives = 2 * math.log(1 + 2 * math.e**2 + eps) / 2 / eps
    loss = class_token_contrast_loss(
        torch.cat([student, student]), torch.cat([teacher, teacher]), torch.tensor([[True, True], [False, False]]), 0.5
    )
    assert loss.item() == pytest.approx((one + negatives) / 2)
