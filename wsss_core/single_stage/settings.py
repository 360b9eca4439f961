"""Settings types shared by the single-stage methods (ToCo, MCC, AFA, ECA): PAR, the AdamW + poly
training schedule, the fusion rules of multi-scale inference."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from wsss_core.settings import NonNegativeFloat, NonNegativeInt, Pair, PositiveFloat, PositiveInt, Settings

Fusion = Literal["sum", "max", "mean"]


class OrderedThresholds(Settings):
    """Base of a ``params.losses.thresholds`` type (``low``, ``high``, ``background``, each in [0, 1]): the
    dual-threshold rule needs ``low <= high``, checked when the workflow is parsed."""

    @model_validator(mode="after")
    def _low_not_above_high(self) -> "OrderedThresholds":
        low, high = getattr(self, "low"), getattr(self, "high")
        if low > high:
            raise ValueError(f"low ({low}) must not exceed high ({high})")
        return self


class PARSettings(Settings):
    """``params.losses.par``: pixel-adaptive refinement of the CAMs (the pseudo-labels of the losses and the
    exported PAR pseudo-masks)."""

    dilations: Annotated[list[PositiveInt], Field(min_length=1)] = [1, 2, 4, 8, 12, 24]
    iterations: PositiveInt = 10
    downscale: PositiveInt = 2


class SingleStageTrain(Settings):
    """``params.train``: iteration-based AdamW + poly schedule (``iterations``, or ``epochs``), and the
    training crop (``rescale_range``, then a ``crop_size`` square; ToCo's default, AFA's type overrides it)."""

    iterations: PositiveInt | None = None
    epochs: PositiveInt | None = None
    batch_size: PositiveInt
    lr: PositiveFloat = 6e-5
    head_lr_multiplier: PositiveFloat = 10.0
    weight_decay: NonNegativeFloat = 0.01
    betas: Pair = (0.9, 0.999)
    power: NonNegativeFloat = 0.9
    warmup_steps: NonNegativeInt = 1500
    warmup_ratio: NonNegativeFloat = 1e-6
    clip_grad_norm: PositiveFloat | None = None
    crop_size: PositiveInt = 448
    rescale_range: tuple[PositiveFloat, PositiveFloat] = (0.5, 2.0)
