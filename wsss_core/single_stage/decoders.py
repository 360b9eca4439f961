"""Heads on the patch-token map of the single-stage ToCo family: LargeFOV decoder, GMP classifier (whose
weights give the CAM), and the DINO-style projector of the class-token contrast with its EMA teacher.

As coded by ToCo/MCC:
* LargeFOV (DeepLab-v1 style, not ASPP): 3×3 conv dilation 5 → 512, ReLU, 3×3 conv dilation 5 → 512,
  ReLU, 1×1 conv → C+1 classes; no biases; PyTorch default init (the authors' ``_init_weights`` is never
  called).
* GMP classifier: global max pooling of the token map, then a bias-free 1×1 conv to C classes; the CAM
  is the same 1×1 conv applied to the map.
* Projector: MLP in → 2048 → 2048 → 256 (GELU, trunc-normal(0.02) init, zero bias), L2 normalisation,
  then a weight-normalised bias-free Linear 256 → 1024 whose magnitude is 1 and frozen; the output is not
  re-normalised. The teacher is a copy updated only by EMA (m = 0.9, no schedule).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class LargeFOV(nn.Module):
    """DeepLab-v1 LargeFOV head: two dilated 3×3 convs and a 1×1 classifier, bias-free."""

    def __init__(self, in_channels: int, num_labels: int, hidden_channels: int = 512, dilation: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.conv2 = nn.Conv2d(hidden_channels, hidden_channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.classifier = nn.Conv2d(hidden_channels, num_labels, 1, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C+1, h, w]`` of the token map ``[B, D, h, w]``."""
        x = F.relu(self.conv1(tokens))
        x = F.relu(self.conv2(x))
        return self.classifier(x)


class GMPClassifier(nn.Module):
    """Global max pooling + bias-free 1×1 conv; its weight applied densely is the CAM."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 1, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Image logits ``[B, C]``."""
        return self.conv(F.adaptive_max_pool2d(tokens, 1)).flatten(1)

    def cam(self, tokens: torch.Tensor) -> torch.Tensor:
        """Class activation map ``[B, C, h, w]`` (no ReLU)."""
        return F.conv2d(tokens, self.conv.weight)


class Projector(nn.Module):
    """DINO head: MLP → L2 normalisation → weight-normalised linear with frozen unit magnitude."""

    def __init__(
        self, in_dim: int, out_dim: int = 1024, hidden_dim: int = 2048, bottleneck_dim: int = 256, num_layers: int = 3
    ) -> None:
        super().__init__()
        dims: Sequence[int] = [in_dim] + [hidden_dim] * (num_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for index, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            if index:
                layers.append(nn.GELU())
            layers.append(nn.Linear(fan_in, fan_out))
        self.mlp = nn.Sequential(*layers)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        magnitude.data.fill_(1.0)
        magnitude.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of ``student`` (same initial weights) to be updated by EMA only."""
    teacher = copy.deepcopy(student)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """θ_teacher ← m·θ_teacher + (1 − m)·θ_student over the parameters, in order."""
    for teacher_parameter, student_parameter in zip(teacher.parameters(), student.parameters()):
        teacher_parameter.mul_(momentum).add_(student_parameter.detach(), alpha=1.0 - momentum)
