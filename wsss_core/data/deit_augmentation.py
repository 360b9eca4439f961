"""DeiT's training augmentation (timm ``create_transform``: RandomResizedCrop, flip, RandAugment,
random erasing) on one RGB image, every random draw taken from an explicit ``rng``.

MCTformer trains with it and CTI builds its weak and strong views from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from timm.data.random_erasing import RandomErasing

from wsss_core.data.rand_augment import rand_augment_transform
from wsss_core.data.transforms import IMAGENET_MEAN, normalize_to_tensor, random_resized_crop_box
from wsss_core.utils.seeding import seeded_global_generators


@dataclass(frozen=True)
class DeitAugmentation:
    """DeiT's training augmentation on one RGB image, with every random draw from ``rng``."""

    crop_size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    rand_augment: str | None = "rand-m9-mstd0.5-inc1"
    random_erasing: float = 0.25

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        height, width = image.shape[:2]
        box = random_resized_crop_box(height, width, self.scale, self.ratio, rng)
        top, left, crop_height, crop_width = box
        picture = Image.fromarray(image).resize(
            (self.crop_size, self.crop_size), Image.BICUBIC,
            box=(left, top, left + crop_width, top + crop_height),
        )
        if self.flip and rng.random() < 0.5:
            picture = picture.transpose(Image.FLIP_LEFT_RIGHT)
        if self.rand_augment:
            hparams = {
                "translate_const": int(self.crop_size * 0.45),
                "img_mean": tuple(round(255 * value) for value in IMAGENET_MEAN),
                "interpolation": Image.BICUBIC,  # timm create_transform passes the train interpolation
            }
            with seeded_global_generators(rng):
                picture = rand_augment_transform(self.rand_augment, hparams)(picture)
        tensor = normalize_to_tensor(np.asarray(picture))
        if self.random_erasing > 0:
            eraser = RandomErasing(probability=self.random_erasing, mode="pixel", max_count=1, device="cpu")
            with seeded_global_generators(rng), torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(rng.integers(2**62)))
                tensor = eraser(tensor)
        return tensor
