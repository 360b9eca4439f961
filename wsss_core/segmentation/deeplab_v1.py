"""DeepLab-V1 (LargeFOV) on ResNet-38: MCTformer's segmentation network (``seg/network/resnet38_seg.py``).

* Backbone: :class:`wsss_core.models.resnet38.ResNet38` (output stride 8, the same network PSA's
  AffinityNet uses), BatchNorm frozen and ``conv1a`` frozen as in the authors' base class.
* Head: 3×3 convolution with dilation 12 to 512 channels + ReLU, then 3×3 dilation 12 to the class
  logits, both with bias, weights Xavier-uniform.
* Parameter groups: backbone ×1, head ×10 (MCTformer: lr 7e-4 / 7e-3). The authors' poly optimiser
  passes its weight decay into SGD's momentum slot, so they train with neither (G19); the proposed
  preset therefore sets ``momentum: 0`` and ``weight_decay: 0``.
* Input: ImageNet mean/std normalisation of RGB images.
* Initialisation: a converted ResNet-38 state dict from ``weights.files.<weights>`` — the authors start
  from PSA's VOC-classification ``res38_cls`` (not comparable with ImageNet-initialised DeepLab-V2,
  G17); the ImageNet ``ilsvrc-cls_rna-a1`` conversion fits the same key names.

Test-time recipe (MCTformer ``seg/infer_seg.py``), to be set in the inference stage's config: scales
0.5/0.75/1.0/1.25/1.5, no flip, pixelwise max fusion, CRF with Gaussian sxy 4 / compat 3 and bilateral
sxy 83 / srgb 5 / compat 3, 10 iterations (``INFERENCE_DEFAULTS``). The authors take the maximum of the
per-scale softmax probabilities; the shared inference takes the softmax of the maximum logits — the
same argmax whenever one scale dominates, documented in ``wsss_core.segmentation.inference``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wsss_core.models.resnet38 import ResNet38, create_resnet38
from wsss_core.models.weights import WeightsCatalog
from wsss_core.refine.crf import CRFParams
from wsss_core.segmentation import NORMALIZATIONS, SEGMENTATION_NETWORKS
from wsss_core.segmentation.settings import SegmentationNetworkSettings, network_settings

INFERENCE_DEFAULTS: dict[str, Any] = {
    "scales": (0.5, 0.75, 1.0, 1.25, 1.5),
    "flip": False,
    "fuse": "max",
    "crf": CRFParams(iterations=10, gaussian_sxy=4, gaussian_compat=3, bilateral_sxy=83, bilateral_srgb=5,
                     bilateral_compat=3),
}


class DeepLabV1ResNet38(nn.Module):
    """ResNet-38 + LargeFOV head → logits ``[B, num_labels, H/8, W/8]``."""

    output_stride = 8

    def __init__(self, backbone: ResNet38, num_labels: int, head_channels: int = 512, dilation: int = 12) -> None:
        super().__init__()
        self.backbone = backbone
        self.head_conv1 = nn.Conv2d(backbone.channels["conv6"], head_channels, 3, padding=dilation, dilation=dilation)
        self.head_conv2 = nn.Conv2d(head_channels, num_labels, 3, padding=dilation, dilation=dilation)
        for conv in (self.head_conv1, self.head_conv2):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.num_labels = num_labels
        self.normalization = NORMALIZATIONS["imagenet"]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head_conv2(F.relu(self.head_conv1(self.backbone(images))))

    def parameter_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Backbone ×1, LargeFOV head ×10 (trainable parameters only)."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        head = [p for name, p in self.named_parameters() if name.startswith("head_")]
        return [{"params": backbone, "lr": base_lr, "name": "backbone"},
                {"params": head, "lr": 10 * base_lr, "name": "head"}]


@SEGMENTATION_NETWORKS.register("deeplab_v1_resnet38")
def deeplab_v1_resnet38(num_labels: int, config: Mapping[str, Any] | SegmentationNetworkSettings,
                        weights_catalog: WeightsCatalog) -> DeepLabV1ResNet38:
    """From the stage config (``SegmentationNetworkSettings``): ``weights`` (key of a converted ResNet-38 file, or null), ``width`` (1.0 =
    the published network; smaller for the synthetic preset), ``batch_norm`` (frozen | train),
    ``frozen_stages`` (default ``[conv1a]``). The head's 512 channels scale with ``width`` too."""
    settings = network_settings("deeplab_v1_resnet38", config)
    backbone = create_resnet38(
        weights_catalog.get(settings.weights), width=settings.width,
        freeze_batch_norm=settings.batch_norm == "frozen", frozen_stages=tuple(settings.frozen_stages),
    )
    return DeepLabV1ResNet38(backbone, num_labels, head_channels=max(8, round(512 * settings.width)))
