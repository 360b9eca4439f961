"""The typed ``stages:`` section of config.yaml: one settings type per section, named after the stage that
reads it (``TrainMethodStage`` → ``wsss_core.stages.train_method``), checked when the workflow is parsed
(``workflow_checks.config_problem``) for every dataset, its presets resolved.

The types live in this one module rather than in each stage module so that parsing the workflow does not
import every stage's dependencies (matplotlib, h5py, pydensecrf). Run-time keys (``wsss_core.runtime``:
``log_every``, ``checkpoint_every``, ``pin_memory``, ...) are not declared here: they are checked by
``runtime.check`` and removed before these types see a section. Three sub-blocks keep the checks of the
dataclasses their code builds (``CRFParams``, ``IRNSettings``, ``PSASettings``: their defaults live
there), which :func:`check_stages` runs with the full key path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from wsss_core import runtime
from wsss_core.errors import ConfigError
from wsss_core.settings import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    Scales,
    Settings,
)

Precision = Literal["fp32", "bf16", "auto"]
CRFBlock = dict[str, Any]  # checked by wsss_core.refine.crf.CRFParams (its defaults)


class TrainMethodStage(Settings):
    """``stages.train_method`` (identity keys; the run-time ones are ``runtime.SECTIONS['train_method']``)."""

    precision: Precision = "fp32"
    channels_last: bool = False


class ExportSeedsStage(Settings):
    """``stages.export_seeds``."""

    precision: Precision = "fp32"


class ThresholdGrid(Settings):
    start: Probability = 0.05  # the code default evaluate_seeds had (config.yaml sets 0.0)
    stop: Probability = 0.95
    step: Annotated[float, Field(gt=0, le=1)] = 0.01


class HeldOut(Settings):
    tune_split: str | None = None
    max_tune_images: PositiveInt | None = None


class EvaluateSeedsStage(Settings):
    """``stages.evaluate_seeds``: the background-threshold sweep and the held-out protocol."""

    thresholds: ThresholdGrid = ThresholdGrid()
    held_out: HeldOut | None = None


class CRFBackground(Settings):
    mode: Literal["threshold", "power"] = "threshold"
    alpha: PositiveFloat | None = None


class RefineCRFStage(Settings):
    """``stages.refine.crf`` (stage ``refine_crf``)."""

    crf: CRFBlock = {}
    background: CRFBackground = CRFBackground()


class AffinityTrain(Settings):
    """``stages.refine.<irn|psa>.train`` (stage ``train_affinity``)."""

    batch_size: PositiveInt
    epochs: PositiveInt | None = None
    iterations: PositiveInt | None = None
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    momentum: NonNegativeFloat = 0.0
    poly_power: NonNegativeFloat = 0.9
    crop_size: PositiveInt
    scale_range: tuple[PositiveFloat, PositiveFloat] | None = None
    long_side_range: tuple[PositiveInt, PositiveInt] | None = None
    flip: bool = True
    color_jitter: Annotated[list[NonNegativeFloat], Field(min_length=4, max_length=4)] | None = None


class AffinityRefineStage(Settings):
    """``stages.refine.irn`` / ``stages.refine.psa`` (stages affinity_labels, train_affinity,
    refine_random_walk)."""

    settings: dict[str, Any] = {}  # checked by IRNSettings / PSASettings (their defaults and presets)
    label_crf: CRFBlock | None = None
    train: AffinityTrain


class RefineStages(Settings):
    crf: RefineCRFStage | None = None
    irn: AffinityRefineStage | None = None
    psa: AffinityRefineStage | None = None


class SegmentationTrain(Settings):
    """``stages.segmentation.<network>.train`` (stage ``train_segmentation``)."""

    network: Literal["deeplab_v2", "deeplab_v1_resnet38"]
    backbone: str | None = None
    backbone_args: dict[str, Any] = {}
    weights: str | None = None
    width: PositiveFloat | None = None
    frozen_stages: list[str] | None = None
    batch_norm: Literal["frozen", "train"] = "frozen"
    normalization: Literal["imagenet", "caffe"] = "imagenet"
    aspp_rates: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    batch_size: PositiveInt
    iterations: PositiveInt
    lr: PositiveFloat
    momentum: NonNegativeFloat
    weight_decay: NonNegativeFloat
    poly_power: NonNegativeFloat = 0.9
    lr_update_every: PositiveInt = 1
    crop_size: PositiveInt
    scales: Scales
    flip: bool = True
    precision: Precision = "fp32"
    channels_last: bool = False


class SegmentationInference(Settings):
    """``stages.segmentation.<network>.inference`` (stage ``infer_segmentation``)."""

    scales: Scales = [0.5, 0.75, 1.0]
    flip: bool = True
    fuse: Literal["max", "mean"] = "max"
    fuse_space: Literal["logits", "probabilities"] = "logits"
    crf: CRFBlock | None = None


class SegmentationNetworkStage(Settings):
    train: SegmentationTrain
    inference: SegmentationInference = SegmentationInference()


class DecoderInferenceStage(Settings):
    """``stages.decoder_inference`` (stage ``infer_segmentation --decoder``): the end-to-end methods' CRF."""

    crf: CRFBlock | None = None


class AblationRow(Settings):
    run: str
    components: list[str] = []
    paper: dict[str, Any] = {}


class AblationTable(Settings):
    """``stages.ablations.<name>`` (stage ``ablation_table``)."""

    title: str | None = None
    components: list[str] = []
    percent_scale: PositiveFloat = 100.0
    levels: Literal["seeds", "final"] = "seeds"
    rows: dict[str, AblationRow]


class Comparison(Settings):
    title: str
    runs: Annotated[list[str], Field(min_length=1)]


class ReportingStage(Settings):
    """``stages.reporting`` (summary, figures, comparisons)."""

    runs: list[str] = []
    routes: dict[str, list[str]] = {}
    sample_ids: list[str] = []
    num_samples: NonNegativeInt = 3
    classes_per_panel: PositiveInt = 21
    diagnostics: list[str] = []
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)] = [0]
    comparisons: dict[str, Comparison] = {}


class StagesSettings(Settings):
    """``stages:`` as a whole: a misspelt section name (``stages.evaluate_seed``) is an unknown key."""

    train_method: TrainMethodStage = TrainMethodStage()
    export_seeds: ExportSeedsStage = ExportSeedsStage()
    evaluate_seeds: EvaluateSeedsStage = EvaluateSeedsStage()
    refine: RefineStages = RefineStages()
    ablations: dict[str, AblationTable] = {}
    reporting: ReportingStage = ReportingStage()
    segmentation: dict[str, SegmentationNetworkStage] = {}
    decoder_inference: DecoderInferenceStage = DecoderInferenceStage()


# ------------------------------------------------------------------------------------- the check
def _without_runtime(node: Any, path: tuple[str, ...] = ()) -> Any:
    """The resolved ``stages`` tree less every run-time key of a declared run-time section."""
    if not isinstance(node, Mapping):
        return node
    keys = runtime.runtime_keys(".".join(path)) if path else {}
    return {key: _without_runtime(value, (*path, key)) for key, value in node.items() if key not in keys}


def _runtime_known(parts: Sequence[Any]) -> list[str]:
    return list(runtime.runtime_keys(".".join(str(part) for part in parts)))


def check_stages(stages: Mapping[str, Any], origin: Any = None) -> StagesSettings:
    """The resolved ``stages`` mapping (one dataset's) checked against :class:`StagesSettings` and the
    dataclasses of its CRF / IRN / PSA blocks; one ConfigError line naming the key otherwise."""
    from wsss_core.refine.crf import CRFParams
    from wsss_core.refine.irn import IRNSettings
    from wsss_core.refine.psa import PSASettings

    typed = StagesSettings.load(_without_runtime(stages), "stages", origin=origin, also_known=_runtime_known)
    crf_blocks: list[tuple[str, Any]] = [("stages.decoder_inference.crf", typed.decoder_inference.crf)]
    if typed.refine.crf is not None:
        crf_blocks.append(("stages.refine.crf.crf", typed.refine.crf.crf))
    for name, affinity, settings_type in (("irn", typed.refine.irn, IRNSettings), ("psa", typed.refine.psa, PSASettings)):
        if affinity is not None:
            settings_type.from_config(affinity.settings, key=f"stages.refine.{name}.settings")
            crf_blocks.append((f"stages.refine.{name}.label_crf", affinity.label_crf))
    for network, block in typed.segmentation.items():
        crf_blocks.append((f"stages.segmentation.{network}.inference.crf", block.inference.crf))
    for key, block in crf_blocks:
        if block is not None:
            CRFParams.from_config(block, key=key)
    return typed


__all__ = ["ConfigError", "StagesSettings", "check_stages"]
