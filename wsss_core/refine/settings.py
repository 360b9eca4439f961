"""The typed settings of the refinements: the dense CRF's parameters (``CRFParams``), IRN's
(``IRNSettings``) and PSA's (``PSASettings``), with their defaults and their named presets.

They are :class:`wsss_core.settings.Settings` types like every other block of config.yaml, so the workflow
checks them when it is parsed (``stages/settings.py`` declares its CRF / IRN / PSA blocks with them) and a
bad value stops with one line naming the whole key path (``stages.refine.irn.settings.beta = 'ten': ...``).
They live in this module, not beside the code that uses them (``crf.py``, ``irn.py``, ``psa.py``, which
re-export them), so that parsing the workflow, or a CRF worker process, imports neither pydensecrf nor torch
(``tests/test_layers.py`` checks it).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from wsss_core.settings import NonNegativeFloat, PositiveFloat, PositiveInt, Settings

# A number kept as written (an int stays an int): ``beta: 10`` reaches ``pow`` as 10, as it always did.
PositiveNumber = Annotated[int | float, Field(gt=0)]
NonNegativeNumber = Annotated[int | float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
SourceRegion = Literal["irn_crop", "in_bounds"]


class CRFParams(Settings):
    """Mean-field steps and kernel parameters of the dense CRF (defaults: PSA's probability CRF,
    ``crf_inference``: Gaussian sxy 3 / compat 3, bilateral sxy 80 / srgb 13 / compat 10, 10 steps)."""

    iterations: PositiveInt = 10
    gaussian_sxy: PositiveFloat = 3.0
    gaussian_compat: NonNegativeFloat = 3.0
    bilateral_sxy: PositiveFloat = 80.0
    bilateral_srgb: PositiveFloat = 13.0
    bilateral_compat: NonNegativeFloat = 10.0


# IRN's label CRF (misc/imutils.py crf_inference_label): bilateral sxy 50, srgb 5
LABEL_CRF_PARAMS = CRFParams(bilateral_sxy=50, bilateral_srgb=5)


def _with_preset(data: Any, presets: dict[str, dict[str, Any]]) -> Any:
    """``data`` with the values of its ``preset`` under the keys it does not set itself (an unknown preset
    is left for the ``preset`` field's choices to name)."""
    if isinstance(data, dict) and data.get("preset") in presets:
        return {**presets[data["preset"]], **data}
    return data


# IRN's defaults (run_sample.py) and RIB's retuned ones (VOC; COCO lowers the random-walk threshold); SIPE's
# (cam2ir.py, make_seg_labels.py): the seeds' own background channel instead of thresholds, halved for the
# confident-background labels, and IS-CAM ** 1.5 in the walk
THRESHOLD_PRESETS: dict[str, dict[str, Any]] = {
    "irn": {"conf_fg_threshold": 0.30, "conf_bg_threshold": 0.05, "sem_seg_bg_threshold": 0.25, "cam_power": 1.0},
    "rib": {"conf_fg_threshold": 0.35, "conf_bg_threshold": 0.17, "sem_seg_bg_threshold": 0.27, "cam_power": 1.3},
    "rib_coco": {"conf_fg_threshold": 0.35, "conf_bg_threshold": 0.17, "sem_seg_bg_threshold": 0.22,
                 "cam_power": 1.3},
    "sipe": {"background": "seeds", "background_factor": 0.5, "cam_power": 1.5},
}
# where IRN's background comes from: constant thresholds on the foreground maps (IRN, RIB), or the background
# channel (key 0) the method exports with its seeds (SIPE)
IRNBackground = Literal["threshold", "seeds"]


class IRNSettings(Settings):
    """IRN hyper-parameters (``stages.refine.irn.settings``; the stages get them as ``stage.irn``; defaults =
    RIB's VOC preset). ``preset`` (``irn`` | ``rib`` | ``rib_coco`` | ``sipe``) supplies the background rule,
    the thresholds and the CAM power that explicit keys do not set.

    ``background: threshold`` (IRN, RIB): the seeds' background channel, if any, is dropped and the three
    thresholds make the background. ``background: seeds`` (SIPE): the seeds' own background map is the
    background score (× ``background_factor`` for the confident-background labels; the thresholds are not
    read), which needs seeds with a background channel (key 0)."""

    preset: Literal["irn", "rib", "rib_coco", "sipe"] | None = None
    background: IRNBackground = "threshold"
    background_factor: Probability = 0.5
    conf_fg_threshold: Probability = 0.35
    conf_bg_threshold: Probability = 0.17
    sem_seg_bg_threshold: Probability = 0.27
    cam_power: PositiveNumber = 1.3
    train_radius: PositiveNumber = 10
    walk_radius: PositiveNumber = 5
    beta: PositiveNumber = 10
    exp_times: Annotated[int, Field(ge=0)] = 8
    backbone: str = "resnet50"
    backbone_args: dict[str, Any] = {}
    weights: str | None = "resnet50"
    freeze_backbone: bool = True
    # training pairs: IRN's source region [0, h - r') x [r', w - r') ("irn_crop"), or every pair whose
    # two ends lie in the crop ("in_bounds"; for crops not much larger than 2 * train_radius at stride 4)
    source_region: SourceRegion = "irn_crop"

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        return _with_preset(data, THRESHOLD_PRESETS)


# PSA's own settings (infer_cls.py, infer_aff.py, README) and MCTformer's run_psa.sh (G16)
PSA_PRESETS: dict[str, dict[str, Any]] = {
    "psa": {"low_alpha": 4, "high_alpha": 32, "background": "power", "background_alpha": 16, "logt": 8},
    "mctformer": {"low_alpha": 1, "high_alpha": 12, "background": "constant", "background_constant": 0.39, "logt": 6},
}


def _psa_frozen_stages() -> tuple[str, ...]:
    """ResNet-38's stages PSA freezes (``models.resnet38.PSA_FROZEN_STAGES``, the network's own default),
    imported when a PSA settings object is built without ``frozen_stages``: not when the workflow is parsed."""
    from wsss_core.models.resnet38 import PSA_FROZEN_STAGES

    return PSA_FROZEN_STAGES


class PSASettings(Settings):
    """PSA hyper-parameters (``stages.refine.psa.settings``; ``stage.psa`` in the stages; defaults = PSA's own,
    README "beta=8, gamma=5, t=256"). ``preset`` (``psa`` | ``mctformer``) supplies the CRF α, the random-walk
    background and ``logt`` that explicit keys do not set."""

    preset: Literal["psa", "mctformer"] | None = None
    low_alpha: PositiveNumber = 4
    high_alpha: PositiveNumber = 32
    radius: PositiveNumber = 5
    beta: PositiveNumber = 8
    logt: Annotated[int, Field(ge=0)] = 8
    background: Literal["power", "constant"] = "power"
    background_alpha: PositiveNumber = 16
    background_constant: NonNegativeNumber = 0.39
    width: PositiveFloat = 1.0
    weights: str | None = "resnet38"
    freeze_batch_norm: bool = True
    frozen_stages: tuple[str, ...] = Field(default_factory=lambda: _psa_frozen_stages())
    source_region: SourceRegion = "irn_crop"

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        return _with_preset(data, PSA_PRESETS)

    @model_validator(mode="after")
    def _alphas(self) -> "PSASettings":
        if not self.low_alpha < self.high_alpha:
            raise ValueError(f"low_alpha ({self.low_alpha}) must be below high_alpha ({self.high_alpha})")
        return self


__all__ = ["CRFParams", "IRNSettings", "LABEL_CRF_PARAMS", "PSASettings", "PSA_PRESETS", "THRESHOLD_PRESETS"]
