"""Segmentation networks trained on pseudo-masks (DeepLab-V2, DeepLab-V1 ResNet-38) and their inference.

The ``SEGMENTATION_NETWORKS`` registry is the only coupling between the networks and the stages. An entry
is a factory ``(num_labels, config, weights_catalog) -> nn.Module`` where ``config`` is the stage config
(``config["stage"]``) and the module

* maps a normalised float batch ``[B, 3, H, W]`` to logits ``[B, num_labels, h, w]`` (stride 8 for the
  DeepLabs; callers resize to the size they need);
* has ``parameter_groups(base_lr) -> list[dict]`` with the per-group lr multipliers and weight decays of
  its recipe (groups without a ``weight_decay`` key use the optimiser's);
* has ``normalization: InputNormalization`` saying how an RGB ``uint8`` image becomes its input, so
  training and inference cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from wsss_core.models.weights import WeightsCatalog
from wsss_core.registry import Registry

NetworkFactory = Callable[[int, Mapping[str, Any], WeightsCatalog], nn.Module]

SEGMENTATION_NETWORKS: Registry[NetworkFactory] = Registry(
    "segmentation network", package="wsss_core.segmentation"
)


@dataclass(frozen=True)
class InputNormalization:
    """``(pixel − mean) / std`` per channel on the 0..255 scale, optionally in BGR order.

    ``mean`` and ``std`` are given in RGB order whatever ``bgr`` says.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool = False

    def array(self, image: np.ndarray) -> np.ndarray:
        """RGB ``[H, W, 3]`` (uint8 or float on the 0..255 scale) → normalised float32 ``[H, W, 3]`` in
        the network's channel order; the mean colour becomes 0."""
        pixels = (image.astype(np.float32) - np.asarray(self.mean, np.float32)) / np.asarray(
            self.std, np.float32
        )
        return np.ascontiguousarray(pixels[..., ::-1] if self.bgr else pixels)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """RGB ``[H, W, 3]`` (uint8 or float on the 0..255 scale) → float32 tensor ``[3, H, W]``."""
        return torch.from_numpy(np.ascontiguousarray(self.array(image).transpose(2, 0, 1)))


# ImageNet statistics of timm/torchvision weights, and the Caffe mean (BGR, no std) of the original
# DeepLab initialisations (deeplab-pytorch subtracts it from BGR images).
NORMALIZATIONS: dict[str, InputNormalization] = {
    "imagenet": InputNormalization((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), bgr=False),
    "caffe": InputNormalization((122.675, 116.669, 104.008), (1.0, 1.0, 1.0), bgr=True),
}


def build_segmentation_network(
    name: str, num_labels: int, config: Mapping[str, Any], weights_catalog: WeightsCatalog
) -> nn.Module:
    """The registered network ``name`` with ``num_labels`` output channels (background + classes)."""
    return SEGMENTATION_NETWORKS.get(name)(num_labels, config, weights_catalog)


def parameter_groups(model: nn.Module, base_lr: float) -> list[dict[str, Any]]:
    """The optimiser parameter groups of a registered network's recipe."""
    return model.parameter_groups(base_lr)  # type: ignore[operator]


__all__ = [
    "NORMALIZATIONS",
    "SEGMENTATION_NETWORKS",
    "InputNormalization",
    "build_segmentation_network",
    "parameter_groups",
]
