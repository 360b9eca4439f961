"""Supervised classification on the pool: how the ImageNet checkpoints the papers start from are made
(DeiT/timm recipe, scaled down: random resized crop, flip, colour jitter, label smoothing, AdamW)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from wsss_core.data.transforms import color_jitter, horizontal_flip, normalize_to_tensor, random_resized_crop
from wsss_core.training.progress import TrainingProgress
from wsss_core.pretraining.networks import Classifier
from wsss_core.pretraining.objectives import OBJECTIVES, PretrainingObjective
from wsss_core.settings import Probability, Settings


class SupervisedSettings(Settings):
    """``pretraining.backbones.<name>.objective_args`` of the supervised objective."""

    crop_scale: tuple[Annotated[float, Field(ge=0.01, le=1.0)], Annotated[float, Field(ge=0.01, le=1.0)]] = (0.35, 1.0)
    jitter_probability: Probability = 0.8
    label_smoothing: Annotated[float, Field(ge=0.0, le=0.5)] = 0.1


@OBJECTIVES.register("supervised")
class SupervisedPretraining(PretrainingObjective):
    name = "supervised"
    settings_type = SupervisedSettings

    def __init__(self, recipe: Any, num_classes: int) -> None:
        self.settings = SupervisedSettings.load(recipe.objective_args, "objective_args")
        self.image_size = recipe.image_size
        self.num_classes = num_classes

    def build_model(self, backbone: nn.Module, feature_dim: int) -> nn.Module:
        return Classifier(backbone, feature_dim, self.num_classes)

    def training_sample(self, image: np.ndarray, label: int, rng: np.random.Generator) -> dict[str, Any]:
        image, _ = random_resized_crop(image, self.image_size, rng, scale=self.settings.crop_scale)
        image, _ = horizontal_flip(image, rng)
        if rng.uniform() < self.settings.jitter_probability:
            image = color_jitter(image, rng, 0.3, 0.3, 0.3, 0.02)
        return {"image": normalize_to_tensor(image), "label": torch.tensor(label, dtype=torch.long)}

    def training_step(self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
                      ) -> dict[str, torch.Tensor]:
        logits = model(batch["image"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.settings.label_smoothing)
        accuracy = (logits.argmax(1) == batch["label"]).float().mean()
        return {"loss": loss, "train_top1": accuracy.detach()}

    def parameters_to_train(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def backbone(self, model: nn.Module) -> nn.Module:
        return model.backbone

    def head_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {f"head.{key}": value for key, value in model.head.state_dict().items()}
