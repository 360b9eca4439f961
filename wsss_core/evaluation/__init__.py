"""Evaluation: dataset-level confusion-matrix metrics and the background-threshold sweep."""

from wsss_core.evaluation.metrics import (
    ConfusionMatrix,
    label_names,
    score_seeds_by_argmax,
    seeds_to_labels,
    threshold_sweep,
)

__all__ = ["ConfusionMatrix", "label_names", "score_seeds_by_argmax", "seeds_to_labels", "threshold_sweep"]
