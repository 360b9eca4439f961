"""ResNet-38 ("model A1" of Wu, Shen & van den Hengel, *Wider or Deeper*, 2016) at output stride 8.

The wide pre-activation ResNet that PSA's AffinityNet and MCTformer's DeepLab-V1 use, written from the
paper's description and the layout of the published converted weights:

* ``conv1a``: 3×3 convolution, 3 → 64, stride 1 (no bias).
* Pre-activation residual blocks ``b2`` (×3, 128 ch, first stride 2), ``b3`` (×3, 256, stride 2),
  ``b4`` (×6, 512, stride 2): BN-ReLU → 3×3 → BN-ReLU → 3×3, the shortcut a 1×1 convolution on the
  activated input when the shape changes.
* ``b5`` (×3, 1024, mid 512) with dilation 2 (the first block's first convolution undilated),
  ``b6`` (2048) and ``b7`` (4096): bottleneck blocks 1×1 → 3×3 (dilation 4) → 1×1 with channel widths
  out/4, out/2, out and 2-D dropout 0.3 / 0.5 before the inner convolutions; then ``bn7`` + ReLU.
* Output stride 8 (the dilations replace the strides of model A1's last stages).

:meth:`ResNet38.forward_features` returns the maps PSA reads: ``conv3`` (256 ch, stride 4), ``conv4``
(512, stride 8: the activated input of ``b5``), ``conv5`` (1024: the activated input of ``b6``) and
``conv6`` (4096: ``relu(bn7(b7))``). Parameter names follow the converted MXNet weights
(``b4_3.conv_branch2b1.weight``, ``bn7.running_mean``...), so a converted ``.pth``/``.safetensors``
state dict (ImageNet ``ilsvrc-cls_rna-a1_cls1000_ep-0001`` or PSA's ``res38_cls``) loads directly;
keys of other heads (``fc8``...) are ignored and listed in the log.

Training as PSA: BatchNorm frozen (eval statistics, no affine gradients) and ``conv1a``, ``b2``, ``b2_1``,
``b2_2`` frozen (``frozen_stages``). ``width`` scales every channel count for tiny random-init variants
(tests and the synthetic preset); ``width=1`` is the published network.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from wsss_core.errors import ConfigError, InputError
from wsss_core.models.backbones import BACKBONES
from wsss_core.models.weights import PretrainedWeights

LOG = logging.getLogger(__name__)

PSA_FROZEN_STAGES = ("conv1a", "b2", "b2_1", "b2_2")
STAGE_NAMES = (
    "conv1a", "b2", "b2_1", "b2_2", "b3", "b3_1", "b3_2", "b4", "b4_1", "b4_2", "b4_3", "b4_4", "b4_5",
    "b5", "b5_1", "b5_2", "b6", "b7",
)


class ResNet38WeightsError(InputError):
    """A ResNet-38 weight file cannot be read or does not hold a ResNet-38 of this width."""


class ResidualBlock(nn.Module):
    """Pre-activation block: BN-ReLU → 3×3 (stride, first dilation) → BN-ReLU → 3×3 (dilation)."""

    def __init__(
        self, in_channels: int, mid_channels: int, out_channels: int, stride: int = 1,
        dilation: int = 1, first_dilation: int | None = None,
    ) -> None:
        super().__init__()
        first_dilation = dilation if first_dilation is None else first_dilation
        self.same_shape = in_channels == out_channels and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, mid_channels, 3, stride, padding=first_dilation,
                                       dilation=first_dilation, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(mid_channels)
        self.conv_branch2b1 = nn.Conv2d(mid_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(output, activated input)``; PSA reads the latter as a feature map."""
        activated = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(activated)
        branch = self.conv_branch2a(activated)
        branch = self.conv_branch2b1(F.relu(self.bn_branch2b1(branch)))
        return shortcut + branch, activated


class BottleneckBlock(nn.Module):
    """Pre-activation bottleneck: BN-ReLU → 1×1 (out/4) → BN-ReLU-dropout → 3×3 (out/2, dilated)
    → BN-ReLU-dropout → 1×1 (out); shortcut 1×1 on the activated input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, out_channels // 4, 1, stride, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(out_channels // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(out_channels // 4, out_channels // 2, 3, padding=dilation,
                                        dilation=dilation, bias=False)
        self.bn_branch2b2 = nn.BatchNorm2d(out_channels // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(out_channels // 2, out_channels, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        activated = F.relu(self.bn_branch2a(x))
        shortcut = self.conv_branch1(activated)
        branch = self.conv_branch2a(activated)
        branch = self.dropout_2b1(F.relu(self.bn_branch2b1(branch)))
        branch = self.conv_branch2b1(branch)
        branch = self.dropout_2b2(F.relu(self.bn_branch2b2(branch)))
        return shortcut + self.conv_branch2b2(branch), activated


class ResNet38(nn.Module):
    """ResNet-38 (model A1) at output stride 8; see the module docstring."""

    output_stride = 8

    def __init__(self, width: float = 1.0, freeze_batch_norm: bool = True,
                 frozen_stages: Sequence[str] = PSA_FROZEN_STAGES) -> None:
        super().__init__()
        unknown = sorted(set(frozen_stages) - set(STAGE_NAMES))
        if unknown:
            raise ConfigError(f"frozen_stages names unknown ResNet-38 stages {unknown}; known: {', '.join(STAGE_NAMES)}")

        def channels(count: int) -> int:
            return max(4, int(round(count * width)))

        c64, c128, c256, c512, c1024, c2048, c4096 = (channels(c) for c in (64, 128, 256, 512, 1024, 2048, 4096))
        self.conv1a = nn.Conv2d(3, c64, 3, padding=1, bias=False)
        self.b2 = ResidualBlock(c64, c128, c128, stride=2)
        self.b2_1 = ResidualBlock(c128, c128, c128)
        self.b2_2 = ResidualBlock(c128, c128, c128)
        self.b3 = ResidualBlock(c128, c256, c256, stride=2)
        self.b3_1 = ResidualBlock(c256, c256, c256)
        self.b3_2 = ResidualBlock(c256, c256, c256)
        self.b4 = ResidualBlock(c256, c512, c512, stride=2)
        for index in range(1, 6):
            setattr(self, f"b4_{index}", ResidualBlock(c512, c512, c512))
        self.b5 = ResidualBlock(c512, c512, c1024, dilation=2, first_dilation=1)
        self.b5_1 = ResidualBlock(c1024, c512, c1024, dilation=2)
        self.b5_2 = ResidualBlock(c1024, c512, c1024, dilation=2)
        self.b6 = BottleneckBlock(c1024, c2048, dilation=4, dropout=0.3)
        self.b7 = BottleneckBlock(c2048, c4096, dilation=4, dropout=0.5)
        self.bn7 = nn.BatchNorm2d(c4096)
        self.channels = {"conv3": c256, "conv4": c512, "conv5": c1024, "conv6": c4096}
        self.freeze_batch_norm = freeze_batch_norm
        self.frozen_stages = tuple(frozen_stages)
        for name in self.frozen_stages:
            getattr(self, name).requires_grad_(False)
        if freeze_batch_norm:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.requires_grad_(False)

    def train(self, mode: bool = True) -> "ResNet38":
        super().train(mode)
        if self.freeze_batch_norm:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``conv3`` (stride 4), ``conv4``, ``conv5``, ``conv6`` (stride 8) of normalised images."""
        x = self.conv1a(images)
        for name in ("b2", "b2_1", "b2_2", "b3", "b3_1", "b3_2"):
            x, _ = getattr(self, name)(x)
        x, conv3 = self.b4(x)
        for index in range(1, 6):
            x, _ = getattr(self, f"b4_{index}")(x)
        x, conv4 = self.b5(x)
        x, _ = self.b5_1(x)
        x, _ = self.b5_2(x)
        x, conv5 = self.b6(x)
        x, _ = self.b7(x)
        conv6 = F.relu(self.bn7(x))
        return {"conv3": conv3, "conv4": conv4, "conv5": conv5, "conv6": conv6}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The last feature map ``conv6`` ``[B, 4096·width, H/8, W/8]``."""
        return self.forward_features(images)["conv6"]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (a bare dict, or under ``state_dict``/``model``),
    with DataParallel ``module.`` prefixes removed."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unreadable or not a tensor file
        raise ResNet38WeightsError(f"cannot read ResNet-38 weights '{path}': {error}; convert them to a "
                                   "state dict (.pth or .safetensors) and point the weights key at it") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    return {key.removeprefix("module."): value for key, value in state.items() if isinstance(value, torch.Tensor)}


def load_resnet38_weights(model: ResNet38, weights: PretrainedWeights) -> None:
    """Load a converted state dict into ``model``; every backbone tensor must be present with its shape."""
    if weights.path is None:
        raise ResNet38WeightsError(
            f"ResNet-38 is not on any hub: set weights.files.{weights.key} to a converted local state dict"
        )
    state = read_state_dict(weights.path)
    own = model.state_dict()
    missing = [key for key in own if key not in state and not key.endswith("num_batches_tracked")]
    wrong = [key for key in own if key in state and state[key].shape != own[key].shape]
    if missing or wrong:
        raise ResNet38WeightsError(
            f"'{weights.path}' (weights.files.{weights.key}) is not a ResNet-38 of this width: "
            f"{len(missing)} tensors missing (first: {missing[:3]}), {len(wrong)} of another shape "
            f"(first: {wrong[:3]}); convert the MXNet/PSA weights with the published parameter names"
        )
    ignored = sorted(key for key in state if key not in own)
    if ignored:
        LOG.info("ResNet-38 weights %s: ignoring %d head tensors (%s...)", weights.path, len(ignored), ignored[:4])
    model.load_state_dict({key: state[key] for key in own if key in state}, strict=False)


def create_resnet38(weights: PretrainedWeights | None = None, width: float = 1.0, freeze_batch_norm: bool = True,
                    frozen_stages: Sequence[str] = PSA_FROZEN_STAGES) -> ResNet38:
    """ResNet-38 with weights from a local file, or random init when ``weights`` is None."""
    model = ResNet38(width=width, freeze_batch_norm=freeze_batch_norm, frozen_stages=frozen_stages)
    if weights is not None:
        load_resnet38_weights(model, weights)
    return model


@BACKBONES.register("resnet38")
def resnet38(weights: PretrainedWeights | None = None, **overrides: Any) -> ResNet38:
    """ResNet-38 (PSA, DeepLab-V1) by name, for stages that build backbones from the registry
    (pretraining): ``width``, ``freeze_batch_norm``, ``frozen_stages`` as :func:`create_resnet38`."""
    return create_resnet38(weights, **overrides)
