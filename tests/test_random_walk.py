"""The sparse random walk against hand-computed walks, the dense reference and its invariants."""

from __future__ import annotations

import pytest
import torch

from wsss_core.refine.affinity import affinity_from_boundary
from wsss_core.refine.path_index import PathIndex
from wsss_core.refine.random_walk import (
    dense_affinity,
    dense_random_walk,
    dense_transition,
    random_walk,
    transition_matrix_sparse,
)

RADIUS_TWO = PathIndex(2)  # directions (0,1), (1,-1), (1,0), (1,1)


def _row_affinity(values: list[float]) -> torch.Tensor:
    """Affinity ``[4, 1, n]`` of a one-row grid: ``values[i]`` between pixel i and i + 1."""
    affinity = torch.zeros(4, 1, len(values) + 1)
    affinity[0, 0, :-1] = torch.tensor(values)
    return affinity


def test_two_pixel_walk_by_hand() -> None:
    # A^1 = [[1, .5], [.5, 1]], columns sum to 1.5: T = [[2/3, 1/3], [1/3, 2/3]]
    # x = [1, 0]: x·T = [2/3, 1/3], x·T² = [5/9, 4/9]
    affinity = _row_affinity([0.5])
    scores = torch.tensor([[[1.0, 0.0]]])
    walked = random_walk(scores, affinity, RADIUS_TWO, beta=1, exp_times=1)
    assert walked[0, 0].tolist() == pytest.approx([5 / 9, 4 / 9])
    # β = 2: A^2 = [[1, .25], [.25, 1]], T = [[.8, .2], [.2, .8]]: x·T = [.8, .2]
    walked = random_walk(scores, affinity, RADIUS_TWO, beta=2, exp_times=0)
    assert walked[0, 0].tolist() == pytest.approx([0.8, 0.2])


def test_walk_stays_inside_connected_components() -> None:
    # pixels 0-1 and 2-3 linked (affinity 1), 1-2 cut (affinity 0): each pair averages in one step
    affinity = _row_affinity([1.0, 0.0, 1.0])
    scores = torch.tensor([[[1.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 1.0]]])
    walked = random_walk(scores, affinity, RADIUS_TWO, beta=10, exp_times=4)
    assert walked[0, 0].tolist() == pytest.approx([0.5, 0.5, 0.0, 0.0])
    assert walked[1, 0].tolist() == pytest.approx([0.0, 0.0, 0.5, 0.5])


def test_transition_columns_sum_to_one_so_mass_is_conserved() -> None:
    generator = torch.Generator().manual_seed(0)
    affinity = torch.rand(len(PathIndex(3)), 5, 6, generator=generator)
    transition = dense_transition(affinity, PathIndex(3), beta=3, exp_times=0)
    assert transition.sum(dim=0) == pytest.approx(torch.ones(30))
    mass = torch.rand(30, generator=generator)
    assert (transition @ mass).sum().item() == pytest.approx(mass.sum().item(), rel=1e-5)
    # the sparse operator is the transpose: row-stochastic
    sparse = transition_matrix_sparse(affinity, PathIndex(3), beta=3).to_dense()
    assert torch.allclose(sparse, transition.t(), atol=1e-6)


def test_dense_affinity_is_symmetric_with_unit_diagonal() -> None:
    affinity = torch.rand(len(RADIUS_TWO), 3, 4, generator=torch.Generator().manual_seed(1))
    dense = dense_affinity(affinity, RADIUS_TWO)
    assert torch.equal(dense, dense.t())
    assert torch.equal(dense.diagonal(), torch.ones(12))
    assert dense[0, 1].item() == affinity[0, 0, 0].item()  # (0,0)–(0,1), direction (0, 1)
    assert dense[1, 4].item() == affinity[1, 0, 1].item()  # (0,1)–(1,0), direction (1, −1)
    assert dense[3, 4].item() == 0.0  # (0,3) and (1,0) are not neighbours


def test_constant_scores_stay_constant() -> None:
    affinity = torch.rand(len(PathIndex(3)), 6, 7, generator=torch.Generator().manual_seed(2))
    scores = torch.full((2, 6, 7), 0.3)
    walked = random_walk(scores, affinity, PathIndex(3), beta=4, exp_times=5)
    assert torch.allclose(walked, scores, atol=1e-5)


def test_sparse_walk_equals_the_dense_reference() -> None:
    generator = torch.Generator().manual_seed(3)
    path_index = PathIndex(3)
    affinity = torch.rand(len(path_index), 7, 9, generator=generator)
    scores = torch.rand(3, 7, 9, generator=generator)
    sparse = random_walk(scores, affinity, path_index, beta=2, exp_times=4)
    dense = dense_random_walk(scores, affinity, path_index, beta=2, exp_times=4)
    assert torch.allclose(sparse, dense, atol=1e-5)
    stepped = dense_random_walk(scores, affinity, path_index, beta=2, exp_times=4, by_squaring=False)
    assert torch.allclose(stepped, dense, atol=1e-5)


def test_boundary_walk_gives_the_obvious_labelling() -> None:
    # a wall at column 4 splits a 6×9 grid; one seed pixel per side spreads over its side only
    boundary = torch.zeros(1, 6, 9)
    boundary[0, :, 4] = 1.0
    path_index = PathIndex(5)
    affinity = affinity_from_boundary(boundary, path_index)[0]
    scores = torch.zeros(2, 6, 9)
    scores[0, 2, 1] = 1.0
    scores[1, 3, 7] = 1.0
    walked = random_walk(scores, affinity, path_index, beta=10, exp_times=8)
    labels = walked.argmax(dim=0)
    assert (labels[:, :4] == 0).all() and (labels[:, 5:] == 1).all()
    assert walked[1, :, :4].abs().max().item() < 1e-6 and walked[0, :, 5:].abs().max().item() < 1e-6
    # each side converges to one value (a degree-weighted mean of its seeds)
    assert walked[0, :, :4].max() - walked[0, :, :4].min() < 1e-3
