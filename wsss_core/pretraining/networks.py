"""Pooled features of any backbone family the synthetic presets use, and the exported state dict.

timm models built with ``num_classes=0`` (ViT, Swin, ResNet) already return pooled features (the class
token for DeiT/ViT, the average for Swin and ResNet); the project's MiT and ResNet-38 return feature
maps, which are averaged here, as their ImageNet classifiers do.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from wsss_core.models.mix_transformer import MixTransformer
from wsss_core.models.resnet38 import ResNet38

FeatureFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]

# Backbone types whose forward is not already a pooled feature vector: (pooling, feature width).
_MAP_BACKBONES: dict[type, tuple[FeatureFn, Callable[[nn.Module], int]]] = {
    MixTransformer: (lambda net, x: net(x).features[-1].mean(dim=(2, 3)), lambda net: net.embed_dims[-1]),
    ResNet38: (lambda net, x: net(x).mean(dim=(2, 3)), lambda net: net.channels["conv6"]),
}


def pooled_features(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``[B, D]`` pooled features of ``images``."""
    for kind, (pool, _) in _MAP_BACKBONES.items():
        if isinstance(backbone, kind):
            return pool(backbone, images)
    return backbone(images)


def feature_dim(backbone: nn.Module) -> int:
    """``D`` of :func:`pooled_features`."""
    for kind, (_, width) in _MAP_BACKBONES.items():
        if isinstance(backbone, kind):
            return int(width(backbone))
    return int(backbone.num_features)


def classifier_name(backbone: nn.Module) -> str:
    """Where a real checkpoint of this backbone keeps its classifier (timm: ``head``, ``head.fc``, ``fc``)."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    return str(cfg.get("classifier") or "head")


class Classifier(nn.Module):
    """Backbone + linear classifier on its pooled features (supervised pretraining)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.backbone, images))
