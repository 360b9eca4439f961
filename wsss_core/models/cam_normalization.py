"""SIPE's max normalisation of class activation maps (SWTformer and the CAM baseline use it).

Kept out of the methods so that two methods share it without one importing the other.
"""

from __future__ import annotations

import torch


def max_normalize(maps: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Divide each ``[..., h, w]`` map by its spatial max (+``eps``)."""
    return maps / (maps.flatten(-2).amax(dim=-1)[..., None, None] + eps)
