"""CTI's CAM losses (Yoon et al., CVPR 2024): min-max normalisation, the background-aware CAM loss
L_bcam (Eq. 1) and the CAM consistency of the token-infusion passes (Eq. 4 and Eq. 7).

The functions follow the authors' code (yoon307/CTI ``models/model_CTI.py``), which differs from the
paper's equations in ways that matter for reproduction:

* every L1 term is a *mean* over batch, channels and positions (the paper writes sums over channels);
* the min-max normalisation first applies ReLU, then ``ReLU(x - min - 1e-5) / (max - min + 1e-5)``
  per (image, channel) over the h·w positions;
* L_bcam refines the maps with the patch-to-patch attention in float64, at patch resolution;
* the C-CTI term compares the non-attended CAM ``ReLU(P)`` of the anchor pass with ``A_cp ⊙ ReLU(P)``
  of the infused pass (paper: "M against X̂"), on the foreground channels only.
"""

from __future__ import annotations

import torch

from wsss_core.models.multi_token_vit import refine_with_patch_attention

MINMAX_EPS = 1e-5


def minmax_normalize(maps: torch.Tensor, eps: float = MINMAX_EPS) -> torch.Tensor:
    """Per-(image, channel) min-max normalisation of ``[B, K, h, w]`` maps, exactly as CTI codes it:
    ``x = ReLU(x)``, then ``ReLU(x - min - eps) / (max - min + eps)`` with min/max over h·w."""
    maps = torch.relu(maps)
    flat = maps.flatten(2)
    low = flat.min(dim=-1).values[..., None, None]
    high = flat.max(dim=-1).values[..., None, None]
    return torch.relu(maps - low - eps) / (high - low + eps)


def background_cam_loss(
    attended_cams: torch.Tensor,
    patch_attention: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """L_bcam (Eq. 1) without its weight λ: ``mean |(1 - N(A_pp · max_c X_c)) - N(A_pp · X_0)|``.

    ``attended_cams``: X = A_cp ⊙ ReLU(P), ``[B, C+1, h, w]`` with the background at channel 0.
    ``patch_attention``: A_pp ``[B, hw, hw]``. ``labels``: multi-hot ``[B, C]``; absent classes are
    zeroed before the foreground max. Both maps are refined in float64 (as coded) and both are trained.
    """
    foreground = (attended_cams[:, 1:] * labels[:, :, None, None]).max(dim=1, keepdim=True).values
    background = attended_cams[:, :1]
    attention = patch_attention.double()
    refined_foreground = refine_with_patch_attention(foreground.double(), attention)
    refined_background = refine_with_patch_attention(background.double(), attention)
    difference = (1 - minmax_normalize(refined_foreground)) - minmax_normalize(refined_background)
    return difference.abs().mean().to(attended_cams.dtype)


def cam_consistency_loss(reference: torch.Tensor, infused: torch.Tensor) -> torch.Tensor:
    """``mean |N(reference) - N(infused)|`` over every image, channel and position (Eq. 4 / Eq. 7 as
    coded); neither side is detached, so both passes are trained."""
    if reference.shape != infused.shape:
        raise ValueError(f"CAM shapes differ: {tuple(reference.shape)} vs {tuple(infused.shape)}")
    return (minmax_normalize(reference) - minmax_normalize(infused)).abs().mean()
