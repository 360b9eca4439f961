"""MCC (Wu et al., "Masked Collaborative Contrast for Weakly Supervised Semantic Segmentation"): ToCo with
key-masked views instead of local crops.

Everything but the contrast's local views is ToCo's (``methods/toco.py``: PAR pseudo labels, LargeFOV
decoder, L_cls + L_cls_aux, affinity loss λ_a = 0.2 from the aux CAM, warm-up). MCC's local views are
``num_local`` (8) copies of the local view, each encoded with a different key mask in every block
(``models/masked_vit.py``): contiguous ``scale``×``scale`` token blocks (scale 4), each masked with
probability ``ratio`` (Bernoulli on the coarse grid, nearest-upsampled; a grid side that is not a
multiple of ``scale`` uses the top-left part of the ceil-sized coarse grid); the class token is never
masked. A masked view is **positive** when the mean ROI score of its *visible* tokens exceeds μ = 0.2
(ROI 0 bg / 1 uncertain / 2 fg from the CAM resized bicubically to the token grid), negative otherwise
(so a fully masked view is negative); the 2 global views are always positive. Their class tokens go
through the student projector, the global views' through the EMA teacher (m = 0.9), and the contrast
loss (τ = 0.5) weighs λ_m = 0.5.

Code vs paper, and the defaults chosen:
* mask ratio: **0.95** by default (the authors' script default and their logged VOC run, i.e. what
  produced the published numbers); the paper says 0.75 — set ``losses.masking.ratio: 0.75`` for it.
* the CAM that drives the masks: the aux CAM up to step ``losses.masking.aux_cam_until`` (VOC 12000), the final
  CAM afterwards (VOC code only, not in the paper); COCO uses the aux CAM throughout (set it to the
  number of iterations).
* the extra log(1 + ΣNeg) term of the authors' loss is on (``losses.contrast.negative_term``).
* the local view is flipped independently of the crop whose CAM chose the positive/negative masks,
  as coded (the flags then describe the mirrored layout half of the time).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from wsss_core.settings import PositiveInt, Probability, Settings, Step
from wsss_core.methods.base import METHODS
from wsss_core.training.progress import TrainingProgress
from wsss_core.methods.toco import ToCo, ToCoLosses, ToCoNetwork, ToCoSettings
from wsss_core.models.masked_vit import EncoderOutput
from wsss_core.single_stage.pseudo_labels import roi_map


def block_masks(
    batch: int, num_masks: int, grid: tuple[int, int], ratio: float, block_scale: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Boolean key masks ``[batch, num_masks, h, w]`` (True = masked) made of ``block_scale``² token
    blocks, each masked independently with probability ``ratio``."""
    coarse = (math.ceil(grid[0] / block_scale), math.ceil(grid[1] / block_scale))
    probabilities = torch.full((batch, num_masks, *coarse), float(ratio))
    cells = torch.bernoulli(probabilities, generator=generator).bool()
    masks = cells.repeat_interleave(block_scale, dim=2).repeat_interleave(block_scale, dim=3)
    return masks[:, :, : grid[0], : grid[1]]


def masked_view_flags(roi: torch.Tensor, masks: torch.Tensor, positive_ratio: float = 0.2) -> torch.Tensor:
    """Positive (True) when Σ_visible roi > ``positive_ratio`` · #visible, for ``roi`` ``[B, h, w]`` and
    ``masks`` ``[B, L, h, w]`` (True = masked). Returns ``[B, L]``."""
    visible = (~masks).to(roi.dtype if roi.is_floating_point() else torch.float32)
    score = (roi[:, None].to(visible) * visible).sum(dim=(2, 3))
    return score > positive_ratio * visible.sum(dim=(2, 3))


# ------------------------------------------------------------------------------------ settings
class MCCMasking(Settings):
    ratio: Probability = 0.95  # the authors' run (the paper: 0.75)
    scale: PositiveInt = 4
    aux_cam_until: Step = 12000


class MCCLosses(ToCoLosses):
    """``methods.mcc.params.losses``: ToCo's + ``masking`` (the masked views of the collaborative contrast)."""

    masking: MCCMasking = MCCMasking()


class MCCSettings(ToCoSettings):
    """``methods.mcc.params``: ToCo's sections, with ``losses.masking``."""

    losses: MCCLosses = MCCLosses()


@METHODS.register("mcc")
class MCC(ToCo):
    """MCC: ToCo's single-stage network with masked collaborative contrast."""

    settings_type = MCCSettings

    name = "mcc"

    def __init__(self, config: Mapping[str, Any], num_classes: int) -> None:
        super().__init__(config, num_classes)
        masking = self.settings.losses.masking
        self.mask_ratio = masking.ratio
        self.mask_scale = masking.scale
        self.mask_aux_cam_until = masking.aux_cam_until

    def mask_driving_cam(self, cam: torch.Tensor, aux_cam: torch.Tensor, step: int) -> torch.Tensor:
        """The CAM whose ROI labels the masked views: aux up to ``losses.masking.aux_cam_until``, then final."""
        return aux_cam if step <= self.mask_aux_cam_until else cam

    def contrast_views(
        self,
        model: ToCoNetwork,
        batch: Mapping[str, Any],
        out: EncoderOutput,
        cam: torch.Tensor,
        aux_cam: torch.Tensor,
        progress: TrainingProgress,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Student ``[B, 2 + L, E]``, teacher ``[B, 2, E]`` and flags ``[B, 2 + L]`` with key-masked local views."""
        global_student, teacher = self.global_tokens(model, batch, out)
        grid = tuple(out.patch_tokens.shape[-2:])
        driving = self.mask_driving_cam(cam, aux_cam, progress.step)
        resized = F.interpolate(driving, size=grid, mode="bicubic", align_corners=False)
        roi = roi_map(resized, batch["labels"].float(), self.thresholds.low, self.thresholds.high)
        local_view = batch["local_view"]
        batch_size = local_view.shape[0]
        masks = block_masks(batch_size, self.num_local, grid, self.mask_ratio, self.mask_scale).to(local_view.device)
        local_positive = masked_view_flags(roi, masks, self.positive_ratio)
        views = local_view[:, None].expand(-1, self.num_local, -1, -1, -1).flatten(0, 1)
        local_tokens = model(views, masks.flatten(2).flatten(0, 1)).class_token.view(batch_size, self.num_local, -1)
        student = torch.cat([global_student, model.projector(local_tokens)], dim=1)
        positive = torch.cat([torch.ones_like(local_positive[:, :2]), local_positive], dim=1)
        return student, teacher, positive
