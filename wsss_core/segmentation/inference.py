"""Multi-scale (+ flip) segmentation inference, shared by the DeepLabs and the end-to-end methods.

``predict_probabilities`` resizes one normalised image to each scale (bilinear), runs the network on it
(and on its mirror image when ``flip``), resizes every logit map back to the image size (bilinear),
un-mirrors the flipped ones and fuses all views pixelwise by ``max`` or ``mean``:

* ``space="logits"`` (default): fuse the logits, then softmax — deeplab-pytorch's MSC test-time fusion
  (max over the 1.0/0.75/0.5 logits) and ToCo/AFA's;
* ``space="probabilities"``: softmax each view, fuse, renormalise each pixel to sum 1 — MCTformer's
  DeepLab-V1 inference (max of the per-scale softmax). The two give different argmaxes in general.

Differences from deeplab-pytorch, on purpose: it resizes each scale's logits straight to the image size
(deeplab-pytorch first brings them to the stride-8 size of the 1.0 scale, fuses, then upsamples), and it
can add flipped views (the WSSS papers using DeepLab-V2 report MS + flip). The dense CRF then runs on
the un-normalised RGB ``uint8`` image (deeplab-pytorch casts the mean-subtracted image to uint8, which
wraps negative values: G25 in shared/reference/cti_multistage.md §9); ``DEEPLAB_CRF`` holds its kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from wsss_core.segmentation.settings import DEEPLAB_CRF

__all__ = ["DEEPLAB_CRF", "FUSIONS", "FUSION_SPACES", "predict_probabilities", "view_logits"]

FUSIONS = ("max", "mean")
FUSION_SPACES = ("logits", "probabilities")

LogitsFunction = Callable[[torch.Tensor], torch.Tensor]


def _fuse(views: list[torch.Tensor], fuse: str) -> torch.Tensor:
    stacked = torch.stack(views)
    return stacked.max(dim=0).values if fuse == "max" else stacked.mean(dim=0)


def view_logits(
    predict_logits_fn: LogitsFunction, image: torch.Tensor, scales: Sequence[float], flip: bool
) -> list[torch.Tensor]:
    """Logits ``[K, H, W]`` of every view (scale × flip) of one normalised image ``[3, H, W]`` (or
    ``[1, 3, H, W]``), at the image size and un-mirrored. ``predict_logits_fn`` maps a batch
    ``[B, 3, h, w]`` to logits ``[B, K, h', w']`` of any size."""
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must name at least one positive scale, e.g. [1.0]; got {list(scales)}")
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"image must be the normalised float tensor [3, H, W] the network takes, got {type(image).__name__}"
        )
    batch = image.unsqueeze(0) if image.dim() == 3 else image
    if batch.dim() != 4 or batch.shape[0] != 1:
        raise ValueError(f"expected one image [3, H, W] or [1, 3, H, W], got {tuple(image.shape)}")
    height, width = batch.shape[-2:]
    views = []
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = batch if size == (height, width) else F.interpolate(
            batch, size=size, mode="bilinear", align_corners=False
        )
        inputs = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        logits = F.interpolate(
            predict_logits_fn(inputs).float(), size=(height, width), mode="bilinear", align_corners=False
        )
        views.append(logits[0])
        if flip:
            views.append(logits[1].flip(-1))
    return views


@torch.no_grad()
def predict_probabilities(
    predict_logits_fn: LogitsFunction,
    image: torch.Tensor,
    scales: Sequence[float] = (0.5, 0.75, 1.0),
    flip: bool = True,
    fuse: str = "max",
    space: str = "logits",
) -> torch.Tensor:
    """Class probabilities ``float32 [K, H, W]`` (summing to 1 per pixel) of one normalised image
    ``[3, H, W]``, fused over scales and flips in ``space``; on the image's device."""
    if fuse not in FUSIONS:
        raise ValueError(f"fuse must be one of {', '.join(FUSIONS)}, got '{fuse}'")
    if space not in FUSION_SPACES:
        raise ValueError(f"space must be one of {', '.join(FUSION_SPACES)}, got '{space}'")
    views = view_logits(predict_logits_fn, image, scales, flip)
    if space == "logits":
        return _fuse(views, fuse).softmax(dim=0)
    fused = _fuse([logits.softmax(dim=0) for logits in views], fuse)
    return fused / fused.sum(dim=0, keepdim=True)
