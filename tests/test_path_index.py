"""Pair directions, straight paths and bounds of wsss_core.refine.path_index, against hand-made lists."""

from __future__ import annotations

import pytest
import torch

from wsss_core.refine.path_index import PathIndex, pair_directions, pair_values, shifted, straight_path


def test_radius_two_directions_are_right_and_the_row_below() -> None:
    assert pair_directions(2) == ((0, 1), (1, -1), (1, 0), (1, 1))


def test_radius_five_directions_in_irn_order() -> None:
    directions = pair_directions(5)
    # (0, 1..4), then y = 1, 2 with |x| <= 4, y = 3 with |x| <= 3, y = 4 with |x| <= 2: 4 + 9 + 9 + 7 + 5
    assert len(directions) == 34
    assert directions[:6] == ((0, 1), (0, 2), (0, 3), (0, 4), (1, -4), (1, -3))
    assert directions[-5:] == ((4, -2), (4, -1), (4, 0), (4, 1), (4, 2))
    assert (3, 4) not in directions and (3, 3) in directions  # 9 + 16 = 25 is not < 25


def test_radius_ten_direction_count() -> None:
    # rows y = 0..9 hold 9, 19, 19, 19, 19, 17, 15, 15, 11, 9 offsets (x² < 100 − y², x > 0 on row 0)
    assert len(PathIndex(10)) == 152
    assert PathIndex(10).reach == 9


def test_each_unordered_pair_once() -> None:
    directions = set(pair_directions(5))
    assert not any((-dy, -dx) in directions for dy, dx in directions)


@pytest.mark.parametrize(
    "direction, expected",
    [
        ((0, 3), {(0, 0), (0, 1), (0, 2), (0, 3)}),
        ((1, 1), {(0, 0), (0, 1), (1, 0), (1, 1)}),
        # (2x − 3y)² < 13 inside the box [0, 2] × [0, 3]
        ((2, 3), {(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3), (2, 2), (2, 3)}),
        ((2, -3), {(0, 0), (0, -1), (1, 0), (1, -1), (1, -2), (1, -3), (2, -2), (2, -3)}),
    ],
)
def test_straight_paths(direction, expected) -> None:
    path = straight_path(direction)
    assert set(path) == expected
    assert len(path) == len(expected)


def test_in_bounds_masks_pairs_leaving_the_grid() -> None:
    mask = PathIndex(2).in_bounds(3, 4)  # directions (0,1), (1,-1), (1,0), (1,1)
    assert mask.shape == (4, 3, 4)
    assert mask[0].tolist() == [[True, True, True, False]] * 3
    assert mask[1].tolist() == [[False, True, True, True]] * 2 + [[False] * 4]
    assert mask[2].tolist() == [[True] * 4] * 2 + [[False] * 4]
    assert mask[3].tolist() == [[True, True, True, False]] * 2 + [[False] * 4]


def test_irn_source_region() -> None:
    mask = PathIndex(3).irn_source_mask(5, 6)  # reach 2: rows [0, 3), columns [2, 4)
    expected = torch.zeros(5, 6, dtype=torch.bool)
    expected[:3, 2:4] = True
    assert torch.equal(mask, expected)


def test_shifted_and_pair_values() -> None:
    grid = torch.arange(6.0).view(2, 3)
    assert shifted(grid, 0, 1, fill=-1).tolist() == [[1, 2, -1], [4, 5, -1]]
    assert shifted(grid, 1, -1, fill=-1).tolist() == [[-1, 3, 4], [-1, -1, -1]]
    values = pair_values(grid, PathIndex(2), fill=-1)
    assert values.shape == (4, 2, 3)
    assert values[2].tolist() == [[3, 4, 5], [-1, -1, -1]]


def test_radius_must_exceed_one() -> None:
    with pytest.raises(ValueError, match="radius"):
        pair_directions(1)
