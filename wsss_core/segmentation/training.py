"""Training a segmentation network on pseudo-masks (stage ``train_segmentation``): deeplab-pytorch's sample
transform and the training step the shared loop calls (loss: :mod:`wsss_core.losses.segmentation`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from wsss_core.data import transforms
from wsss_core.errors import StoreError
from wsss_core.losses.segmentation import IGNORE_INDEX, segmentation_loss
from wsss_core.segmentation import InputNormalization
from wsss_core.training.progress import TrainingProgress


@dataclass(frozen=True)
class SegmentationSample:
    """deeplab-pytorch's training augmentation of one image and its pseudo-mask: a scale drawn from
    ``scales``, normalisation, a random ``crop_size`` crop that fills what the image does not cover with
    0 (the mean colour, as deeplab-pytorch pads with the mean) and 255 in the mask, and a horizontal flip
    with probability 0.5. Randomness only from ``rng``."""

    crop_size: int
    scales: tuple[float, ...]
    normalization: InputNormalization
    flip: bool = True

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if image.shape[:2] != mask.shape:
            raise StoreError(
                f"pseudo-mask {mask.shape} and image {image.shape[:2]} differ in size; the mask store "
                "belongs to another dataset: re-run the stage that writes it"
            )
        scale = float(self.scales[int(rng.integers(len(self.scales)))])
        height, width = mask.shape
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        if size != (height, width):
            image, mask = transforms.resize(image, size, mask)
        pixels = self.normalization.array(image)
        pixels, mask, _ = transforms.random_crop(pixels, self.crop_size, rng, mask, image_fill=0.0,
                                                 mask_fill=IGNORE_INDEX)
        if self.flip:
            pixels, mask = transforms.horizontal_flip(pixels, rng, mask)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))),
            "mask": torch.from_numpy(mask.astype(np.int64)),
        }


class SegmentationTask:
    """The training step the shared loop calls: logits at stride 8, CE against the resized labels."""

    def training_step(
        self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]:
        return {"loss": segmentation_loss(model(batch["image"]), batch["mask"])}


__all__ = ["SegmentationSample", "SegmentationTask"]
