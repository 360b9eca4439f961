"""CAM → pseudo-label rules of the ToCo family, with the two background thresholds and 255 = ignore.

Label space: 0 background, 1..C foreground, ``IGNORE_INDEX`` (255) unknown. ``cams`` are ``[B, C, H, W]``
normalised CAMs (foreground only), ``labels`` the multi-hot ``[B, C]`` image labels. Let v be the max of
the label-masked CAM over classes and a its argmax + 1:

* evaluation rule (one threshold, ``background_threshold`` 0.5 VOC / 0.45 COCO): a if v > t else 0;
* training rule (``low`` 0.25, ``high`` 0.7 VOC / 0.65 COCO): 0 if v ≤ low, 255 if low < v ≤ high,
  a if v > high; pixels outside the crop's valid box (zero padding) are 255;
* ROI map (ToCo crops, MCC masks): 0 if v ≤ low, 2 if v ≥ high, 1 otherwise;
* PAR labels (the segmentation target): PAR on [high, CAM] and on [low, CAM] (background constant
  channel, softmax over background + present classes, at half resolution); foreground = the
  high-background result, background = where both results say background, the rest 255.

``image_box`` is ``[B, 4]`` integer (top, bottom, left, right) of the valid region in crop pixels, ends
exclusive.

Affinity labels (the patch-token affinity loss) come from the aux CAM resized to the token grid with
the training rule. ⚠ The authors mask that token-grid label with the *pixel* box (``box_units="pixels"``,
the default here, because it produced the published numbers): a crop padded at the top or left by at
least one grid side loses its whole label, and otherwise the padding is not masked at all.
``box_units="tokens"`` is the fixed variant: a token is valid when its centre lies inside the box.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wsss_core.data.transforms import to_tensor
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.single_stage.par import PixelAdaptiveRefinement

IGNORE_INDEX = 255
BoxUnits = Literal["pixels", "tokens"]


def label_masked_cams(cams: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CAMs with absent classes zeroed ("valid CAM")."""
    return cams * labels[:, :, None, None].to(cams)


def _max_and_class(cams: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    value, index = label_masked_cams(cams, labels).max(dim=1)
    return value, index + 1


def box_mask(image_box: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boolean ``[B, H, W]``: True inside each (top, bottom, left, right) box, boxes in the same units
    as the grid (values beyond the grid are clipped like a slice)."""
    rows = torch.arange(height, device=image_box.device)
    cols = torch.arange(width, device=image_box.device)
    box = image_box.long()
    inside_rows = (rows[None, :] >= box[:, 0:1]) & (rows[None, :] < box[:, 1:2])
    inside_cols = (cols[None, :] >= box[:, 2:3]) & (cols[None, :] < box[:, 3:4])
    return inside_rows[:, :, None] & inside_cols[:, None, :]


def token_box_mask(image_box: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Boolean ``[B, h, w]``: tokens whose pixel centre lies inside the pixel box (the fixed variant)."""
    centres_y = torch.arange(grid[0], device=image_box.device) * patch_size + patch_size / 2
    centres_x = torch.arange(grid[1], device=image_box.device) * patch_size + patch_size / 2
    box = image_box.float()
    inside_rows = (centres_y[None, :] >= box[:, 0:1]) & (centres_y[None, :] < box[:, 1:2])
    inside_cols = (centres_x[None, :] >= box[:, 2:3]) & (centres_x[None, :] < box[:, 3:4])
    return inside_rows[:, :, None] & inside_cols[:, None, :]


def cams_to_labels(cams: torch.Tensor, labels: torch.Tensor, background_threshold: float) -> torch.Tensor:
    """Evaluation rule: class a where v > threshold, else background. Returns int64 ``[B, H, W]``."""
    value, label = _max_and_class(cams, labels)
    return torch.where(value > background_threshold, label, torch.zeros_like(label))


def cams_to_labels_with_ignore(
    cams: torch.Tensor,
    labels: torch.Tensor,
    low: float,
    high: float,
    valid: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Training rule: 0 (v ≤ low), ignore (low < v ≤ high), class (v > high); ignore where ``valid``
    (boolean ``[B, H, W]``) is False. Returns int64 ``[B, H, W]``."""
    value, label = _max_and_class(cams, labels)
    result = torch.full_like(label, ignore_index)
    result = torch.where(value > high, label, result)
    result = torch.where(value <= low, torch.zeros_like(label), result)
    if valid is not None:
        result = torch.where(valid, result, torch.full_like(result, ignore_index))
    return result


def roi_map(cams: torch.Tensor, labels: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """ROI score ``[B, H, W]``: 0 background (v ≤ low), 2 foreground (v ≥ high), 1 uncertain."""
    value, _ = _max_and_class(cams, labels)
    roi = torch.ones_like(value, dtype=torch.long)
    roi[value <= low] = 0
    roi[value >= high] = 2
    return roi


def token_labels(
    aux_cams: torch.Tensor,
    labels: torch.Tensor,
    grid: tuple[int, int],
    low: float,
    high: float,
    image_box: torch.Tensor | None,
    patch_size: int,
    box_units: BoxUnits = "pixels",
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Training-rule labels ``[B, h, w]`` on the token grid from the (full-resolution) aux CAM."""
    resized = F.interpolate(aux_cams, size=grid, mode="bilinear", align_corners=False)
    valid = None
    if image_box is not None:
        if box_units == "pixels":  # the authors' behaviour: pixel box applied to the token grid
            valid = box_mask(image_box, *grid)
        elif box_units == "tokens":
            valid = token_box_mask(image_box, grid, patch_size)
        else:
            raise ValueError(f"box_units must be 'pixels' or 'tokens', not {box_units!r}")
    return cams_to_labels_with_ignore(resized, labels, low, high, valid, ignore_index)


def affinity_labels(token_label: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pairwise targets ``[B, N, N]`` from token labels ``[B, h, w]``: 1 same label (background pairs
    included), 0 different, ``ignore_index`` for pairs touching an ignored token and the diagonal."""
    flat = token_label.flatten(1)
    pairs = (flat[:, :, None] == flat[:, None, :]).long()
    ignored = (flat == ignore_index)
    pairs[ignored[:, :, None] | ignored[:, None, :]] = ignore_index
    diagonal = torch.arange(flat.shape[1], device=flat.device)
    pairs[:, diagonal, diagonal] = ignore_index
    return pairs


def par_refined_labels(
    par: PixelAdaptiveRefinement,
    image: torch.Tensor,
    cams: torch.Tensor,
    labels: torch.Tensor,
    low: float,
    high: float,
    image_box: torch.Tensor | None = None,
    downscale: int = 2,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Segmentation pseudo labels ``[B, H, W]`` from label-masked CAMs refined by PAR.

    ``image`` is the RGB crop in [0, 1] ``[B, 3, H, W]``; PAR runs at ``1/downscale`` of it, in float32
    even under autocast (label argmaxes must not depend on bf16 rounding).
    """
    with torch.autocast(device_type=image.device.type, enabled=False):
        return _par_refined_labels(par, image.float(), cams.float(), labels.float(), low, high, image_box,
                                   downscale, ignore_index)


def _par_refined_labels(
    par: PixelAdaptiveRefinement,
    image: torch.Tensor,
    cams: torch.Tensor,
    labels: torch.Tensor,
    low: float,
    high: float,
    image_box: torch.Tensor | None,
    downscale: int,
    ignore_index: int,
) -> torch.Tensor:
    batch, _, height, width = cams.shape
    size = (height // downscale, width // downscale)
    small_image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
    cams = label_masked_cams(cams, labels)
    present = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1) > 0
    stacks = [torch.cat([torch.full_like(cams[:, :1], background), cams], dim=1) for background in (high, low)]
    small_stacks = [F.interpolate(stack, size=size, mode="bilinear", align_corners=False) for stack in stacks]
    with_high, with_low = [], []
    for index in range(batch):
        keys = torch.nonzero(present[index])[:, 0]
        # PAR is linear in the scores, so both stacks share one kernel and one propagation
        scores = torch.cat([stack[index : index + 1, keys].softmax(dim=1) for stack in small_stacks], dim=1)
        refined = par(small_image[index : index + 1], scores)
        refined = F.interpolate(refined, size=(height, width), mode="bilinear", align_corners=False)
        high_scores, low_scores = refined[0].split(len(keys))
        with_high.append(keys[high_scores.argmax(dim=0)])
        with_low.append(keys[low_scores.argmax(dim=0)])
    with_high, with_low = torch.stack(with_high), torch.stack(with_low)
    label = with_high.clone()
    label[with_high == 0] = ignore_index
    label[(with_high == 0) & (with_low == 0)] = 0
    if image_box is not None:
        label[~box_mask(image_box, height, width)] = ignore_index
    return label


def par_labels_of_maps(
    par: PixelAdaptiveRefinement,
    image: torch.Tensor,
    maps: torch.Tensor,
    keys: torch.Tensor,
    num_classes: int,
    background_threshold: float,
    downscale: int = 2,
) -> torch.Tensor:
    """Pseudo-mask ``[H, W]`` (0..C, no ignore) of one image for scoring and for DeepLab: the evaluation
    rule's single background threshold, refined by PAR.

    ``image`` is the RGB image in [0, 1] ``[1, 3, H, W]``; ``maps`` ``[k, H, W]`` are the normalised CAMs
    of the present classes with ids ``keys`` (1..C). This is :func:`par_refined_labels` with
    ``low = high = background_threshold``: both stacks agree, so no pixel is left at 255.
    """
    height, width = maps.shape[-2:]
    index = keys.long().to(maps.device) - 1
    cams = maps.new_zeros((1, num_classes, height, width))
    cams[0, index] = maps.float()
    labels = maps.new_zeros((1, num_classes))
    labels[0, index] = 1.0
    return par_refined_labels(
        par, image, cams, labels, background_threshold, background_threshold, None, downscale
    )[0]


@torch.no_grad()
def par_pseudo_mask(
    par: PixelAdaptiveRefinement, model: nn.Module, image: np.ndarray, seeds: SeedMaps, num_classes: int,
    background: float, downscale: int,
) -> np.ndarray:
    """``uint8 [H, W]`` PAR pseudo-mask of one RGB ``uint8`` image from its seed maps, on the model's device
    (ToCo, MCC and AFA export it with :func:`par_labels_of_maps`)."""
    device = next(model.parameters()).device
    label = par_labels_of_maps(
        par.to(device), to_tensor(image).unsqueeze(0).to(device), torch.from_numpy(seeds.maps).to(device),
        torch.from_numpy(seeds.keys), num_classes, background, downscale,
    )
    return label.cpu().numpy().astype(np.uint8)
