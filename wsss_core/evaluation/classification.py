"""Image-level classification scores: average precision per class and their mean (mAP).

A WSSS chain reads its seeds off a classifier; when that classifier has not learned the image labels
(mAP near the chance level, the classes' frequency), no seed, refinement or ranking downstream means
anything. ``stages.evaluate_classifier`` reports these on the score split.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Non-interpolated AP of one class (the mean of the precision at each positive, in descending score
    order; ties broken by order, as sklearn's ``average_precision_score`` does for distinct scores);
    None without a positive."""
    labels = np.asarray(labels, dtype=bool)
    if labels.shape != np.shape(scores) or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and scores {np.shape(scores)} must be equal 1-D shapes")
    if not labels.any():
        return None
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = labels[order]
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision[hits].mean())


def classification_report(labels: np.ndarray, scores: Mapping[str, np.ndarray]) -> dict[str, object]:
    """mAP and per-class AP of each head's ``[N, C]`` scores against multi-hot ``[N, C]`` labels; the
    chance level is the mean frequency of the classes that occur (the AP of a random ranking)."""
    labels = np.asarray(labels) > 0.5
    present = np.flatnonzero(labels.any(axis=0))
    heads: dict[str, object] = {}
    for head, values in scores.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != labels.shape:
            raise ValueError(f"head '{head}': scores {values.shape} do not match labels {labels.shape}")
        per_class = [average_precision(labels[:, c], values[:, c]) for c in range(labels.shape[1])]
        heads[head] = {
            "map": float(np.mean([per_class[c] for c in present])) if present.size else None,
            "ap": per_class,
        }
    return {
        "num_images": int(labels.shape[0]),
        "chance_map": float(labels[:, present].mean(axis=0).mean()) if present.size else None,
        "heads": heads,
    }
