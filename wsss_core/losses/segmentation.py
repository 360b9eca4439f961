"""The segmentation network's training loss (stage ``train_segmentation``; deeplab-pytorch's recipe):
cross-entropy ignoring 255 against the pseudo-masks resized by nearest neighbour to the logits' size."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of label maps ``[B, H, W]`` to ``size`` (pixel-centre sampling, as PIL's
    nearest that deeplab-pytorch uses), keeping 255."""
    resized = F.interpolate(labels[:, None].float(), size=size, mode="nearest-exact")
    return resized[:, 0].long()


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the non-ignored pixels of labels resized to the logits; 0 (not NaN)
    when a batch has no labelled pixel."""
    targets = resize_labels(labels, tuple(logits.shape[-2:]))
    valid = (targets != IGNORE_INDEX).sum()
    total = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / valid.clamp(min=1)


__all__ = ["IGNORE_INDEX", "resize_labels", "segmentation_loss"]
