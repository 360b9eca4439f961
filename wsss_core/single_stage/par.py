"""PAR — pixel-adaptive refinement of class scores by local colour affinity (AFA, ToCo, MCC).

For every pixel, the neighbours are the 8 pixels at offsets (±d, 0), (0, ±d), (±d, ±d) for each dilation
d (default 1, 2, 4, 8, 12, 24: 48 neighbours, centre excluded; borders replicate the edge). The kernel is

    k = softmax_n(mean_c(-(|I_n - I_0| / (std_n(I_n) + 1e-8) / w1)^2))
        + w2 · softmax_n(-(dist_n / std_n(dist) / w1)^2)

with the colour std taken per channel over the 48 neighbour values (unbiased), distances d (axial) and
√2·d (diagonal), w1 = 0.3 and w2 = 0.01 (so the weights sum to 1.01, not renormalised, as coded). The
scores are bilinearly resized to the image (align_corners=True) and propagated ``num_iterations`` times:
P ← Σ_n k_n · P_n. The result is un-normalised; only its argmax is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# The 8 neighbour offsets (dy, dx) of a 3×3 window, row-major without the centre.
NEIGHBOUR_OFFSETS: tuple[tuple[int, int], ...] = (
    (-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1),
)


def dilated_neighbours(x: torch.Tensor, dilations: Sequence[int]) -> torch.Tensor:
    """Neighbour values ``[B, C, 8·len(dilations), H, W]`` of ``x`` ``[B, C, H, W]`` with replicate
    borders (clamped coordinates)."""
    height, width = x.shape[-2:]
    pad = max(dilations)
    padded = F.pad(x, [pad, pad, pad, pad], mode="replicate")
    neighbours = []
    for dilation in dilations:
        for dy, dx in NEIGHBOUR_OFFSETS:
            top, left = pad + dy * dilation, pad + dx * dilation
            neighbours.append(padded[..., top : top + height, left : left + width])
    return torch.stack(neighbours, dim=2)


def neighbour_distances(dilations: Sequence[int]) -> torch.Tensor:
    """Distance of each neighbour to the centre: d for axial, √2·d for diagonal offsets."""
    return torch.tensor(
        [dilation * math.hypot(dy, dx) for dilation in dilations for dy, dx in NEIGHBOUR_OFFSETS],
        dtype=torch.float32,
    )


class PixelAdaptiveRefinement(nn.Module):
    """Refines class scores with a colour + position affinity over dilated 8-neighbourhoods."""

    def __init__(
        self,
        dilations: Sequence[int] = (1, 2, 4, 8, 12, 24),
        num_iterations: int = 10,
        colour_scale: float = 0.3,
        position_weight: float = 0.01,
    ) -> None:
        super().__init__()
        self.dilations = tuple(int(d) for d in dilations)
        self.num_iterations = int(num_iterations)
        self.colour_scale = float(colour_scale)  # w1
        self.position_weight = float(position_weight)  # w2
        self.register_buffer("distances", neighbour_distances(self.dilations), persistent=False)

    def kernel(self, image: torch.Tensor) -> torch.Tensor:
        """Affinity weights ``[B, 1, 8·D, H, W]`` of an RGB image ``[B, 3, H, W]`` in [0, 1]."""
        neighbours = dilated_neighbours(image, self.dilations)  # [B, 3, n, H, W]
        difference = (neighbours - image.unsqueeze(2)).abs()
        spread = neighbours.std(dim=2, keepdim=True)
        colour = -((difference / (spread + 1e-8) / self.colour_scale) ** 2)
        colour = colour.mean(dim=1, keepdim=True).softmax(dim=2)
        distances = self.distances.to(image)
        position = -((distances / (distances.std() + 1e-8) / self.colour_scale) ** 2)
        position = position.softmax(dim=0).view(1, 1, -1, 1, 1)
        return colour + self.position_weight * position

    def forward(self, image: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Refined scores ``[B, K, H, W]`` at the image size from ``scores`` ``[B, K, h, w]``."""
        scores = F.interpolate(scores, size=image.shape[-2:], mode="bilinear", align_corners=True)
        weights = self.kernel(image)
        for _ in range(self.num_iterations):
            scores = (dilated_neighbours(scores, self.dilations) * weights).sum(dim=2)
        return scores
