"""Machinery shared by the single-stage methods (ToCo, MCC, AFA, ECA): PAR, the CAM → pseudo-label
rules, the LargeFOV decoder and classifier heads, and multi-scale + flip CAM and logit inference. Their
losses (balanced segmentation, patch-token affinity, class-token contrast) are in
``wsss_core.losses.single_stage``."""

from wsss_core.single_stage.cams import multi_scale_cams, multi_scale_logits, normalize_cams
from wsss_core.single_stage.decoders import GMPClassifier, LargeFOV, Projector, ema_update, make_teacher
from wsss_core.single_stage.par import PixelAdaptiveRefinement
from wsss_core.single_stage.pseudo_labels import (
    IGNORE_INDEX,
    affinity_labels,
    cams_to_labels,
    cams_to_labels_with_ignore,
    par_refined_labels,
    roi_map,
    token_labels,
)

__all__ = [
    "IGNORE_INDEX", "GMPClassifier", "LargeFOV", "PixelAdaptiveRefinement", "Projector", "affinity_labels",
    "cams_to_labels", "cams_to_labels_with_ignore", "ema_update", "make_teacher", "multi_scale_cams",
    "multi_scale_logits", "normalize_cams", "par_refined_labels", "roi_map", "token_labels",
]
