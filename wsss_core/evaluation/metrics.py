"""Dataset-level segmentation metrics and the background-threshold sweep for CAM seeds.

The protocol is the one of the papers' evaluation scripts (CTI ``evaluation.py``, IRN/chainercv, mmseg):
a single confusion matrix accumulated over every pixel of the split whose ground truth is not 255,
then per class ``IoU = TP / (T + P - TP)``, ``precision = TP / P``, ``recall = TP / T`` with
``T`` = ground-truth pixels and ``P`` = predicted pixels of the class.

* mIoU is the mean over background + C classes, skipping classes absent from both prediction and
  ground truth (``nanmean``, as mmseg and torchmetrics' ``MulticlassJaccardIndex(average="macro")``).
* Mean precision / recall are unweighted means over the same classes (CTI's Table 1 P/R). A class that
  is present in the ground truth but never predicted has precision 0 (and the converse recall 0), which
  is what CTI's ``TP / (P + 1e-10)`` gives; classes absent from both are reported as ``None``.

Seeds without a background channel (MCTformer, CTI) are turned into labels by
``argmax([t; maps])``: a pixel is foreground when its largest class score is strictly above ``t``
(ties go to background, as ``argmax`` picks the first maximum).  ``threshold_sweep`` scores every
threshold in one pass over the images: per image it histograms, for each (ground truth, best
foreground class) pair, how many thresholds lie below the pixel's best score, and cumulative sums of
that histogram give every threshold's confusion matrix exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from wsss_core.errors import StoreError
from wsss_core.io.seed_maps import SeedMaps

IGNORE_INDEX = 255


class ConfusionMatrix:
    """Pixel counts ``counts[gt, pred]`` over ``num_labels`` labels (background + C classes)."""

    def __init__(self, num_labels: int) -> None:
        if num_labels < 1 or num_labels > IGNORE_INDEX:
            raise ValueError(f"num_labels must be in 1..{IGNORE_INDEX}, got {num_labels}")
        self.num_labels = num_labels
        self.counts = np.zeros((num_labels, num_labels), dtype=np.int64)
        # pixels with a valid ground truth whose prediction was the ignore value (left unscored)
        self.ignored_predictions = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, prediction_ignore_index: int | None = None) -> None:
        """Add one prediction / ground-truth pair of the same shape.

        Ground-truth pixels equal to 255 are skipped. With ``prediction_ignore_index`` set, predicted
        pixels with that value are skipped too and counted in ``ignored_predictions`` (pseudo masks
        that leave uncertain pixels unlabelled). Any other prediction outside ``0..num_labels-1`` is
        an error, as is a ground-truth value outside the label range other than 255.
        """
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
        pred = pred.reshape(-1).astype(np.int64, copy=False)
        gt = gt.reshape(-1).astype(np.int64, copy=False)
        valid = gt != IGNORE_INDEX
        if prediction_ignore_index is not None:
            unlabelled = valid & (pred == prediction_ignore_index)
            self.ignored_predictions += int(unlabelled.sum())
            valid &= ~unlabelled
        pred, gt = pred[valid], gt[valid]
        if pred.size and (pred.min() < 0 or pred.max() >= self.num_labels):
            raise ValueError(
                f"prediction values must be in 0..{self.num_labels - 1}, found {pred.min()}..{pred.max()}"
            )
        if gt.size and (gt.min() < 0 or gt.max() >= self.num_labels):
            raise ValueError(
                f"ground-truth values must be in 0..{self.num_labels - 1} or {IGNORE_INDEX}, "
                f"found {gt.min()}..{gt.max()}"
            )
        self.counts += np.bincount(
            gt * self.num_labels + pred, minlength=self.num_labels**2
        ).reshape(self.num_labels, self.num_labels)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add the counts of ``other`` (e.g. from another worker) into this matrix; returns self."""
        if other.num_labels != self.num_labels:
            raise ValueError(f"cannot merge {other.num_labels} labels into {self.num_labels}")
        self.counts += other.counts
        self.ignored_predictions += other.ignored_predictions
        return self

    def scores(self, class_names: Sequence[str]) -> dict[str, Any]:
        """mIoU, per-class IoU / precision / recall, their means, pixel accuracy and the matrix.

        ``class_names`` names every label, background first (``num_labels`` names).
        """
        if len(class_names) != self.num_labels:
            raise ValueError(f"{len(class_names)} class names for {self.num_labels} labels")
        counts = self.counts.astype(np.float64)
        true_positive = np.diag(counts)
        gt_total = counts.sum(axis=1)
        pred_total = counts.sum(axis=0)
        union = gt_total + pred_total - true_positive
        present = union > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(present, true_positive / union, np.nan)
            precision = np.where(present, np.where(pred_total > 0, true_positive / pred_total, 0.0), np.nan)
            recall = np.where(present, np.where(gt_total > 0, true_positive / gt_total, 0.0), np.nan)
        total = counts.sum()
        scored = total + self.ignored_predictions
        return {
            "miou": _nanmean(iou),
            "iou": _per_class(class_names, iou),
            "precision": _per_class(class_names, precision),
            "recall": _per_class(class_names, recall),
            "mean_precision": _nanmean(precision),
            "mean_recall": _nanmean(recall),
            "pixel_accuracy": float(true_positive.sum() / total) if total else None,
            "num_pixels": int(total),
            "ignored_fraction": float(self.ignored_predictions / scored) if scored else 0.0,
            "class_names": list(class_names),
            "confusion": self.counts.tolist(),
        }


def _nanmean(values: np.ndarray) -> float | None:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else None


def _per_class(class_names: Sequence[str], values: np.ndarray) -> dict[str, float | None]:
    """``{name: value}`` with ``None`` for classes absent from both prediction and ground truth
    (JSON has no NaN)."""
    return {name: (None if np.isnan(value) else float(value)) for name, value in zip(class_names, values)}


def seeds_to_labels(seed_maps: SeedMaps, threshold: float | None) -> np.ndarray:
    """Label-space ``uint8 [H, W]`` mask from seeds: ``argmax([threshold; maps])`` when the seeds have
    no background channel, ``argmax(maps)`` when they do (``threshold`` is then unused)."""
    maps = np.asarray(seed_maps.maps, dtype=np.float32)
    keys = np.asarray(seed_maps.keys, dtype=np.int64)
    if seed_maps.has_background:
        return keys[np.argmax(maps, axis=0)].astype(np.uint8)
    if threshold is None:
        raise ValueError("seeds without a background channel need a background threshold")
    background = np.full((1,) + maps.shape[1:], threshold, dtype=np.float32)
    labels = np.concatenate([np.zeros(1, dtype=np.int64), keys])
    return labels[np.argmax(np.concatenate([background, maps]), axis=0)].astype(np.uint8)


class SeedSource(Protocol):
    def get(self, image_id: str) -> SeedMaps: ...


class MaskSource(Protocol):
    num_classes: int
    class_names: Sequence[str]

    def mask(self, image_id: str) -> np.ndarray: ...


def _check_size(store: SeedSource, image_id: str, seeds: SeedMaps, gt: np.ndarray) -> None:
    """Seeds must be at the image's native resolution, like its ground truth."""
    if gt.shape != seeds.maps.shape[1:]:
        raise StoreError(
            f"seed map of '{image_id}' in {getattr(store, 'path', 'the seed store')} is "
            f"{tuple(seeds.maps.shape[1:])} but its ground-truth mask is {gt.shape}; the store was "
            "exported from another dataset or at another resolution: re-run export_seeds"
        )


def label_names(reader: MaskSource) -> list[str]:
    """Names of all labels, background first, from a dataset reader whose ``class_names`` lists the
    C foreground classes (or already all C + 1 labels)."""
    names = list(reader.class_names)
    if len(names) == reader.num_classes:
        return ["background"] + names
    if len(names) == reader.num_classes + 1:
        return names
    raise ValueError(f"reader has {len(names)} class names for {reader.num_classes} classes")


def threshold_sweep(
    store: SeedSource,
    reader: MaskSource,
    ids: Iterable[str],
    thresholds: Sequence[float],
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score seeds without a background channel at every background threshold in one pass.

    Returns ``{"best_threshold", "best": scores at it, "sweep": [{"threshold", "miou",
    "mean_precision", "mean_recall"}, ...], "num_images"}``; the best threshold is the one with the
    highest mIoU (the lowest such threshold on ties). ``class_names`` names every label, background
    first; by default they come from the reader.
    """
    class_names = list(class_names) if class_names is not None else label_names(reader)
    values = np.asarray(sorted(float(t) for t in thresholds), dtype=np.float32)
    if values.size == 0:
        raise ValueError("threshold_sweep needs at least one threshold")
    num_labels = len(class_names)
    num_bins = values.size + 1
    # histogram[gt, fg, b]: pixels whose best foreground class is fg and whose best score exceeds
    # exactly the b lowest thresholds
    histogram = np.zeros(num_labels * num_labels * num_bins, dtype=np.int64)
    num_images = 0
    for image_id in ids:
        seeds = store.get(image_id)
        if seeds.has_background:
            raise ValueError(f"seeds of '{image_id}' have a background channel; score them by argmax")
        gt = np.asarray(reader.mask(image_id))
        _check_size(store, image_id, seeds, gt)
        valid = gt.reshape(-1) != IGNORE_INDEX
        gt_valid = gt.reshape(-1)[valid].astype(np.int64)
        if len(seeds.keys):
            maps = np.asarray(seeds.maps, dtype=np.float32).reshape(len(seeds.keys), -1)[:, valid]
            best_score = maps.max(axis=0)
            best_class = np.asarray(seeds.keys, dtype=np.int64)[maps.argmax(axis=0)]
        else:  # no class present: background everywhere
            best_score = np.zeros(gt_valid.size, dtype=np.float32)
            best_class = np.zeros(gt_valid.size, dtype=np.int64)
        if gt_valid.size and (gt_valid.max() >= num_labels or best_class.max() >= num_labels):
            raise ValueError(f"labels of '{image_id}' exceed the {num_labels} label ids")
        above = np.searchsorted(values, best_score, side="left")  # number of thresholds < score
        histogram += np.bincount(
            (gt_valid * num_labels + best_class) * num_bins + above, minlength=histogram.size
        )
        num_images += 1
    histogram = histogram.reshape(num_labels, num_labels, num_bins)
    # thresholds index j: foreground where more than j thresholds lie below the score
    foreground = np.cumsum(histogram[:, :, ::-1], axis=2)[:, :, ::-1]  # [gt, fg, b] = sum over bins >= b
    per_gt_total = histogram.sum(axis=(1, 2))
    sweep: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    best_threshold = float(values[0])
    for index, threshold in enumerate(values):
        matrix = ConfusionMatrix(num_labels)
        counts = foreground[:, :, index + 1].copy()
        counts[:, 0] += per_gt_total - counts.sum(axis=1)  # everything else is background
        matrix.counts = counts
        scores = matrix.scores(class_names)
        threshold_value = round(float(threshold), 6)
        sweep.append(
            {
                "threshold": threshold_value,
                "miou": scores["miou"],
                "mean_precision": scores["mean_precision"],
                "mean_recall": scores["mean_recall"],
            }
        )
        if best is None or (scores["miou"] or 0.0) > (best["miou"] or 0.0):
            best, best_threshold = scores, threshold_value
    return {"best_threshold": best_threshold, "best": best, "sweep": sweep, "num_images": num_images}


def score_seeds_by_argmax(
    store: SeedSource, reader: MaskSource, ids: Iterable[str], class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Scores of seeds that carry their own background channel (SWTformer-V2, ViT-PCM): argmax."""
    class_names = list(class_names) if class_names is not None else label_names(reader)
    matrix = ConfusionMatrix(len(class_names))
    num_images = 0
    for image_id in ids:
        seeds = store.get(image_id)
        if not seeds.has_background:
            raise ValueError(f"seeds of '{image_id}' have no background channel; use threshold_sweep")
        gt = np.asarray(reader.mask(image_id))
        _check_size(store, image_id, seeds, gt)
        matrix.update(seeds_to_labels(seeds, None), gt)
        num_images += 1
    return {"best_threshold": None, "best": matrix.scores(class_names), "sweep": [], "num_images": num_images}
