"""The interface of a pretraining objective and its registry."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from wsss_core.training.progress import TrainingProgress
from wsss_core.registry import Registry
from wsss_core.settings import Settings

OBJECTIVES: Registry[type["PretrainingObjective"]] = Registry("pretraining objective", package="wsss_core.pretraining")


class PretrainingObjective(abc.ABC):
    """Turns a backbone into a trainable model, samples into tensors, and a batch into losses."""

    name: ClassVar[str]
    settings_type: ClassVar[type[Settings]]  # the typed ``objective_args``

    @abc.abstractmethod
    def build_model(self, backbone: nn.Module, feature_dim: int) -> nn.Module:
        """The trainable model around ``backbone`` (whose pooled features have ``feature_dim`` values)."""

    @abc.abstractmethod
    def training_sample(self, image: np.ndarray, label: int, rng: np.random.Generator) -> dict[str, Any]:
        """Tensors of one training example; randomness only from ``rng``."""

    @abc.abstractmethod
    def training_step(self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
                      ) -> dict[str, torch.Tensor]:
        """Losses of one batch; ``"loss"`` is back-propagated."""

    @abc.abstractmethod
    def parameters_to_train(self, model: nn.Module) -> list[nn.Parameter]:
        """What the optimiser updates."""

    @abc.abstractmethod
    def backbone(self, model: nn.Module) -> nn.Module:
        """The backbone whose weights are exported (DINO: the teacher's, as DINO releases)."""

    #: True when the objective clips gradients itself (``before_optimizer_step``, with the recipe's
    #: ``clip_grad_norm``); the training loop's global clipping is then off.
    clips_gradients: ClassVar[bool] = False

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Called once the optimiser exists (DINO's weight-decay schedule writes into its groups)."""

    def finish(self, model: nn.Module, progress: TrainingProgress) -> None:
        """Called once after the last step (DINO: the teacher's last EMA update)."""

    def head_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Classifier tensors exported beside the backbone (supervised only), named ``head.*``."""
        return {}
