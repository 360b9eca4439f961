"""The typed ``stages:`` section of config.yaml: one settings type per section, named after the stage that
reads it (``TrainMethodStage`` → ``wsss_core.stages.train_method``), checked when the workflow is parsed
(``workflow_checks.config_problem``) for every dataset, its presets resolved.

The types live in this one module rather than in each stage module so that parsing the workflow does not
import every stage's dependencies (matplotlib, h5py, pydensecrf). Run-time keys (``wsss_core.runtime``:
``log_every``, ``checkpoint_every``, ``pin_memory``, ...) are not declared here: they are checked by
``runtime.check`` and removed before these types see a section. The CRF, IRN and PSA blocks are the types of
``wsss_core.refine.settings`` (``CRFParams``, ``IRNSettings``, ``PSASettings``: their defaults live there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from wsss_core import runtime
from wsss_core.errors import ConfigError
from wsss_core.refine.settings import CRFParams, IRNSettings, PSASettings
from wsss_core.segmentation.settings import DEEPLAB_CRF, SegmentationNetworkSettings
from wsss_core.settings import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    Scales,
    Settings,
    key_path,
)

Precision = Literal["fp32", "bf16", "auto"]  # auto: bf16 on a GPU that supports it, fp32 on CPU


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
    """How seeds without a background map get one for the CRF refinement: ``threshold`` = the seed
    evaluation's threshold as a constant plane (``threshold_from``: ``oracle`` = its best threshold, the
    papers' protocol; ``held_out`` = the one its held-out protocol chose on other images); ``power`` =
    ``(1 - max_c cam_c) ** alpha`` (PSA, MCTformer)."""

    mode: Literal["threshold", "power"] = "threshold"
    alpha: PositiveFloat | None = None
    threshold_from: Literal["oracle", "held_out"] = "oracle"

    @model_validator(mode="after")
    def _alpha_for_power(self) -> "CRFBackground":
        if self.mode == "power" and self.alpha is None:
            raise ValueError("mode 'power' needs alpha (a positive number)")
        return self


class RefineCRFStage(CRFParams):
    """``stages.refine.crf`` (stage ``refine_crf``): the dense CRF's parameters (``CRFParams``) and, beside
    them, ``background``. The job gets the CRF parameters under ``stage.crf`` (:class:`RefineCRFJob`)."""

    background: CRFBackground = CRFBackground()


class RefineCRFJob(Settings):
    """What stage ``refine_crf`` reads from its ``stage`` mapping: ``stages.refine.crf`` with its CRF
    parameters under ``crf`` (``workflow_config.refine_crf_params``; the job identity the stage had before
    the parameters moved up beside ``background`` in config.yaml)."""

    crf: CRFParams = CRFParams()
    background: CRFBackground = CRFBackground()


def _ordered_pair(name: str, pair: tuple[float, float] | None) -> None:
    if pair is not None and not pair[0] <= pair[1]:
        raise ValueError(f"{name} must be [low, high] with low <= high, got {list(pair)}")


class AffinityTrain(Settings):
    """``stages.refine.<irn|psa>.train`` (stage ``train_affinity``): ``epochs`` or ``iterations`` (iterations
    win), SGD, poly decay, and the sample's augmentation: ``scale_range`` (IRN: a random rescale factor) or
    ``long_side_range`` (PSA: the long side resized to a random length), flip, ``color_jitter``
    ``[brightness, contrast, saturation, hue]`` (PSA)."""

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

    @model_validator(mode="after")
    def _consistent(self) -> "AffinityTrain":
        if self.epochs is None and self.iterations is None:
            raise ValueError("set epochs (IRN 3, PSA 8, MCTformer 5) or iterations")
        if self.scale_range is not None and self.long_side_range is not None:
            raise ValueError("scale_range and long_side_range are exclusive; set one (IRN: scale_range, "
                             "PSA: long_side_range)")
        _ordered_pair("scale_range", self.scale_range)
        _ordered_pair("long_side_range", self.long_side_range)
        return self


class IRNRefineStage(Settings):
    """``stages.refine.irn`` (stages affinity_labels, train_affinity, refine_random_walk)."""

    settings: IRNSettings = IRNSettings()
    label_crf: CRFParams | None = None  # null: IRN's label CRF (LABEL_CRF_PARAMS); else the fields set here
    train: AffinityTrain


class PSARefineStage(Settings):
    """``stages.refine.psa`` (stages affinity_labels, train_affinity, refine_random_walk)."""

    settings: PSASettings = Field(default_factory=PSASettings)
    label_crf: CRFParams | None = None  # null: PSA's probability CRF (CRFParams()); else the fields set here
    train: AffinityTrain


class RefineStages(Settings):
    crf: RefineCRFStage | None = None
    irn: IRNRefineStage | None = None
    psa: PSARefineStage | None = None


class SegmentationTrain(SegmentationNetworkSettings):
    """``stages.segmentation.<network>.train`` (stage ``train_segmentation``): the network's keys
    (``SegmentationNetworkSettings``, beside the networks in ``wsss_core/segmentation/settings.py``) and the
    training recipe (deeplab-pytorch's: SGD, poly decay stepped every ``lr_update_every`` iterations, a
    random scale of ``scales``, a ``crop_size`` crop, flip)."""

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
    fuse_space: Literal["logits", "probabilities"] = "logits"  # logits: deeplab-pytorch; probabilities: MCTformer
    crf: CRFParams | None = DEEPLAB_CRF  # null = no CRF


class SegmentationNetworkStage(Settings):
    train: SegmentationTrain
    inference: SegmentationInference = SegmentationInference()


class DecoderInferenceStage(Settings):
    """``stages.decoder_inference`` (stage ``infer_segmentation --decoder``): the end-to-end methods' CRF."""

    crf: CRFParams | None = None


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
    routes: dict[str, list[str]] = {}  # extra REFINE.NETWORK rows per run, e.g. {cti: [irn.deeplab_v2]}
    sample_ids: list[str] = []  # sample-grid images; [] = the first num_samples of each split
    num_samples: NonNegativeInt = 3
    classes_per_panel: PositiveInt = 21  # class-IoU chart; COCO's 81 classes -> 4 panels
    # logged values that are not losses, drawn on a second axis of the training curves (CTI: full token memory)
    diagnostics: list[str] = ["memory_full_classes"]
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)] | None = None  # None: the top-level seed
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
    """The resolved ``stages`` mapping (one dataset's) checked against :class:`StagesSettings` (its CRF, IRN
    and PSA blocks included); one ConfigError line naming the key otherwise."""
    return StagesSettings.load(_without_runtime(stages), "stages", origin=origin, also_known=_runtime_known)


# Sections whose jobs receive their type's dump (every key, defaults filled in). The refinements and the
# decoder's inference are handed on as resolved: a method's refine_overrides / decoder_overrides go on top
# of them, and IRN's and PSA's ``preset`` must stay a preset (a dump would freeze its derived values).
AS_WRITTEN = ("refine", "decoder_inference")


def section_type(path: Sequence[str]) -> type[Settings] | None:
    """The settings type of ``stages.<path>`` (``("segmentation", "deeplab_v2", "train")`` →
    :class:`SegmentationTrain`), or None for a section handed on as written (:data:`AS_WRITTEN`) or not
    declared."""
    if not path or path[0] in AS_WRITTEN:
        return None
    node: Any = StagesSettings
    index = 0
    while index < len(path):
        field = node.model_fields.get(path[index]) if isinstance(node, type) and issubclass(node, Settings) else None
        if field is None:
            return None
        node = field.annotation
        if getattr(node, "__origin__", None) is dict:  # segmentation, ablations: one entry per name
            node = node.__args__[1]
            index += 1
        index += 1
    return node if isinstance(node, type) and issubclass(node, Settings) else None


def section_dump(section: Mapping[str, Any], path: Sequence[str]) -> dict[str, Any]:
    """What a job of ``stages.<path>`` receives: the resolved ``section`` (one dataset's) as its type's dump,
    run-time keys left out (they travel in ``--runtime``), so that a default written out or left to the type
    is the same job; a section without a type (:func:`section_type`) as written."""
    settings_type = section_type(path)
    if settings_type is None:
        return dict(section)
    checked = settings_type.load(_without_runtime(section, tuple(path)), "stages." + ".".join(path),
                                 also_known=lambda parts: _runtime_known([*path, *parts]))
    return checked.model_dump(mode="json")


def check_overrides(stages: Mapping[str, Any], path: Sequence[str], where: str) -> None:
    """A ``stages:`` block with a method's ``pipeline.refine_overrides.<refine>`` (``path`` = ``("refine",
    refine)``) or ``decoder_overrides`` (``("decoder_inference",)``) on top, checked by the block's type; a bad
    value is reported at ``where`` (the method's overrides: the block alone was checked before)."""
    node: Any = stages
    for key in reversed(path):
        node = {key: node}
    StagesSettings.load(_without_runtime(node), "", also_known=_runtime_known,
                        origin=lambda parts: key_path(where, parts[len(path):]) if len(parts) >= len(path) else None)


__all__ = ["ConfigError", "StagesSettings", "check_overrides", "check_stages"]
