"""A background-threshold protocol that does not peek: tune on one set of images, report on another.

The papers choose the seeds' background threshold as the one with the best mIoU on the split they then
report (VOC train, 1,464 images), so the reported seed mIoU is an *oracle* number: the threshold saw the
ground truth it is scored on. The held-out protocol (``stages.evaluate_seeds.held_out``) chooses the
threshold on the images of ``tune_split`` (default: the dataset's train-role split, which the seeds are
exported for) that are *not* in the reported split (VOC: train_aug − train, whose SBD masks no seed
score uses) and reports the reported split's scores at that threshold, beside
the oracle ones. ``max_tune_images`` caps the tuning set to evenly spread ids (cost: one more sweep).

Seeds with their own background channel tune nothing (they are scored by argmax), so the protocol
does not apply to them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from wsss_core.errors import ConfigError, StoreError
from wsss_core.evaluation.metrics import MaskSource, SeedSource, threshold_sweep

HELD_OUT_KEYS = ("tune_split", "max_tune_images")


def held_out_settings(spec: Mapping[str, Any] | None, train_split: str | None = None) -> dict[str, Any] | None:
    """``stage.held_out`` checked: None (off) or ``{tune_split, max_tune_images}``; ``tune_split: null``
    means ``train_split``, the split the seeds were exported for (the dataset's train role)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise ConfigError(f"stages.evaluate_seeds.held_out must be null or {{tune_split: ..., max_tune_images: ...}}, got {spec!r}")
    unknown = sorted(set(spec) - set(HELD_OUT_KEYS))
    if unknown:
        raise ConfigError(f"stages.evaluate_seeds.held_out: unknown key(s) {unknown}; use {', '.join(HELD_OUT_KEYS)}")
    tune_split = spec.get("tune_split") or train_split
    if not tune_split:
        raise ConfigError("stages.evaluate_seeds.held_out.tune_split is missing: name the split to tune on (e.g. train_aug)")
    limit = spec.get("max_tune_images")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"stages.evaluate_seeds.held_out.max_tune_images must be a positive integer or null, got {limit!r}")
    return {"tune_split": str(tune_split), "max_tune_images": limit}


def tuning_ids(candidates: Sequence[str], reported: Sequence[str], limit: int | None) -> list[str]:
    """``candidates`` minus the reported ids, sorted, cut to ``limit`` evenly spread ids."""
    excluded = set(reported)
    ids = sorted(image_id for image_id in candidates if image_id not in excluded)
    if limit is not None and len(ids) > limit:
        positions = np.linspace(0, len(ids) - 1, limit).round().astype(int)
        ids = [ids[position] for position in positions]
    return ids


def held_out_scores(
    store: SeedSource,
    reader: MaskSource,
    settings: Mapping[str, Any],
    tune_candidates: Sequence[str],
    report_split: str,
    report_ids: Sequence[str],
    report_result: Mapping[str, Any],
    thresholds: Sequence[float],
) -> dict[str, Any]:
    """The threshold chosen on the tuning images and the reported split's scores at it.

    ``report_result`` is the sweep of the reported split (``threshold_sweep`` output), so the reported
    scores at the held-out threshold cost nothing more; the tuning images cost one more sweep.
    """
    tune_split = settings["tune_split"]
    ids = tuning_ids(tune_candidates, report_ids, settings.get("max_tune_images"))
    if not ids:
        raise ConfigError(
            f"stages.evaluate_seeds.held_out.tune_split '{tune_split}' has no image outside the reported split "
            f"'{report_split}'; name a split with other images (e.g. train_aug when reporting on train)"
        )
    absent = [image_id for image_id in ids if image_id not in store]  # type: ignore[operator]
    if absent:
        raise StoreError(
            f"the seed store lacks {len(absent)} of the {len(ids)} tuning images of split '{tune_split}' (first: "
            f"{', '.join(absent[:3])}); tune on a split the seeds were exported for (the train role's split)"
        )
    tuned = threshold_sweep(store, reader, ids, thresholds)
    threshold = tuned["best_threshold"]
    at_threshold = next(point for point in report_result["sweep"] if point["threshold"] == threshold)
    oracle = report_result["best"]
    return {
        "tune_split": tune_split,
        "tune_images": f"{tune_split} minus {report_split}",
        "num_tune_images": len(ids),
        "tune_miou": tuned["best"]["miou"],
        "report_split": report_split,
        "threshold": threshold,
        "miou": at_threshold["miou"],
        "mean_precision": at_threshold["mean_precision"],
        "mean_recall": at_threshold["mean_recall"],
        "oracle_threshold": report_result["best_threshold"],
        "oracle_miou": oracle["miou"],
        "tune_sweep": tuned["sweep"],
    }
