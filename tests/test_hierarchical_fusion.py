"""Hierarchical feature fusion (SWTformer-V2 HFF): shapes, normalisation, and a direct computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wsss_core.models.hierarchical_fusion import HierarchicalFeatureFusion, l2_normalize_channels

torch.set_num_threads(1)
WIDTHS = (8, 16, 32, 64)


def stage_maps(grids: list[tuple[int, int]], batch: int = 2, requires_grad: bool = False) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randn(batch, width, *grid, generator=generator).requires_grad_(requires_grad)
        for width, grid in zip(WIDTHS, grids)
    ]


@pytest.mark.parametrize(
    "grids, expected",
    [
        ([(16, 16), (8, 8), (4, 4), (2, 2)], (4, 4)),  # 64 px input
        ([(13, 19), (7, 10), (4, 5), (2, 3)], (4, 5)),  # 52×76 px: Swin's ceil-halving grids
    ],
)
def test_output_shape_and_branch_norms(grids: list[tuple[int, int]], expected: tuple[int, int]) -> None:
    fusion = HierarchicalFeatureFusion(WIDTHS, local_channels=6, fused_channels=10)
    fused = fusion(stage_maps(grids))
    assert fused.shape == (2, 30, *expected)
    assert fusion.out_channels == 30
    for part in fused.split(10, dim=1):  # each branch has unit L2 norm per pixel (up to eps)
        norms = torch.linalg.vector_norm(part, dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-4, rtol=0)


def test_matches_direct_computation() -> None:
    """Rebuild F_hie from the module's weights with einsum / conv2d written out here."""
    fusion = HierarchicalFeatureFusion(WIDTHS, local_channels=3, fused_channels=5)
    s1, s2, s3, s4 = stage_maps([(8, 8), (4, 4), (2, 2), (1, 1)], batch=1)

    def pointwise(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x)

    def unit(x: torch.Tensor) -> torch.Tensor:
        return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-5)

    a1 = F.conv2d(s1, fusion.reduce_stage1.weight, stride=2, padding=1)  # 8×8 → 4×4
    a2 = pointwise(fusion.project_stage2, s2)
    local = F.conv2d(torch.cat([a1, a2], 1), fusion.downsample_local.weight, stride=2, padding=1)  # → 2×2
    b3 = pointwise(fusion.project_stage3, s3)
    b4 = pointwise(fusion.project_stage4, s4).expand(-1, -1, 2, 2)  # bilinear up of a 1×1 map is constant
    expected = torch.cat([unit(local), unit(b3), unit(b4)], dim=1)
    torch.testing.assert_close(fusion([s1, s2, s3, s4]), expected, atol=1e-5, rtol=1e-5)


def test_l2_normalize_hand_values() -> None:
    x = torch.tensor([3.0, 4.0]).reshape(1, 2, 1, 1)
    torch.testing.assert_close(l2_normalize_channels(x, eps=0.0).flatten(), torch.tensor([0.6, 0.8]))


@pytest.mark.parametrize("detach", [True, False])
def test_detached_inputs_get_no_gradient(detach: bool) -> None:
    fusion = HierarchicalFeatureFusion(WIDTHS, local_channels=4, fused_channels=4, detach_inputs=detach)
    stages = stage_maps([(8, 8), (4, 4), (2, 2), (1, 1)], requires_grad=True)
    fusion(stages).sum().backward()
    assert all(p.grad is not None for p in fusion.parameters())
    assert all((s.grad is None) == detach for s in stages)


def test_rejects_wrong_stage_count() -> None:
    with pytest.raises(ValueError, match="4 stages"):
        HierarchicalFeatureFusion((8, 16, 32))
