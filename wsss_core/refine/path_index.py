"""Pixel pairs within a radius, and the pixels on the straight path between them (IRN, PSA).

Both affinity refiners relate each pixel ``p`` of a feature grid to the pixels ``p + d`` for a fixed
set of directions ``d = (dy, dx)``: every offset with ``dy > 0`` (any ``dx``), or ``dy == 0 and
dx > 0``, and ``dy² + dx² < radius²``. Each unordered pair appears once; the reverse pair is implied
(affinities are symmetric). IRN uses radius 10 at training and 5 in the random walk; PSA uses 5.

IRN also needs, for each direction, the *path*: the offsets ``k`` inside the bounding box of the
segment from ``(0, 0)`` to ``d`` whose distance to the line through it is below one pixel
(``(dy·kx − dx·ky)² < dy² + dx²``). Its affinity is ``1 − max_{k ∈ path} boundary(p + k)``.

Affinities are stored densely per direction, ``[..., D, H, W]``: entry ``[d, y, x]`` relates pixel
``(y, x)`` to ``(y + dy, x + dx)``. Pairs whose destination falls outside the grid are invalid
(:meth:`PathIndex.in_bounds`). IRN's code trains only on sources in ``[0, H − r′) × [r′, W − r′)``
(``r′ = ceil(radius) − 1``), where every direction is in bounds: :meth:`PathIndex.irn_source_mask`
reproduces that region; the random walk uses every in-bounds pair, which is what IRN's padding by
1.0 followed by cropping amounts to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


def pair_directions(radius: float) -> tuple[tuple[int, int], ...]:
    """Offsets ``(dy, dx)`` of the pairs within ``radius``, each unordered pair once, in IRN/PSA order:
    first ``(0, 1..)``, then rows ``dy = 1..`` with ``dx`` ascending."""
    if radius <= 1:
        raise ValueError(f"radius must be larger than 1 pixel, got {radius}")
    reach = int(math.ceil(radius)) - 1
    directions = [(0, dx) for dx in range(1, reach + 1) if dx * dx < radius * radius]
    for dy in range(1, reach + 1):
        for dx in range(-reach, reach + 1):
            if dy * dy + dx * dx < radius * radius:
                directions.append((dy, dx))
    return tuple(directions)


def straight_path(direction: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """Offsets within one pixel of the segment ``(0, 0) → direction``, both ends included."""
    dy, dx = direction
    length_squared = dy * dy + dx * dx
    ys = range(min(0, dy), max(0, dy) + 1)
    xs = range(min(0, dx), max(0, dx) + 1)
    return tuple((y, x) for y in ys for x in xs if (dy * x - dx * y) ** 2 < length_squared)


@dataclass(frozen=True)
class PathIndex:
    """The directions of one radius and, per direction, its straight path."""

    radius: float
    directions: tuple[tuple[int, int], ...] = field(init=False)
    paths: tuple[tuple[tuple[int, int], ...], ...] = field(init=False)

    def __post_init__(self) -> None:
        directions = pair_directions(self.radius)
        object.__setattr__(self, "directions", directions)
        object.__setattr__(self, "paths", tuple(straight_path(d) for d in directions))

    @property
    def reach(self) -> int:
        """Largest |offset| along either axis (IRN's ``radius_floor``)."""
        return int(math.ceil(self.radius)) - 1

    def __len__(self) -> int:
        return len(self.directions)

    def offsets(self, device: torch.device | None = None) -> torch.Tensor:
        """Directions as a float tensor ``[D, 2]`` of ``(dy, dx)`` (the displacement targets)."""
        return torch.tensor(self.directions, dtype=torch.float32, device=device)

    def in_bounds(self, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
        """Bool ``[D, H, W]``: the destination ``(y + dy, x + dx)`` lies inside the grid."""
        ys = torch.arange(height, device=device).view(1, height, 1)
        xs = torch.arange(width, device=device).view(1, 1, width)
        offsets = torch.tensor(self.directions, device=device)
        dy = offsets[:, 0].view(-1, 1, 1)
        dx = offsets[:, 1].view(-1, 1, 1)
        return (ys + dy < height) & (xs + dx >= 0) & (xs + dx < width)

    def irn_source_mask(self, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
        """Bool ``[H, W]``: IRN's training source region ``[0, H − r′) × [r′, W − r′)``."""
        mask = torch.zeros(height, width, dtype=torch.bool, device=device)
        reach = self.reach
        mask[: max(height - reach, 0), reach : max(width - reach, reach)] = True
        return mask


def shifted(grid: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """``out[..., y, x] = grid[..., y + dy, x + dx]``, ``fill`` where that falls outside the grid."""
    height, width = grid.shape[-2:]
    out = torch.full_like(grid, fill)
    y0, y1 = max(0, -dy), min(height, height - dy)
    x0, x1 = max(0, -dx), min(width, width - dx)
    if y0 < y1 and x0 < x1:
        out[..., y0:y1, x0:x1] = grid[..., y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    return out


def pair_values(grid: torch.Tensor, path_index: PathIndex, fill: float = 0.0) -> torch.Tensor:
    """Values at each pair's destination: ``[..., H, W] → [..., D, H, W]`` (``fill`` outside)."""
    return torch.stack([shifted(grid, dy, dx, fill) for dy, dx in path_index.directions], dim=-3)
