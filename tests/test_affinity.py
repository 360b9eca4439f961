"""Affinities, pair labels and the IRN/PSA loss terms on hand-built grids (expected values by hand)."""

from __future__ import annotations

import math

import pytest
import torch

from wsss_core.losses.affinity import affinity_loss_terms, displacement_loss_terms, irn_loss, masked_mean, psa_loss
from wsss_core.refine.affinity import PairLabels, affinity_from_boundary, affinity_from_features, pair_labels
from wsss_core.refine.path_index import PathIndex

RADIUS_TWO = PathIndex(2)  # directions (0,1), (1,-1), (1,0), (1,1)


def test_affinity_from_boundary_is_one_minus_the_path_maximum() -> None:
    boundary = torch.full((1, 2, 3), 0.1)
    boundary[0, :, 1] = 0.9  # a vertical wall in the middle column
    affinity = affinity_from_boundary(boundary, RADIUS_TWO)[0]
    right, down_left, down, down_right = affinity
    # (0,0)→(0,1) crosses the wall; (0,1)→(0,2) starts on it; (0,2)→ leaves the grid
    assert right[0].tolist() == pytest.approx([0.1, 0.1, 0.0])
    # straight down: stays in its column (wall column 0.1 apart from the wall itself)
    assert down[0].tolist() == pytest.approx([0.9, 0.1, 0.9])
    assert down[1].tolist() == [0.0, 0.0, 0.0]
    # diagonals: the 2×2 box always holds a wall pixel
    assert down_right[0].tolist() == pytest.approx([0.1, 0.1, 0.0])
    assert down_left[0].tolist() == pytest.approx([0.0, 0.1, 0.1])


def test_affinity_from_boundary_uses_the_whole_path() -> None:
    boundary = torch.zeros(1, 3, 4)
    boundary[0, 1, 2] = 0.6  # on the path of (0,0)→(2,3): (2x − 3y)² < 13 holds for (1, 2)
    affinity = affinity_from_boundary(boundary, PathIndex(4))[0]
    index = PathIndex(4).directions.index((2, 3))
    assert affinity[index, 0, 0].item() == pytest.approx(0.4)
    boundary[0, 1, 2] = 0.0
    boundary[0, 0, 2] = 0.6  # (0, 2) is off that path: (0 − 6)² = 36
    affinity = affinity_from_boundary(boundary, PathIndex(4))[0]
    assert affinity[index, 0, 0].item() == pytest.approx(1.0)


def test_affinity_from_features() -> None:
    features = torch.zeros(1, 2, 1, 2)
    features[0, :, 0, 1] = torch.tensor([1.0, 3.0])
    affinity = affinity_from_features(features, RADIUS_TWO)[0]
    assert affinity[0, 0, 0].item() == pytest.approx(math.exp(-2.0))  # mean(|0−1|, |0−3|) = 2
    assert affinity[0, 0, 1].item() == 0.0  # leaves the grid
    assert affinity[1:].abs().sum().item() == 0.0  # one row: nothing below


def test_pair_labels_masks() -> None:
    labels = torch.tensor([[[0, 0, 1], [255, 1, 1]]])
    pairs = pair_labels(labels, RADIUS_TWO)
    right, down_left, down, down_right = range(4)
    assert pairs.bg_pos[0, right].tolist() == [[True, False, False], [False, False, False]]
    assert pairs.neg[0, right].tolist() == [[False, True, False], [False, False, False]]
    assert pairs.fg_pos[0, right].tolist() == [[False, False, False], [False, True, False]]
    # down: (0,0)→255 invalid, (0,1) 0→1 negative, (0,2) 1→1 positive
    assert pairs.neg[0, down, 0].tolist() == [False, True, False]
    assert pairs.fg_pos[0, down, 0].tolist() == [False, False, True]
    # down-left: (0,0) leaves the grid, (0,1)=0 → 255 invalid, (0,2)=1 → (1,1)=1 positive
    assert pairs.bg_pos[0, down_left, 0].tolist() == [False, False, False]
    assert pairs.neg[0, down_left, 0].tolist() == [False, False, False]
    assert pairs.fg_pos[0, down_left, 0].tolist() == [False, False, True]
    assert pairs.neg[0, down_right, 0].tolist() == [True, True, False]  # 0 → (1,1)=1, 0 → (1,2)=1, leaves
    # no pair ever starts or ends at 255, and the three masks are disjoint
    total = pairs.bg_pos.int() + pairs.fg_pos.int() + pairs.neg.int()
    assert total.max().item() == 1
    assert not (pairs.bg_pos | pairs.fg_pos | pairs.neg)[0, :, 1, 0].any()


def test_pair_labels_source_mask() -> None:
    labels = torch.zeros(1, 2, 3, dtype=torch.long)
    source = torch.zeros(2, 3, dtype=torch.bool)
    source[0, 1] = True
    pairs = pair_labels(labels, RADIUS_TWO, source_mask=source)
    assert pairs.bg_pos.sum().item() == 4  # the four directions of (0, 1), all in bounds


def test_masked_mean_and_the_empty_mask() -> None:
    values = torch.tensor([1.0, 2.0, 6.0])
    assert masked_mean(values, torch.tensor([True, False, True])).item() == pytest.approx(7 / (2 + 1e-5))
    assert masked_mean(values, torch.zeros(3, dtype=torch.bool)).item() == 0.0


def _three_pairs() -> tuple[torch.Tensor, PairLabels]:
    affinity = torch.tensor([0.5, 0.25, 0.9, 0.8]).view(1, 1, 1, 4)
    bg = torch.tensor([True, False, False, False]).view(1, 1, 1, 4)
    fg = torch.tensor([False, True, False, True]).view(1, 1, 1, 4)
    neg = torch.tensor([False, False, True, False]).view(1, 1, 1, 4)
    return affinity, PairLabels(bg_pos=bg, fg_pos=fg, neg=neg)


def test_affinity_loss_terms() -> None:
    affinity, labels = _three_pairs()
    terms = affinity_loss_terms(affinity, labels)
    assert terms["bg_pos"].item() == pytest.approx(-math.log(0.5 + 1e-5) / (1 + 1e-5), rel=1e-5)
    fg = (-math.log(0.25 + 1e-5) - math.log(0.8 + 1e-5)) / (2 + 1e-5)
    assert terms["fg_pos"].item() == pytest.approx(fg, rel=1e-5)
    assert terms["neg"].item() == pytest.approx(-math.log(1 + 1e-5 - 0.9) / (1 + 1e-5), rel=1e-5)


def test_psa_loss_weights() -> None:
    affinity, labels = _three_pairs()
    bg = -math.log(0.5 + 1e-5)
    fg = (-math.log(0.25 + 1e-5) - math.log(0.8 + 1e-5)) / 2
    neg = -math.log(1 + 1e-5 - 0.9)
    assert psa_loss(affinity, labels)["loss"].item() == pytest.approx(bg / 4 + fg / 4 + neg / 2, rel=1e-4)


def test_displacement_terms() -> None:
    # one row of two pixels; only direction (0, 1) stays in the grid (radius 2)
    displacement = torch.zeros(1, 2, 1, 2)
    displacement[0, 1, 0, 1] = -1.0  # δ(0,0) = (0, 0), δ(0,1) = (0, −1): pair displacement (0, 1)
    on_pair = torch.zeros(1, 4, 1, 2, dtype=torch.bool)
    on_pair[0, 0, 0, 0] = True
    nothing = torch.zeros_like(on_pair)
    as_foreground = displacement_loss_terms(displacement, PairLabels(nothing, on_pair, nothing), RADIUS_TWO)
    assert as_foreground["dp_fg"].item() == pytest.approx(0.0)  # equals the offset (0, 1)
    assert as_foreground["dp_bg"].item() == 0.0
    as_background = displacement_loss_terms(displacement, PairLabels(on_pair, nothing, nothing), RADIUS_TWO)
    assert as_background["dp_bg"].item() == pytest.approx(1 / (2 + 1e-5))  # |0| + |1| over 2 components


def test_irn_total() -> None:
    affinity = torch.tensor([0.5, 0.25, 0.9]).view(1, 1, 1, 3).repeat(1, 4, 1, 1)
    masks = [torch.zeros(1, 4, 1, 3, dtype=torch.bool) for _ in range(3)]
    for mask, column in zip(masks, range(3)):
        mask[0, 0, 0, column] = True
    displacement = torch.zeros(1, 2, 1, 3)
    displacement[0, 1, 0, 1] = 2.0  # δ(0,1) − δ(0,2) = (0, 2): |0 − 0| + |2 − 1| = 1 for the fg pair (0,1)→(0,2)
    terms = irn_loss(affinity, displacement, PairLabels(*masks), RADIUS_TWO)
    bg, fg, neg = -math.log(0.5 + 1e-5), -math.log(0.25 + 1e-5), -math.log(1e-5 + 0.1)
    # bg pair (0,0)→(0,1): δ(0,0) − δ(0,1) = (0, −2) → |0| + |−2| = 2, over 2 components → 1
    dp_fg, dp_bg = 1 / 2, 2 / 2
    expected = (bg / 2 + fg / 2 + neg) / 2 + (dp_fg + dp_bg) / 2
    assert terms["dp_fg"].item() == pytest.approx(dp_fg, rel=1e-4)
    assert terms["dp_bg"].item() == pytest.approx(dp_bg, rel=1e-4)
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-4)
