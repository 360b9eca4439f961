"""Multi-scale + flip inference of the ToCo family: CAMs (training pseudo labels, seeds) and decoder
logits (final masks).

CAMs, as the authors' ``multi_scale_cam``: for each scale (1.0, 0.5, 1.5 by default) the batch is
resized bilinearly to ``int(s·H) × int(s·W)``, run together with its horizontal flip, each map upsampled
bilinearly to (H, W), fused with the re-flipped copy by element-wise max, ReLU'd, and summed over
scales; each (image, class) map is then min-max normalised: (x − min) / (max(x − min) + 1e-5).

Decoder logits, as the authors' ``infer_seg_voc`` (VOC) and ``infer_seg_coco`` (COCO): per scale the
image and its flip are forwarded, logits upsampled bilinearly to the output size, the flip fused by
``flip_fuse`` (VOC sum, COCO max) and the scales by ``scale_fuse`` (VOC max, COCO sum). This is the
project's own routine; ``wsss_core.segmentation.inference`` did not exist when it was written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

Fuse = Literal["sum", "max", "mean"]
MapsFn = Callable[[torch.Tensor], Sequence[torch.Tensor]]


def normalize_cams(cams: torch.Tensor, epsilon: float = 1e-5) -> torch.Tensor:
    """Per (image, class) min-max normalisation of ``[B, C, H, W]`` maps, as coded by the authors."""
    shifted = cams - cams.amin(dim=(-2, -1), keepdim=True)
    return shifted / (shifted.amax(dim=(-2, -1), keepdim=True) + epsilon)


def _resize(images: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1.0:
        return images
    height, width = images.shape[-2:]
    size = (int(scale * height), int(scale * width))
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def _fuse(stack: list[torch.Tensor], how: Fuse) -> torch.Tensor:
    stacked = torch.stack(stack, dim=0)
    if how == "sum":
        return stacked.sum(dim=0)
    if how == "mean":
        return stacked.mean(dim=0)
    if how == "max":
        return stacked.amax(dim=0)
    raise ValueError(f"fuse must be 'sum', 'mean' or 'max', not {how!r}")


@torch.no_grad()
def multi_scale_cams(maps_fn: MapsFn, images: torch.Tensor, scales: Sequence[float]) -> list[torch.Tensor]:
    """Normalised multi-scale + flip maps at the input size, one per map that ``maps_fn`` returns
    (e.g. the final and the aux CAM), each float32 ``[B, C, H, W]``."""
    batch, _, height, width = images.shape
    sums: list[torch.Tensor] | None = None
    for scale in scales:
        resized = _resize(images, scale)
        outputs = maps_fn(torch.cat([resized, resized.flip(-1)], dim=0))
        fused = []
        for maps in outputs:
            maps = F.interpolate(maps.float(), size=(height, width), mode="bilinear", align_corners=False)
            fused.append(F.relu(torch.maximum(maps[:batch], maps[batch:].flip(-1))))
        sums = fused if sums is None else [total + part for total, part in zip(sums, fused)]
    if sums is None:
        raise ValueError("scales is empty: give at least one CAM scale")
    return [normalize_cams(total) for total in sums]


@torch.no_grad()
def multi_scale_logits(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    scales: Sequence[float],
    output_size: tuple[int, int],
    flip: bool = True,
    flip_fuse: Fuse = "sum",
    scale_fuse: Fuse = "max",
) -> torch.Tensor:
    """Decoder logits ``[B, K, *output_size]`` fused over scales and (optionally) the flip (float32)."""
    batch = images.shape[0]
    per_scale = []
    for scale in scales:
        resized = _resize(images, scale)
        inputs = torch.cat([resized, resized.flip(-1)], dim=0) if flip else resized
        logits = F.interpolate(logits_fn(inputs).float(), size=output_size, mode="bilinear", align_corners=False)
        if flip:
            logits = _fuse([logits[:batch], logits[batch:].flip(-1)], flip_fuse)
        per_scale.append(logits)
    if not per_scale:
        raise ValueError("scales is empty: give at least one inference scale")
    return _fuse(per_scale, scale_fuse)
