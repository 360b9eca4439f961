"""DINO (Caron et al., ICCV 2021) on the pool, without labels: the stand-in for ECA's frozen DINO ViT-S/8.

The recipe of facebookresearch/dino, scaled to the pool's 64 px images: a student and an EMA teacher
(momentum cosine from ``momentum`` to 1), each a backbone + projection head (3-layer MLP, bottleneck,
l2-normalised weight-normalised last layer with its norm fixed to 1, ``norm_last_layer``); multi-crop
(2 global crops with scale ``global_scale``, ``num_local`` local crops with ``local_scale``; flip, colour
jitter p 0.8, grey p 0.2, Gaussian blur p 1.0 / 0.1 / 0.5 and solarisation p 0.2 on the second global
crop, as DINO's DataAugmentationDINO); the teacher sees only the global crops, its outputs are centred
(centre EMA ``center_momentum``) and sharpened (``teacher_temperature``), the student's are divided by
``student_temperature``; the loss is the cross-entropy between every teacher view and every other
student view; weight decay follows a cosine from ``weight_decay`` to ``weight_decay_end``; the last
layer is frozen during the first ``freeze_last_layer_epochs``: as in the authors' code its gradient is
dropped (``grad = None``), so AdamW neither moves nor decays it. Gradients are clipped parameter by
parameter to the recipe's ``clip_grad_norm`` (the authors' ``clip_gradients``), not by their global norm.
The exported backbone is the teacher's, as DINO releases it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Annotated, Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from wsss_core.data.transforms import color_jitter, horizontal_flip, normalize_to_tensor, random_resized_crop
from wsss_core.losses.dino import dino_loss
from wsss_core.training.progress import TrainingProgress
from wsss_core.pretraining.networks import pooled_features
from wsss_core.pretraining.objectives import OBJECTIVES, PretrainingObjective
from wsss_core.settings import Probability, Settings


Scale = tuple[Annotated[float, Field(ge=0.01, le=1.0)], Annotated[float, Field(ge=0.01, le=1.0)]]
Size = Annotated[int, Field(ge=1, le=1 << 16)]
Temperature = Annotated[float, Field(ge=1e-3, le=10.0)]


class DinoSettings(Settings):
    """``pretraining.backbones.<name>.objective_args`` of the DINO objective (DINO's defaults, scaled)."""

    local_size: Size = 32
    num_local: Annotated[int, Field(ge=0, le=16)] = 4
    global_scale: Scale = (0.4, 1.0)
    local_scale: Scale = (0.05, 0.4)
    out_dim: Size = 1024
    hidden_dim: Size = 256
    bottleneck_dim: Size = 64
    momentum: Probability = 0.996
    teacher_temperature: Temperature = 0.04
    # the authors' teacher-temperature warm-up: linear from warmup_teacher_temperature to teacher_temperature
    # over the first warmup_teacher_temperature_epochs, then constant ("try decreasing it if the training
    # loss does not decrease", main_dino.py)
    warmup_teacher_temperature: Temperature = 0.04
    warmup_teacher_temperature_epochs: Annotated[int, Field(ge=0, le=10_000)] = 0
    student_temperature: Temperature = 0.1
    center_momentum: Probability = 0.9
    weight_decay_end: float = 0.4
    freeze_last_layer_epochs: int = 1
    blur_sigma: tuple[float, float] = (0.03, 0.6)  # DINO's (0.1, 2.0) at 224 px, scaled to 64 px

    def teacher_temperature_at(self, progress: TrainingProgress) -> float:
        """The teacher temperature of this step's epoch, as the authors' schedule gives it:
        ``np.linspace(warmup, final, warmup_epochs)`` over the first epochs, then ``final``."""
        epochs = self.warmup_teacher_temperature_epochs
        if progress.epoch >= epochs:
            return self.teacher_temperature
        fraction = progress.epoch / (epochs - 1) if epochs > 1 else 0.0
        return self.warmup_teacher_temperature + (self.teacher_temperature - self.warmup_teacher_temperature) * fraction


class DinoHead(nn.Module):
    """MLP → bottleneck → l2-normalise → linear layer with unit-norm rows (``norm_last_layer=True``)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, bottleneck_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(features), dim=-1)
        return F.linear(x, F.normalize(self.last_layer.weight, dim=1))


class DinoModel(nn.Module):
    """Student and teacher (backbone + head each) and the teacher's output centre."""

    def __init__(self, backbone: nn.Module, feature_dim: int, settings: DinoSettings) -> None:
        super().__init__()
        self.student = backbone
        self.student_head = DinoHead(feature_dim, settings.out_dim, settings.hidden_dim, settings.bottleneck_dim)
        self.teacher = copy.deepcopy(backbone)
        self.teacher_head = copy.deepcopy(self.student_head)
        for parameter in [*self.teacher.parameters(), *self.teacher_head.parameters()]:
            parameter.requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, settings.out_dim))


@torch.no_grad()
def clip_per_parameter(parameters: list[nn.Parameter], clip: float) -> None:
    """Scale each gradient whose l2 norm exceeds ``clip`` down to ``clip`` (DINO's ``clip_gradients``)."""
    for parameter in parameters:
        if parameter.grad is not None:
            norm = parameter.grad.norm(2)
            coefficient = clip / (norm + 1e-6)
            if coefficient < 1:
                parameter.grad.mul_(coefficient)


def cosine(start: float, end: float, step: int, total: int) -> float:
    """DINO's cosine schedule from ``start`` (step 0) to ``end`` (step ``total``)."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


@OBJECTIVES.register("dino")
class DinoPretraining(PretrainingObjective):
    name = "dino"
    settings_type = DinoSettings

    def __init__(self, recipe: Any, num_classes: int) -> None:
        self.settings = DinoSettings.load(recipe.objective_args, "objective_args")
        self.image_size = recipe.image_size
        self.weight_decay = recipe.weight_decay
        self.clip = recipe.clip_grad_norm
        self._optimizer_groups: list[dict[str, Any]] = []

    clips_gradients = True

    def build_model(self, backbone: nn.Module, feature_dim: int) -> nn.Module:
        return DinoModel(backbone, feature_dim, self.settings)

    # ---------------------------------------------------------------------------------- multi-crop
    def _view(self, image: np.ndarray, size: int, scale: tuple[float, float], blur: float, solarize: float,
              rng: np.random.Generator) -> torch.Tensor:
        view, _ = random_resized_crop(image, size, rng, scale=scale, interpolation="bicubic")
        view, _ = horizontal_flip(view, rng)
        if rng.uniform() < 0.8:
            view = color_jitter(view, rng, 0.4, 0.4, 0.2, 0.1)
        if rng.uniform() < 0.2:
            grey = cv2.cvtColor(view, cv2.COLOR_RGB2GRAY)
            view = np.repeat(grey[..., None], 3, axis=2)
        if rng.uniform() < blur:
            view = cv2.GaussianBlur(view, (0, 0), rng.uniform(*self.settings.blur_sigma))
        if rng.uniform() < solarize:
            view = np.where(view >= 128, 255 - view, view).astype(np.uint8)
        return normalize_to_tensor(view)

    def training_sample(self, image: np.ndarray, label: int, rng: np.random.Generator) -> dict[str, Any]:
        s = self.settings
        globals_ = [self._view(image, self.image_size, s.global_scale, 1.0, 0.0, rng),
                    self._view(image, self.image_size, s.global_scale, 0.1, 0.2, rng)]
        locals_ = [self._view(image, s.local_size, s.local_scale, 0.5, 0.0, rng) for _ in range(s.num_local)]
        sample = {"global": torch.stack(globals_)}
        if locals_:
            sample["local"] = torch.stack(locals_)
        return sample  # no label: DINO is self-supervised

    # ------------------------------------------------------------------------------------ training
    @torch.no_grad()
    def _ema(self, model: DinoModel, momentum: float) -> None:
        for student, teacher in ((model.student, model.teacher), (model.student_head, model.teacher_head)):
            for p_s, p_t in zip(student.parameters(), teacher.parameters()):
                p_t.mul_(momentum).add_(p_s.detach(), alpha=1 - momentum)

    def training_step(self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
                      ) -> dict[str, torch.Tensor]:
        s = self.settings
        if progress.step > 0:  # the EMA update of the previous optimiser step
            self._ema(model, cosine(s.momentum, 1.0, progress.step - 1, progress.total_steps))
        weight_decay = cosine(self.weight_decay, s.weight_decay_end, progress.step, progress.total_steps)
        for group in self._optimizer_groups:
            if group.get("regularized", True):
                group["weight_decay"] = weight_decay
        globals_ = batch["global"]  # [B, 2, 3, G, G]
        global_views = globals_.transpose(0, 1).reshape(-1, *globals_.shape[2:])  # view-major
        with torch.no_grad():
            teacher_out = model.teacher_head(pooled_features(model.teacher, global_views))
        student_out = [model.student_head(pooled_features(model.student, global_views))]
        if "local" in batch:
            local = batch["local"]
            local_views = local.transpose(0, 1).reshape(-1, *local.shape[2:])
            student_out.append(model.student_head(pooled_features(model.student, local_views)))
        student_all = torch.cat(student_out)
        temperature = s.teacher_temperature_at(progress)
        loss = dino_loss(student_all, teacher_out, model.center, 2, s.student_temperature, temperature)
        with torch.no_grad():
            # the targets the loss used: entropy of their mean near 0 = collapse to one dimension (what centring
            # prevents); the mean of each image's own entropy near log(out_dim) = collapse to uniform (what
            # sharpening prevents)
            targets = F.softmax((teacher_out - model.center) / temperature, dim=-1)
            model.center.mul_(s.center_momentum).add_(teacher_out.mean(0, keepdim=True), alpha=1 - s.center_momentum)
            mean = targets.mean(0)
            entropy = -(mean * mean.clamp_min(1e-12).log()).sum()
            sample_entropy = -(targets * targets.clamp_min(1e-12).log()).sum(dim=-1).mean()
        return {"loss": loss, "teacher_entropy": entropy, "teacher_sample_entropy": sample_entropy}

    def before_optimizer_step(self, model: nn.Module, progress: TrainingProgress) -> None:
        """DINO's gradient handling: each student parameter's gradient clipped to ``clip`` (0 = off) by its
        own norm; the head's last layer without a gradient during the first ``freeze_last_layer_epochs``."""
        if self.clip:
            clip_per_parameter([*model.student.parameters(), *model.student_head.parameters()], self.clip)
        if progress.epoch < self.settings.freeze_last_layer_epochs:
            for parameter in model.student_head.last_layer.parameters():
                parameter.grad = None

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """The weight-decay schedule writes into the optimiser's regularised groups."""
        self._optimizer_groups = optimizer.param_groups

    def parameters_to_train(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in [*model.student.parameters(), *model.student_head.parameters()] if p.requires_grad]

    def backbone(self, model: nn.Module) -> nn.Module:
        return model.teacher

    def finish(self, model: nn.Module, progress: TrainingProgress) -> None:
        self._ema(model, cosine(self.settings.momentum, 1.0, progress.step - 1, progress.total_steps))
