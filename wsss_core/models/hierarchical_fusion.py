"""Hierarchical feature fusion (HFF) of SWTformer-V2: one stride-16 map from the four Swin stages.

The paper (SWTformer §3-4, Fig. 3) fixes only the structure: the outputs of all four stages are
concatenated in two steps, upsampling is bilinear and downsampling is a (strided) convolution. Widths
and grids are not given, so this module mirrors the fused width of SIPE's hierarchical feature, which
SWTformer adapts (SIPE ``side1..side4``: 128 + 128 + 256 + 256 = 768 channels at stride 16, 1×1 convs
without bias or normalisation, per-pixel L2-normalised branches, detached backbone inputs):

* step 1 (stride 8): ``a1 = conv3x3/2(S1)`` and ``a2 = conv1x1(S2)`` (``local_channels`` each),
  ``A = conv3x3/2(cat(a1, a2))`` down to stride 16 (``fused_channels``);
* step 2 (stride 16): ``b3 = conv1x1(S3)``, ``b4 = bilinear↑(conv1x1(S4))`` (``fused_channels``
  each), ``F_hie = cat(ℓ2(A), ℓ2(b3), ℓ2(b4))``.

With the defaults (128, 256) ``F_hie`` has 768 channels, like SIPE's. Grids that are not exact halves
(odd sizes at seed export) are aligned to the stage-3 grid by bilinear resizing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def l2_normalize_channels(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Divide every pixel's channel vector by its L2 norm (+``eps``), as SIPE does for its side maps."""
    return features / (torch.linalg.vector_norm(features, dim=1, keepdim=True) + eps)


def _resize_to(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(features.shape[-2:]) == tuple(size):
        return features
    return F.interpolate(features, size=size, mode="bilinear", align_corners=False)


class HierarchicalFeatureFusion(nn.Module):
    """Fuses four stage maps ``[B, C_i, H/4·2^-i, W/4·2^-i]`` (i = 0..3) into ``F_hie`` at the
    stage-3 grid (stride 16) with ``3 · fused_channels`` channels."""

    def __init__(
        self,
        in_channels: Sequence[int],
        local_channels: int = 128,
        fused_channels: int = 256,
        detach_inputs: bool = True,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"HFF needs the widths of 4 stages, got {list(in_channels)}")
        c1, c2, c3, c4 = (int(c) for c in in_channels)
        self.detach_inputs = detach_inputs
        self.eps = eps
        self.out_channels = 3 * fused_channels
        # step 1: stride 4 and 8 → stride 8 → stride 16
        self.reduce_stage1 = nn.Conv2d(c1, local_channels, 3, stride=2, padding=1, bias=False)
        self.project_stage2 = nn.Conv2d(c2, local_channels, 1, bias=False)
        self.downsample_local = nn.Conv2d(2 * local_channels, fused_channels, 3, stride=2, padding=1, bias=False)
        # step 2: stride 16 and 32 → stride 16
        self.project_stage3 = nn.Conv2d(c3, fused_channels, 1, bias=False)
        self.project_stage4 = nn.Conv2d(c4, fused_channels, 1, bias=False)

    def forward(self, stages: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(stages) != 4:
            raise ValueError(f"HFF takes 4 stage maps, got {len(stages)}")
        s1, s2, s3, s4 = (s.detach() if self.detach_inputs else s for s in stages)
        grid8 = tuple(s2.shape[-2:])
        grid16 = tuple(s3.shape[-2:])
        a1 = _resize_to(self.reduce_stage1(s1), grid8)
        a2 = self.project_stage2(s2)
        local = _resize_to(self.downsample_local(torch.cat([a1, a2], dim=1)), grid16)
        b3 = self.project_stage3(s3)
        b4 = _resize_to(self.project_stage4(s4), grid16)
        parts = [l2_normalize_channels(part, self.eps) for part in (local, b3, b4)]
        return torch.cat(parts, dim=1)
