"""Diagnostics that catch a chain that has not learned, from what the seed evaluation already has.

A seed evaluation can look normal while the network learned nothing: on a dataset it was not tuned for,
ToCo's best background threshold came out at 0.0 with every foreground IoU near 0 (its CAMs lit a few
percent of each image, one image in ten was all zero), and nothing said so. These checks say so:

* ``edge_threshold``: the best background threshold is the first or last value of the sweep — the CAMs'
  scale does not fit the sweep (all-but-empty or saturated maps), so the reported score is a boundary
  value, not an optimum.
* ``empty_cams`` / ``constant_cams``: the share of images whose foreground maps are all zero, or flat
  (max − min below 1e-6): a method that did not localise.
* ``no_better_than_background``: the seed mIoU does not beat predicting background everywhere by more
  than ``margin`` (the floor any localisation must clear).

Each flag carries one line saying what to look at; the stage logs them and writes them to ``eval.json``,
and the summary marks flagged rows.

Beside the flags, ``localisation_statistics`` measures where each class map points and how far it spreads,
with no threshold: the pointing game (Zhang et al., ECCV 2016: is the map's maximum on the class's
ground-truth pixels?) and the energy inside (Score-CAM's energy-based pointing game: the share of the map's
mass on them), each next to what a map that knows nothing scores (a random point, a flat map: the class's
area fraction). A low seed mIoU with a high pointing accuracy means maps that find the object but spill over
it; a low pointing accuracy means maps that do not find it.

For any labelling (seeds at their threshold, pseudo-masks, a network's predictions) ``error_breakdown`` says
where the ground truth's object pixels went — their own class, background, another class — and how well
objects are told from background whatever their class (the class-agnostic foreground IoU); ``ClassPresence``
counts the images whose labelling names a class the image does not contain. Pseudo-masks take their classes
from the image labels, a segmentation network has to recognise them: a network below its masks with the
same foreground IoU but more confused pixels and absent classes misnames objects rather than missing them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from wsss_core.evaluation.metrics import IGNORE_INDEX, ConfusionMatrix

EMPTY = 1e-6
FLAG_LIMIT_FRACTION = 0.05  # flag empty/constant CAMs when more than 5 % of the images have them
BACKGROUND_MARGIN = 0.01  # seed mIoU must beat background-only by more than one point


def background_only_miou(confusion: Sequence[Sequence[int]]) -> float | None:
    """mIoU of predicting background on every pixel, from a confusion matrix (rows: ground truth): the
    background IoU is its share of the labelled pixels, every other class present in the ground truth
    scores 0, classes absent from the ground truth are left out (as the metric leaves them out)."""
    counts = np.asarray(confusion, dtype=np.float64)
    gt_total = counts.sum(axis=1)
    total = gt_total.sum()
    if total == 0:
        return None
    present = gt_total > 0
    present[0] = True
    return float((gt_total[0] / total) / present.sum())


def _cam_state(stack: np.ndarray, keys: np.ndarray) -> str | None:
    """``"empty"`` (all foreground maps zero), ``"constant"`` (all flat) or None for one image."""
    foreground = stack[np.asarray(keys) != 0]
    if foreground.size == 0 or float(foreground.max()) <= EMPTY:
        return "empty"
    if all(float(m.max() - m.min()) < EMPTY for m in foreground):
        return "constant"
    return None


def _cam_summary(states: Sequence[str | None]) -> dict[str, Any]:
    images = len(states)
    return {"images": images, "empty_fraction": states.count("empty") / max(images, 1),
            "constant_fraction": states.count("constant") / max(images, 1)}


def cam_statistics(maps: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Share of images whose foreground maps are all zero / flat; ``maps`` yields ``(maps, keys)``."""
    return _cam_summary([_cam_state(stack, keys) for stack, keys in maps])


# one (image, class) pair of the localisation: hit, energy inside, area share, energy on objects, objects' share
LocalisationPair = tuple[bool, float, float, float, float]


def _localisation_pairs(stack: np.ndarray, keys: np.ndarray, gt: np.ndarray, ignore_index: int
                        ) -> list[LocalisationPair]:
    """The pairs of one image: every foreground key with ground-truth pixels (see ``localisation_statistics``)."""
    gt = np.asarray(gt)
    valid = gt != ignore_index
    total = int(valid.sum())
    if total == 0:
        return []
    objects = valid & (gt != 0)
    objects_area = int(objects.sum()) / total
    pairs = []
    for channel, key in zip(np.asarray(stack, dtype=np.float64), np.asarray(keys)):
        inside = gt == int(key)
        count = int(inside.sum())
        if int(key) == 0 or count == 0:
            continue
        masked = np.where(valid, channel, 0.0)
        mass = float(masked.sum())
        if mass <= EMPTY:
            pairs.append((False, 0.0, count / total, 0.0, objects_area))
            continue
        pairs.append((bool(inside.flat[int(masked.argmax())]), float(masked[inside].sum()) / mass, count / total,
                      float(masked[objects].sum()) / mass, objects_area))
    return pairs


def _localisation_summary(pairs: Sequence[LocalisationPair]) -> dict[str, Any]:
    if not pairs:
        return {"pairs": 0, "pointing_accuracy": None, "pointing_chance": None, "energy_inside": None,
                "energy_gain": None, "energy_on_objects": None, "objects_chance": None}
    hits, energy, area, objects, objects_area = (float(np.mean(column)) for column in zip(*pairs))
    return {"pairs": len(pairs), "pointing_accuracy": hits, "pointing_chance": area, "energy_inside": energy,
            "energy_gain": energy / area if area > 0 else None, "energy_on_objects": objects,
            "objects_chance": objects_area}


def localisation_statistics(maps: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                            ignore_index: int = 255) -> dict[str, Any]:
    """Pointing game and energy inside over every (image, foreground class) with ground-truth pixels.

    ``maps`` yields ``(maps [k, H, W], keys [k], ground truth [H, W])``; pixels labelled ``ignore_index``
    count nowhere. Per pair: ``hit`` = the ground truth at the map's maximum (first on ties) is the class
    (an all-zero map misses); ``energy`` = the map's mass on the class's pixels over its mass on all
    labelled pixels (0 for an all-zero map); ``area`` = the class's share of the labelled pixels, what a
    random point (pointing) and a flat map (energy) score; ``energy_on_objects`` = the share of the mass on
    any object's pixels (every foreground class), beside ``objects_chance`` (their area share): a map whose
    mass is on objects but not on its own class's confuses classes rather than missing the objects. Returned
    as means over the pairs, with ``energy_gain`` = mean energy / mean area (1 = no better than a flat map).
    """
    return _localisation_summary([pair for stack, keys, gt in maps
                                  for pair in _localisation_pairs(stack, keys, gt, ignore_index)])


def seed_map_statistics(maps: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], ignore_index: int = 255
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``cam_statistics`` and ``localisation_statistics`` in one pass over ``(maps, keys, ground truth)``
    (the seed evaluation reads each image's maps once for both)."""
    states: list[str | None] = []
    pairs: list[LocalisationPair] = []
    for stack, keys, gt in maps:
        states.append(_cam_state(stack, keys))
        pairs.extend(_localisation_pairs(stack, keys, gt, ignore_index))
    return _cam_summary(states), _localisation_summary(pairs)


def seed_flags(result: Mapping[str, Any], thresholds: Sequence[float], cams: Mapping[str, Any]) -> dict[str, Any]:
    """The diagnostics block of a seed evaluation: background-only mIoU, CAM statistics and the flags."""
    best = result["best"]
    floor = background_only_miou(best["confusion"])
    flags: dict[str, str] = {}
    threshold = result.get("best_threshold")
    if threshold is not None and len(thresholds) > 1 and threshold in (thresholds[0], thresholds[-1]):
        flags["edge_threshold"] = (
            f"the best background threshold {threshold} is at the edge of the sweep "
            f"[{thresholds[0]}, {thresholds[-1]}]: the CAMs are nearly empty or saturated; look at the seed "
            "maps (figures/samples.png) and the training curves before trusting this score"
        )
    if cams["empty_fraction"] > FLAG_LIMIT_FRACTION:
        flags["empty_cams"] = (
            f"{100 * cams['empty_fraction']:.0f} % of the images have all-zero CAMs for their classes: the "
            "network does not localise them; check its training loss and classification mAP"
        )
    if cams["constant_fraction"] > FLAG_LIMIT_FRACTION:
        flags["constant_cams"] = (
            f"{100 * cams['constant_fraction']:.0f} % of the images have flat (constant) CAMs: the maps carry "
            "no location; check the seed export and the training"
        )
    miou = best.get("miou")
    if floor is not None and miou is not None and miou <= floor + BACKGROUND_MARGIN:
        flags["no_better_than_background"] = (
            f"seed mIoU {100 * miou:.1f} does not beat predicting background everywhere ({100 * floor:.1f}) by "
            f"more than {100 * BACKGROUND_MARGIN:.0f} point: the seeds have not learned to localise"
        )
    return {"background_only_miou": floor, "cams": dict(cams), "flags": flags}


def error_breakdown(confusion: Sequence[Sequence[int]]) -> dict[str, float | None]:
    """Where a labelling's object pixels go, from its confusion matrix (rows: ground truth; label 0 is
    background): of the ground-truth foreground the share labelled with its own class (``correct``), with
    background (``missed``) or with another foreground class (``confused``); of the predicted foreground the
    share lying on background (``false_foreground``); and ``foreground_iou``, objects vs background with the
    classes ignored. ``None`` where a share has no pixels to be taken of."""
    counts = np.asarray(confusion, dtype=np.float64)
    objects = counts[1:, :].sum()
    predicted = counts[:, 1:].sum()
    correct = float(np.trace(counts[1:, 1:]))
    missed = float(counts[1:, 0].sum())
    either = counts.sum() - counts[0, 0]

    def share(part: float, whole: float) -> float | None:
        return float(part / whole) if whole else None

    return {
        "correct": share(correct, objects),
        "missed": share(missed, objects),
        "confused": share(objects - correct - missed, objects),
        "false_foreground": share(float(counts[0, 1:].sum()), predicted),
        "foreground_iou": share(float(counts[1:, 1:].sum()), either),
    }


class ClassPresence:
    """Image-level errors of a labelling: how many images it gives a foreground class the image does not
    contain (``names_absent_class``), and how many it leaves a contained class out of entirely
    (``misses_present_class``). Pixels ignored in the ground truth or left unlabelled are not looked at."""

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index
        self.images = 0
        self.names_absent = 0
        self.misses_present = 0

    def update(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        """Count one image's ``prediction`` against its ``truth`` (same shape, label 0 = background)."""
        valid = (truth != self.ignore_index) & (prediction != self.ignore_index)
        present = set(np.unique(truth[truth != self.ignore_index]).tolist()) - {0}
        named = set(np.unique(prediction[valid]).tolist()) - {0}
        self.images += 1
        self.names_absent += bool(named - present)
        self.misses_present += bool(present - named)

    def summary(self) -> dict[str, Any]:
        """``images`` and the two shares (``None`` before any image)."""
        share = (lambda count: count / self.images) if self.images else (lambda count: None)
        return {"images": self.images, "names_absent_class": share(self.names_absent),
                "misses_present_class": share(self.misses_present)}


class MaskScoring:
    """A labelling scored image by image against its truth: the confusion matrix (predicted 255 = left
    unlabelled, not scored) and ``ClassPresence``; ``result`` is ``ConfusionMatrix.scores`` with
    ``diagnostics.errors`` (``error_breakdown`` + the presence shares) — what ``evaluate_masks`` writes."""

    def __init__(self, num_labels: int) -> None:
        self.matrix = ConfusionMatrix(num_labels)
        self.presence = ClassPresence(IGNORE_INDEX)

    def update(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        self.matrix.update(prediction, truth, prediction_ignore_index=IGNORE_INDEX)
        self.presence.update(prediction, truth)

    def result(self, class_names: Sequence[str]) -> dict[str, Any]:
        scores = self.matrix.scores(class_names)
        return {**scores, "diagnostics": {"errors": {**error_breakdown(scores["confusion"]),
                                                     **self.presence.summary()}}}


def describe_errors(errors: Mapping[str, Any]) -> str:
    """One line of an ``error_breakdown`` (+ ``ClassPresence`` summary) for a log."""
    def percent(key: str) -> str:
        value = errors.get(key)
        return "–" if value is None else f"{100 * value:.1f} %"
    line = (f"{percent('correct')} to their class, {percent('missed')} to background, {percent('confused')} to "
            f"another class; {percent('false_foreground')} of the predicted foreground on background; "
            f"foreground IoU {percent('foreground_iou')}")
    if errors.get("names_absent_class") is not None:
        line += f"; {percent('names_absent_class')} of the images given a class they do not contain"
    return line


def mean_row_perplexity(weights: np.ndarray) -> float:
    """How many entries each row of a non-negative matrix (an attention's rows over the patches) effectively
    spreads over: the mean over rows of exp(entropy) of the row normalised to sum 1 — 1 for a row on one
    entry, the row length for a flat one."""
    rows = np.asarray(weights, dtype=np.float64)
    rows = rows / np.clip(rows.sum(axis=-1, keepdims=True), 1e-12, None)
    return float(np.exp(-(rows * np.log(np.clip(rows, 1e-12, None))).sum(axis=-1)).mean())
