"""One backbone's pretraining recipe (``pretraining.backbones.<name>``): typed, every default here only.

``log_every`` is a run-time key of the section (how the job logs, not what it computes:
``wsss_core.runtime``): the recipe type does not declare it, ``runtime.check`` checks it and the stage
reads it from ``--runtime``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from torch import nn

from wsss_core.errors import ConfigError
from wsss_core.models.backbones import create_backbone
from wsss_core.pretraining.initialisation import apply_init
from wsss_core.pretraining.objectives import OBJECTIVES, PretrainingObjective
from wsss_core.settings import NonNegativeInt, Settings


class Recipe(Settings):
    """One ``pretraining.backbones.<name>`` entry; every default is here and only here."""

    backbone: Annotated[str, Field(min_length=1)]  # a registered backbone, e.g. vit_synth
    backbone_args: dict[str, Any] = {}
    objective: str = "supervised"
    objective_args: dict[str, Any] = {}  # checked by the objective's settings_type (check_arguments)
    # initialisers applied to the fresh backbone, in order (wsss_core.pretraining.initialisation), e.g.
    # {mimetic_attention: {}, sincos_position_embedding: {}}; empty = the backbone's own initialisation
    init: dict[str, dict[str, Any]] = {}
    image_size: Annotated[int, Field(ge=16, le=4096)] = 64
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 10
    batch_size: Annotated[int, Field(ge=1, le=1 << 16)] = 128
    lr: Annotated[float, Field(ge=1e-8, le=10.0)] = 1.0e-3
    min_lr: Annotated[float, Field(ge=0.0)] = 1.0e-5  # <= lr
    weight_decay: Annotated[float, Field(ge=0.0, le=10.0)] = 0.05
    warmup_epochs: NonNegativeInt = 1  # <= epochs - 1
    clip_grad_norm: Annotated[float, Field(ge=0.0, le=1e6)] = 0.0  # 0 = off
    knn_k: Annotated[int, Field(ge=1, le=1000)] = 20
    knn_temperature: Annotated[float, Field(gt=0.0)] = 0.07

    @model_validator(mode="after")
    def _schedule_fits(self) -> "Recipe":
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.warmup_epochs > self.epochs - 1:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs})")
        return self

    def objective_type(self, where: str = "pretraining.backbones.<name>") -> type[PretrainingObjective]:
        try:
            return OBJECTIVES.get(self.objective)
        except KeyError as error:
            raise ConfigError(f"{where}.objective: {error.args[0]}") from None

    def check_arguments(self, where: str) -> None:
        """The objective exists, its ``objective_args`` are valid, and so are the ``init`` entries and
        the backbone they apply to (before any job runs: a small ViT builds in milliseconds)."""
        self.objective_type(where).settings_type.load(self.objective_args, f"{where}.objective_args")
        if self.init:
            self.build_backbone(where)

    def build_backbone(self, where: str = "pretraining.backbones.<name>") -> nn.Module:
        """The fresh backbone, initialised as ``init`` says."""
        return apply_init(create_backbone(self.backbone, None, **self.backbone_args), self.init, f"{where}.init")

    def build_objective(self, num_classes: int) -> PretrainingObjective:
        return self.objective_type()(self, num_classes)
