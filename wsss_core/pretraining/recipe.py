"""One backbone's pretraining recipe (``pretraining.backbones.<name>``): typed, every default here only."""

from __future__ import annotations

import dataclasses
from typing import Any

from wsss_core.errors import ConfigError
from wsss_core.pretraining.objectives import OBJECTIVES, PretrainingObjective
from wsss_core.pretraining.settings import Settings, check_range


@dataclasses.dataclass(frozen=True)
class Recipe(Settings):
    """One ``pretraining.backbones.<name>`` entry; every default is here and only here."""

    backbone: str = ""
    backbone_args: dict = dataclasses.field(default_factory=dict)
    objective: str = "supervised"
    objective_args: dict = dataclasses.field(default_factory=dict)
    image_size: int = 64
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1.0e-3
    min_lr: float = 1.0e-5
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    clip_grad_norm: float = 0.0  # 0 = off
    knn_k: int = 20
    knn_temperature: float = 0.07
    log_every: int = 20  # how the job runs, not what it computes

    def __post_init__(self) -> None:
        if not self.backbone:
            raise ConfigError("backbone is missing: name a registered backbone, e.g. vit_synth")
        check_range("epochs", (self.epochs,), 1, 10_000)
        check_range("batch_size", (self.batch_size,), 1, 1 << 16)
        check_range("image_size", (self.image_size,), 16, 4096)
        check_range("lr", (self.lr,), 1e-8, 10.0)
        check_range("min_lr", (self.min_lr,), 0.0, self.lr)
        check_range("weight_decay", (self.weight_decay,), 0.0, 10.0)
        check_range("warmup_epochs", (self.warmup_epochs,), 0, self.epochs - 1)
        check_range("clip_grad_norm", (self.clip_grad_norm,), 0.0, 1e6)
        check_range("knn_k", (self.knn_k,), 1, 1000)

    def objective_type(self, where: str = "pretraining.backbones.<name>") -> type[PretrainingObjective]:
        try:
            return OBJECTIVES.get(self.objective)
        except KeyError as error:
            raise ConfigError(f"{where}.objective: {error.args[0]}") from None

    def check_objective(self, where: str) -> None:
        """The objective exists and its ``objective_args`` are valid (before any job runs)."""
        self.objective_type(where).settings_type.from_config(self.objective_args, f"{where}.objective_args")

    def build_objective(self, num_classes: int) -> PretrainingObjective:
        return self.objective_type()(self, num_classes)
