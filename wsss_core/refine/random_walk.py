"""Random-walk propagation of class scores over a local affinity graph (IRN and PSA).

The maths both authors use: with ``A`` the symmetric pixel affinity (1 on the diagonal, local pairs
within a radius, 0 elsewhere), ``T = A^∘β`` normalised so that every *column* sums to 1, and scores
``x`` as row vectors ``[K, N]``, the walk is ``x · T^t`` with ``t = 2^exp_times``.

The authors build ``T`` as a dense ``N × N`` matrix and square it ``exp_times`` times. At IRN's stride 4
a 640×480 image has ``N = 19 200`` nodes: one dense matrix is 1.4 GiB and each squaring costs
``N³ ≈ 7·10¹² `` multiply-adds. Here ``T`` is kept sparse (``N × (2D + 1)`` non-zeros for ``D`` pair
directions) and applied ``t`` times to the ``K`` score rows instead: ``x · T`` equals ``M · xᵀ`` with
``M = Tᵀ`` the *row*-normalised ``A^∘β`` (``A`` is symmetric), a sparse product of cost ``K · nnz``.
The result is the same up to float rounding (:func:`dense_random_walk` is the reference kept for the
tests and :mod:`wsss_core.benchmarks.random_walk`).

Properties the tests pin: ``T``'s columns sum to 1 (so ``T · v`` conserves the total mass of ``v``);
``x · T`` is a weighted average, so constant scores stay constant and, with many steps, scores become
constant on each connected component of the affinity graph.
"""

from __future__ import annotations

import warnings

import torch

from wsss_core.refine.path_index import PathIndex


def _pair_indices(path_index: PathIndex, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat source indices, flat destination indices and the positions (into ``[D, H, W]``) of every
    in-bounds pair."""
    valid = path_index.in_bounds(height, width, device)
    direction, ys, xs = valid.nonzero(as_tuple=True)
    offsets = torch.tensor(path_index.directions, device=device)
    source = ys * width + xs
    destination = (ys + offsets[direction, 0]) * width + xs + offsets[direction, 1]
    position = (direction * height + ys) * width + xs
    return source, destination, position


def transition_matrix_sparse(affinity: torch.Tensor, path_index: PathIndex, beta: float) -> torch.Tensor:
    """``M = Tᵀ`` as a sparse CSR ``[N, N]`` matrix from a pair affinity ``[D, H, W]``: row ``j`` holds
    ``A[j, i]^β / Σ_k A[k, j]^β`` (identity included)."""
    _, height, width = affinity.shape
    nodes = height * width
    source, destination, position = _pair_indices(path_index, height, width, affinity.device)
    weight = affinity.reshape(-1)[position].clamp_min(0).pow(beta)
    diagonal = torch.arange(nodes, device=affinity.device)
    rows = torch.cat([source, destination, diagonal])
    columns = torch.cat([destination, source, diagonal])
    values = torch.cat([weight, weight, torch.ones(nodes, dtype=weight.dtype, device=weight.device)])
    row_sums = torch.zeros(nodes, dtype=weight.dtype, device=weight.device).index_add_(0, rows, values)
    values = values / row_sums[rows]
    matrix = torch.sparse_coo_tensor(
        torch.stack([rows, columns]), values, (nodes, nodes), check_invariants=False
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return matrix.coalesce().to_sparse_csr()


def random_walk(
    scores: torch.Tensor, affinity: torch.Tensor, path_index: PathIndex, beta: float, exp_times: int
) -> torch.Tensor:
    """``x · T^(2^exp_times)`` for scores ``[K, H, W]`` and a pair affinity ``[D, H, W]`` → ``[K, H, W]``,
    computed with ``2^exp_times`` sparse products (memory ``O(N·D)``, never ``O(N²)``)."""
    channels, height, width = scores.shape
    matrix = transition_matrix_sparse(affinity.to(scores.dtype), path_index, beta)
    state = scores.reshape(channels, height * width).t().contiguous()
    for _ in range(2**exp_times):
        state = torch.sparse.mm(matrix, state)
    return state.t().reshape(channels, height, width)


# ------------------------------------------------------------------ dense reference (tests, benchmark)
def dense_affinity(affinity: torch.Tensor, path_index: PathIndex) -> torch.Tensor:
    """The symmetric ``[N, N]`` affinity with identity, exactly as the authors' code builds it."""
    _, height, width = affinity.shape
    nodes = height * width
    source, destination, position = _pair_indices(path_index, height, width, affinity.device)
    weight = affinity.reshape(-1)[position]
    dense = torch.eye(nodes, dtype=affinity.dtype, device=affinity.device)
    dense[source, destination] = weight
    dense[destination, source] = weight
    return dense


def dense_transition(affinity: torch.Tensor, path_index: PathIndex, beta: float, exp_times: int) -> torch.Tensor:
    """``T^(2^exp_times)`` by repeated squaring of the dense column-normalised ``A^∘β``."""
    scaled = dense_affinity(affinity, path_index).clamp_min(0).pow(beta)
    transition = scaled / scaled.sum(dim=0, keepdim=True)
    for _ in range(exp_times):
        transition = transition @ transition
    return transition


def dense_random_walk(
    scores: torch.Tensor, affinity: torch.Tensor, path_index: PathIndex, beta: float, exp_times: int,
    by_squaring: bool = True,
) -> torch.Tensor:
    """Reference implementation of :func:`random_walk` with the dense ``N × N`` matrix (``O(N²)`` memory):
    the authors' ``exp_times`` squarings of ``T``, or (``by_squaring=False``) ``2^exp_times`` dense
    vector-matrix products ``x · T``, the cheaper dense alternative."""
    channels, height, width = scores.shape
    state = scores.reshape(channels, -1)
    if by_squaring:
        transition = dense_transition(affinity.to(scores.dtype), path_index, beta, exp_times)
        return (state @ transition).reshape(channels, height, width)
    transition = dense_transition(affinity.to(scores.dtype), path_index, beta, 0)
    for _ in range(2**exp_times):
        state = state @ transition
    return state.reshape(channels, height, width)
