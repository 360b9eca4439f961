"""The few augmentations WSSS needs, as numpy/cv2 functions with an explicit ``rng``.

Randomness comes only from the ``numpy.random.Generator`` passed in (``sample_rng(seed, epoch, index)``
in the datasets), so a sample's augmentation is the same whatever the number of DataLoader workers.
Images are RGB ``uint8 [H, W, 3]``; masks ``uint8 [H, W]`` (255 = ignore) and are always resized with
nearest neighbour. The recipes follow IRN/PSA (random long-side resize, crop with ignore fill and the
valid box) and timm (RandomResizedCrop, colour jitter as in torchvision: brightness, contrast,
saturation, hue in that fixed order). The last section holds the ToCo family's views on torch tensors
(ToCo, MCC, AFA, ECA), moved here from ``methods/toco.py`` so that no method imports another for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF

from wsss_core.data.classes import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}

Box = tuple[int, int, int, int]  # (top, bottom, left, right) of the valid image region inside a crop


def resize(image: np.ndarray, size: tuple[int, int], mask: np.ndarray | None = None,
           interpolation: str = "bilinear") -> tuple[np.ndarray, np.ndarray | None]:
    """``image`` (and ``mask``, nearest) resized to ``size`` = (height, width)."""
    height, width = size
    resized = cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[interpolation])
    if image.ndim == 3 and resized.ndim == 2:
        resized = resized[..., None]
    resized_mask = None if mask is None else cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    return resized, resized_mask


def random_rescale(image: np.ndarray, scale_range: tuple[float, float], rng: np.random.Generator,
                   mask: np.ndarray | None = None, interpolation: str = "bilinear"
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Scale both sides by one factor drawn uniformly from ``scale_range`` (DeepLab/PSA rescale)."""
    scale = rng.uniform(*scale_range)
    height, width = image.shape[:2]
    return resize(image, (max(1, round(height * scale)), max(1, round(width * scale))), mask, interpolation)


def random_long_side_resize(image: np.ndarray, long_side_range: tuple[int, int], rng: np.random.Generator,
                            mask: np.ndarray | None = None, interpolation: str = "bilinear"
                            ) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize so the long side is an integer drawn uniformly from ``long_side_range`` (inclusive), as
    IRN/PSA's ``random_resize_long``."""
    target = int(rng.integers(long_side_range[0], long_side_range[1] + 1))
    height, width = image.shape[:2]
    scale = target / max(height, width)
    return resize(image, (max(1, round(height * scale)), max(1, round(width * scale))), mask, interpolation)


def random_crop(image: np.ndarray, crop_size: int, rng: np.random.Generator, mask: np.ndarray | None = None,
                image_fill: float = 0, mask_fill: int = IGNORE_INDEX
                ) -> tuple[np.ndarray, np.ndarray | None, Box]:
    """A ``crop_size`` square at a random place. A side shorter than the crop is placed at a random
    offset inside it and the rest filled (image ``image_fill``, mask ``mask_fill``). Returns the crop,
    the mask crop and the valid box ``(top, bottom, left, right)`` inside the crop (IRN's ``img_box``)."""
    height, width = image.shape[:2]

    def placement(length: int) -> tuple[int, int, int]:
        """(offset in the crop, offset in the image, copied length) along one axis."""
        space = length - crop_size
        if space > 0:
            return 0, int(rng.integers(0, space + 1)), crop_size
        return int(rng.integers(0, -space + 1)), 0, length

    crop_top, image_top, copy_height = placement(height)
    crop_left, image_left, copy_width = placement(width)
    cropped = np.full((crop_size, crop_size) + image.shape[2:], image_fill, dtype=image.dtype)
    cropped[crop_top:crop_top + copy_height, crop_left:crop_left + copy_width] = \
        image[image_top:image_top + copy_height, image_left:image_left + copy_width]
    cropped_mask = None
    if mask is not None:
        cropped_mask = np.full((crop_size, crop_size), mask_fill, dtype=mask.dtype)
        cropped_mask[crop_top:crop_top + copy_height, crop_left:crop_left + copy_width] = \
            mask[image_top:image_top + copy_height, image_left:image_left + copy_width]
    return cropped, cropped_mask, (crop_top, crop_top + copy_height, crop_left, crop_left + copy_width)


def horizontal_flip(image: np.ndarray, rng: np.random.Generator, mask: np.ndarray | None = None,
                    probability: float = 0.5) -> tuple[np.ndarray, np.ndarray | None]:
    """Mirror left-right with ``probability``."""
    if rng.uniform() < probability:
        return np.ascontiguousarray(image[:, ::-1]), None if mask is None else np.ascontiguousarray(mask[:, ::-1])
    return image, mask


def normalize_to_tensor(image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
                        std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """``uint8 [H, W, 3]`` → ``float32 [3, H, W]``: ``(image / 255 - mean) / std``."""
    scaled = image.astype(np.float32) / 255.0
    normalized = (scaled - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(normalized.transpose(2, 0, 1)))


def random_resized_crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                            rng: np.random.Generator, attempts: int = 10) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) as timm's RandomResizedCrop draws it: area fraction from
    ``scale``, log-uniform aspect from ``ratio``, 10 attempts, then a centre crop at the clamped ratio."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_width = int(round(math.sqrt(target_area * aspect)))
        crop_height = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(rng.integers(0, height - crop_height + 1))
            left = int(rng.integers(0, width - crop_width + 1))
            return top, left, crop_height, crop_width
    in_ratio = width / height
    if in_ratio < min(ratio):
        crop_width, crop_height = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        crop_height, crop_width = height, int(round(height * max(ratio)))
    else:
        crop_width, crop_height = width, height
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator,
                        scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        mask: np.ndarray | None = None, interpolation: str = "bilinear"
                        ) -> tuple[np.ndarray, np.ndarray | None]:
    """timm-like RandomResizedCrop to a ``size`` square (CTI: scale (0.3, 1.2), bicubic)."""
    top, left, crop_height, crop_width = random_resized_crop_box(*image.shape[:2], scale, ratio, rng)
    window = image[top:top + crop_height, left:left + crop_width]
    window_mask = None if mask is None else mask[top:top + crop_height, left:left + crop_width]
    return resize(window, (size, size), window_mask, interpolation)


def adjust_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """``image × factor`` (torchvision's brightness)."""
    return np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def _grey(image: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, float32 [H, W] (torchvision's rgb_to_grayscale)."""
    return image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the mean grey level: ``mean + factor × (image − mean)``."""
    mean = float(_grey(image).mean())
    return np.clip(mean + factor * (image.astype(np.float32) - mean), 0, 255).astype(np.uint8)


def adjust_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the grey image: ``grey + factor × (image − grey)`` (0 gives grey)."""
    grey = _grey(image)[..., None]
    return np.clip(grey + factor * (image.astype(np.float32) - grey), 0, 255).astype(np.uint8)


def adjust_hue(image: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue by ``shift`` turns (−0.5..0.5) in HSV space."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(shift * 256))) % 256).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def color_jitter(image: np.ndarray, rng: np.random.Generator, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, hue: float = 0.0) -> np.ndarray:
    """Random brightness, contrast, saturation factors in ``[1 − x, 1 + x]`` and a hue shift in
    ``[−hue, hue]``, applied in that order (a zero strength leaves that property untouched)."""
    if brightness:
        image = adjust_brightness(image, rng.uniform(max(0.0, 1 - brightness), 1 + brightness))
    if contrast:
        image = adjust_contrast(image, rng.uniform(max(0.0, 1 - contrast), 1 + contrast))
    if saturation:
        image = adjust_saturation(image, rng.uniform(max(0.0, 1 - saturation), 1 + saturation))
    if hue:
        image = adjust_hue(image, rng.uniform(-hue, hue))
    return image


def irn_training_crop(
    image: np.ndarray,
    long_side_range: tuple[int, int],
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    rng: np.random.Generator,
    interpolation: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """IRN/AdvCAM augmentation (what SWTformer cites): random long side (``interpolation``: IRN itself
    resizes bicubically), horizontal flip, normalise, random crop with zero fill. Returns the crop
    ``[3, S, S]`` and the valid-region mask ``[S, S]`` (1 where image pixels landed; SIPE's ``valid_mask``)."""
    image, _ = random_long_side_resize(image, long_side_range, rng, interpolation=interpolation)
    image, _ = horizontal_flip(image, rng)
    normalized = normalize_to_tensor(image, mean, std).permute(1, 2, 0).numpy()
    crop, _, (top, bottom, left, right) = random_crop(normalized, crop_size, rng, image_fill=0.0)
    valid = torch.zeros((crop_size, crop_size))
    valid[top:bottom, left:right] = 1.0
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))), valid


# ------------------------------------------------------------------- the ToCo family's views (torch)
# ToCo's training views, as the authors code them (shared by ToCo, MCC, AFA and ECA). They differ on
# purpose from the numpy functions above: ``random_resized_crop_bicubic`` keeps the whole image when its
# 10 draws miss, ``color_jitter_tensor`` applies the four jitters in a random order.
def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB ``uint8 [H, W, 3]`` → float ``[3, H, W]`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0


def normalize(image: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of ``[..., 3, H, W]`` in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return (image - mean) / std


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`, clamped to [0, 1] (the image PAR sees)."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return (image * std + mean).clamp(0.0, 1.0)


def random_rescale_image(image: np.ndarray, scale_range: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Bilinear rescale by a factor uniform in ``scale_range`` (:func:`random_rescale`, image only)."""
    return random_rescale(image, tuple(scale_range), rng)[0]


def random_crop_with_box(
    image: np.ndarray, crop_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A ``crop_size`` square crop, zero-padding a smaller image at a random offset first; returns the
    crop and its valid box (top, bottom, left, right), ends exclusive."""
    height, width = image.shape[:2]
    padded_height, padded_width = max(crop_size, height), max(crop_size, width)
    pad_top = int(rng.integers(padded_height - height + 1))
    pad_left = int(rng.integers(padded_width - width + 1))
    padded = np.zeros((padded_height, padded_width, 3), dtype=image.dtype)
    padded[pad_top : pad_top + height, pad_left : pad_left + width] = image
    top = int(rng.integers(padded_height - crop_size + 1))
    left = int(rng.integers(padded_width - crop_size + 1))
    crop = padded[top : top + crop_size, left : left + crop_size]
    box = np.array(
        [
            max(pad_top - top, 0), min(pad_top + height - top, crop_size),
            max(pad_left - left, 0), min(pad_left + width - left, crop_size),
        ],
        dtype=np.int64,
    )
    return crop, box


def random_resized_crop_bicubic(
    image: np.ndarray,
    size: int,
    scale: Sequence[float],
    rng: np.random.Generator,
    ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """torchvision's RandomResizedCrop (area in ``scale``, log-uniform aspect ratio, bicubic)."""
    height, width = image.shape[:2]
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
        crop_w, crop_h = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top, left = int(rng.integers(height - crop_h + 1)), int(rng.integers(width - crop_w + 1))
            break
    else:  # central crop at the nearest allowed ratio
        crop_h, crop_w = height, width
        top = left = 0
    patch = image[top : top + crop_h, left : left + crop_w]
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_CUBIC)


def color_jitter_tensor(
    image: torch.Tensor, rng: np.random.Generator, brightness: float = 0.4, contrast: float = 0.4,
    saturation: float = 0.2, hue: float = 0.1,
) -> torch.Tensor:
    """torchvision ColorJitter on ``[3, H, W]`` in [0, 1], factors and order drawn from ``rng``."""
    factors = [
        rng.uniform(1 - brightness, 1 + brightness), rng.uniform(1 - contrast, 1 + contrast),
        rng.uniform(1 - saturation, 1 + saturation), rng.uniform(-hue, hue),
    ]
    operations = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for index in rng.permutation(4):
        image = operations[index](image, float(factors[index]))
    return image


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``[3, H, W]`` with standard deviation ``sigma`` pixels (PIL-like radius)."""
    array = image.permute(1, 2, 0).numpy()
    blurred = cv2.GaussianBlur(array, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    return torch.from_numpy(np.ascontiguousarray(blurred)).permute(2, 0, 1)


def photometric_view(
    image: np.ndarray, rng: np.random.Generator, blur_probability: float, solarize_probability: float = 0.0
) -> tuple[torch.Tensor, bool]:
    """The authors' DINO-style view: flip, jitter (p 0.8), grayscale (p 0.2), blur, solarize,
    normalisation. Returns the view and whether it was flipped."""
    view = to_tensor(image)
    flipped = bool(rng.random() < 0.5)
    if flipped:
        view = view.flip(-1)
    if rng.random() < 0.8:
        view = color_jitter_tensor(view, rng)
    if rng.random() < 0.2:
        view = TF.rgb_to_grayscale(view, num_output_channels=3)
    if rng.random() < blur_probability:
        view = gaussian_blur(view, float(rng.uniform(0.1, 2.0)))
    if rng.random() < solarize_probability:
        view = torch.where(view >= 0.5, 1.0 - view, view)
    return normalize(view.clamp(0.0, 1.0)), flipped
