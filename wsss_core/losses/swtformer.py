"""SWTformer-V2's losses (paper §3-5; SIPE's code where the paper leaves it open).

* ``L_GSC`` (general-specific consistency) = mean |CAM − R-CAM / max| over all elements (SIPE's code;
  Eq. 5's literal sum ÷ (C+1) would be ~h·w times larger);
* ``L_CCL`` = Eq. 6 as printed, ½[(⅔ s)² + (1 − s)²] with s the cosine between CAM_c and R-CAM_c,
  averaged over the background and present classes (``losses.ccl.mode: literal``, default). Its minimum is at
  s = 9/13 ≈ 0.69: above that it pushes CAM and R-CAM apart, against GSC. ``losses.ccl.mode: contrastive``
  is a Hadsell-style reading (positives ½(1 − s_cc)², negatives ½·max(0, s_cc' − margin)²);
  ``off`` drops the term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wsss_core.errors import ConfigError
from wsss_core.models.cam_normalization import max_normalize

CCL_MODES = ("literal", "contrastive", "off")


def gsc_loss(cams: torch.Tensor, rcams: torch.Tensor) -> torch.Tensor:
    """General-specific consistency: mean |CAM − R-CAM/max(R-CAM)| over every element (SIPE code)."""
    return (cams - max_normalize(rcams)).abs().mean()


def ccl_literal(similarity: torch.Tensor) -> torch.Tensor:
    """SWTformer Eq. 6 per cosine value: ½[(⅔ s)² + (1 − s)²]."""
    return 0.5 * ((2.0 / 3.0 * similarity) ** 2 + (1.0 - similarity) ** 2)


def ccl_loss(
    cams: torch.Tensor,
    rcams: torch.Tensor,
    channel_mask: torch.Tensor,
    mode: str = "literal",
    margin: float = 2.0 / 3.0,
) -> torch.Tensor:
    """Class-wise contrastive loss between CAM and R-CAM ``[B, K+1, h, w]`` over the channels where
    ``channel_mask [B, K+1]`` is 1 (background and present classes)."""
    if mode == "off":
        return cams.new_zeros(())
    flat_cams = F.normalize(cams.flatten(2), dim=2, eps=1e-8)
    flat_rcams = F.normalize(rcams.flatten(2), dim=2, eps=1e-8)
    mask = channel_mask.to(cams.dtype)
    if mode == "literal":
        similarity = (flat_cams * flat_rcams).sum(dim=2)  # [B, K+1]
        return (ccl_literal(similarity) * mask).sum() / mask.sum().clamp_min(1.0)
    if mode == "contrastive":
        cross = flat_cams @ flat_rcams.transpose(1, 2)  # [B, K+1 (CAM), K+1 (R-CAM)]
        pair_mask = mask[:, :, None] * mask[:, None, :]
        eye = torch.eye(cross.shape[1], dtype=cams.dtype, device=cams.device)
        positive_mask, negative_mask = pair_mask * eye, pair_mask * (1.0 - eye)
        positive = 0.5 * (1.0 - cross) ** 2
        negative = 0.5 * F.relu(cross - margin) ** 2
        return (positive * positive_mask).sum() / positive_mask.sum().clamp_min(1.0) + (
            negative * negative_mask
        ).sum() / negative_mask.sum().clamp_min(1.0)
    raise ConfigError(f"method.losses.ccl.mode '{mode}' is unknown: use one of {CCL_MODES}")
