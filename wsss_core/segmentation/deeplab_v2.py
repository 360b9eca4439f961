"""DeepLab-V2: ASPP on a dilated ResNet (output stride 8), the segmentation network of CTI's pipeline.

As kazuto1011/deeplab-pytorch (the code RIB and CTI point to):

* backbone: a ResNet whose last two stages are dilated (2, 4) so features have stride 8, created by timm
  (``features_only=True, out_indices=(4,), output_stride=8``). deeplab-pytorch uses the Caffe ResNet-101
  (stride in the 1×1 convolution); timm's is the torchvision layout (stride in the 3×3). Its weights come
  from a local file through timm's ``pretrained_cfg_overlay=dict(file=...)`` (timm ImageNet weights), so
  the input is normalised with ImageNet mean/std; ``normalization: caffe`` (BGR, Caffe mean, no std)
  is there for converted Caffe/DeepLab weights.
* ASPP-V2: four parallel 3×3 convolutions with dilations 6/12/18/24 straight to class logits, summed;
  weights N(0, 0.01), biases 0.
* BatchNorm frozen (``batch_norm: frozen``): every BatchNorm becomes timm's ``FrozenBatchNorm2d`` (fixed
  statistics and affine, no parameters), so it behaves as in eval mode whatever ``model.train()`` says.
  Freezing only makes sense for pretrained statistics: a random-init backbone (the synthetic preset)
  should use ``batch_norm: train``. With random init we also turn off timm's zero-init of each block's
  last BN scale, which a frozen BN would keep at 0, leaving every residual branch dead.
* Parameter groups: backbone ×1, ASPP weights ×10, ASPP biases ×20 without weight decay.

Single-branch training (no multi-scale-input MSC branches as deeplab-pytorch trains): the loss is on the
one full-resolution branch; documented in ``wsss_core.stages.train_segmentation``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
from timm.layers import freeze_batch_norm_2d
from torch import nn

from wsss_core.errors import ConfigError
from wsss_core.models.weights import PretrainedWeights, WeightsCatalog
from wsss_core.segmentation import NORMALIZATIONS, SEGMENTATION_NETWORKS, InputNormalization
from wsss_core.segmentation.settings import SegmentationNetworkSettings, network_settings

LOG = logging.getLogger(__name__)


class ASPPv2(nn.Module):
    """Atrous spatial pyramid pooling of DeepLab-V2: parallel dilated 3×3 convolutions, outputs summed."""

    def __init__(self, in_channels: int, num_labels: int, rates: Sequence[int] = (6, 12, 18, 24)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_labels, 3, padding=rate, dilation=rate, bias=True) for rate in rates
        )
        for branch in self.branches:
            nn.init.normal_(branch.weight, mean=0.0, std=0.01)
            nn.init.zeros_(branch.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([branch(features) for branch in self.branches]).sum(dim=0)


class DeepLabV2(nn.Module):
    """ResNet (output stride 8) + ASPP-V2 → logits at stride 8."""

    output_stride = 8

    def __init__(
        self, backbone: nn.Module, num_labels: int, rates: Sequence[int], normalization: InputNormalization
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.aspp = ASPPv2(backbone.feature_info.channels()[-1], num_labels, rates)
        self.num_labels = num_labels
        self.normalization = normalization

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.aspp(self.backbone(images)[-1])

    def parameter_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """deeplab-pytorch's groups: backbone ×1, ASPP weights ×10, ASPP biases ×20 with no weight decay."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        weights = [branch.weight for branch in self.aspp.branches]
        biases = [branch.bias for branch in self.aspp.branches]
        return [
            {"params": backbone, "lr": base_lr, "name": "backbone"},
            {"params": weights, "lr": 10 * base_lr, "name": "aspp_weights"},
            {"params": biases, "lr": 20 * base_lr, "weight_decay": 0.0, "name": "aspp_biases"},
        ]


def create_dilated_resnet(
    name: str,
    weights: PretrainedWeights | None,
    overrides: Mapping[str, Any] | None = None,
    frozen_batch_norm: bool = True,
) -> nn.Module:
    """A timm ResNet returning its last stage at stride 8, with weights from a local file (or the hub
    when ``weights.use_hub``), or random init when ``weights`` is None."""
    if not timm.is_model(name):
        raise ConfigError(f"stage.backbone '{name}' is not a timm model; use a ResNet name such as resnet101")
    kwargs: dict[str, Any] = dict(features_only=True, out_indices=(4,), output_stride=8)
    for key, value in (overrides or {}).items():
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    if weights is None:
        # timm zero-initialises each block's last BN scale; frozen, that scale would stay 0 forever
        kwargs.setdefault("zero_init_last", False)
        if frozen_batch_norm:
            LOG.warning("stage.batch_norm is frozen on a random-init backbone: BN is then the identity; "
                        "use batch_norm: train when stage.weights is null")
    if weights is not None:
        kwargs["pretrained"] = True
        if weights.path is not None:
            kwargs["pretrained_cfg_overlay"] = dict(file=str(weights.path))
    try:
        backbone = timm.create_model(name, **kwargs)
    except RuntimeError as error:  # state-dict mismatch: the file holds another architecture
        if weights is None:
            raise
        raise ConfigError(
            f"weight file '{weights.path}' (config key weights.files.{weights.key}) does not fit timm "
            f"backbone '{name}': {str(error).splitlines()[0]}; point weights.files.{weights.key} at "
            f"{name} ImageNet weights or change stage.backbone"
        ) from None
    if frozen_batch_norm:
        backbone = freeze_batch_norm_2d(backbone)
    return backbone


@SEGMENTATION_NETWORKS.register("deeplab_v2")
def deeplab_v2(num_labels: int, config: Mapping[str, Any] | SegmentationNetworkSettings,
               weights_catalog: WeightsCatalog) -> DeepLabV2:
    """DeepLab-V2 from the stage config (``SegmentationNetworkSettings``: ``backbone`` (timm ResNet name),
    ``backbone_args`` (timm kwargs, e.g. narrower ``channels`` for the synthetic preset), ``weights`` (key
    or null), ``batch_norm`` (frozen | train), ``normalization`` (imagenet | caffe), ``aspp_rates``)."""
    settings = network_settings("deeplab_v2", config)
    backbone = create_dilated_resnet(
        settings.backbone,  # type: ignore[arg-type]  (the type requires it for deeplab_v2)
        weights_catalog.get(settings.weights),
        settings.backbone_args,
        frozen_batch_norm=settings.batch_norm == "frozen",
    )
    return DeepLabV2(backbone, num_labels, tuple(settings.aspp_rates), NORMALIZATIONS[settings.normalization])
