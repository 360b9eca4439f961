"""timm's RandAugment with Pillow ≥ 11 compatibility.

At the top magnitude (10, reached by ``mstd`` sampling and clipping), timm's increasing posterize asks
to keep 0 bits. Older Pillow, which the authors' code ran on, returned a black image for that; Pillow
≥ 11 raises ``ValueError: bits must be between or equal to 1 and 8``, which would crash a training run
at a random step. ``rand_augment_transform`` installs, once, a posterize op with the old semantics and
otherwise leaves timm's operations and magnitude distribution untouched.
"""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageOps
from timm.data import auto_augment
from timm.data import rand_augment_transform as timm_rand_augment_transform

POSTERIZE_OPS = ("Posterize", "PosterizeIncreasing", "PosterizeOriginal")


def posterize(image: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """Keep the ``bits_to_keep`` most significant bits; 0 bits gives a black image (old Pillow)."""
    if bits_to_keep >= 8:
        return image
    if bits_to_keep <= 0:
        return image.point(lambda _value: 0)
    return ImageOps.posterize(image, bits_to_keep)


def rand_augment_transform(config: str, hparams: dict[str, Any]) -> Any:
    """timm's ``rand_augment_transform(config, hparams)`` with the posterize op above."""
    for name in POSTERIZE_OPS:
        if name in auto_augment.NAME_TO_OP:
            auto_augment.NAME_TO_OP[name] = posterize
    return timm_rand_augment_transform(config, hparams)
