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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

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


def cam_statistics(maps: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Share of images whose foreground maps are all zero / flat; ``maps`` yields ``(maps, keys)``."""
    images = empty = constant = 0
    for stack, keys in maps:
        foreground = stack[np.asarray(keys) != 0]
        images += 1
        if foreground.size == 0 or float(foreground.max()) <= EMPTY:
            empty += 1
        elif all(float(m.max() - m.min()) < EMPTY for m in foreground):
            constant += 1
    return {"images": images, "empty_fraction": empty / max(images, 1), "constant_fraction": constant / max(images, 1)}


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
    pairs = hits = 0
    energy_sum = area_sum = objects_sum = objects_area_sum = 0.0
    for stack, keys, gt in maps:
        gt = np.asarray(gt)
        valid = gt != ignore_index
        total = int(valid.sum())
        if total == 0:
            continue
        objects = valid & (gt != 0)
        objects_area = int(objects.sum()) / total
        for channel, key in zip(np.asarray(stack, dtype=np.float64), np.asarray(keys)):
            inside = gt == int(key)
            count = int(inside.sum())
            if int(key) == 0 or count == 0:
                continue
            pairs += 1
            area_sum += count / total
            objects_area_sum += objects_area
            masked = np.where(valid, channel, 0.0)
            mass = float(masked.sum())
            if mass <= EMPTY:
                continue
            hits += bool(inside.flat[int(masked.argmax())])
            energy_sum += float(masked[inside].sum()) / mass
            objects_sum += float(masked[objects].sum()) / mass
    if pairs == 0:
        return {"pairs": 0, "pointing_accuracy": None, "pointing_chance": None, "energy_inside": None,
                "energy_gain": None, "energy_on_objects": None, "objects_chance": None}
    area = area_sum / pairs
    energy = energy_sum / pairs
    return {"pairs": pairs, "pointing_accuracy": hits / pairs, "pointing_chance": area, "energy_inside": energy,
            "energy_gain": energy / area if area > 0 else None, "energy_on_objects": objects_sum / pairs,
            "objects_chance": objects_area_sum / pairs}


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
