"""Pseudo-masks from CAM seeds by the dense CRF on ``[background; class maps]`` (stage ``refine_crf``).

Seeds without a background map get one from ``background`` (a resolved mapping: ``{"mode": "threshold",
"threshold": t}`` = a constant plane, the seed evaluation's threshold; ``{"mode": "power", "alpha": a}`` =
``(1 - max_c cam_c) ** a`` as PSA and MCTformer do; ``BACKGROUND_MODES``); seeds with their own background
channel use it as stored. Per image the scores are clipped at 0 and normalised to sum to 1 per pixel
(uniform where they sum to 0), refined by :func:`wsss_core.refine.crf.crf_probabilities`, and the argmax
mapped back to label ids through the seed keys. :func:`refine_split` runs a split, spreading the CRF over
``num_workers`` processes when more than one.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from wsss_core.io.seed_maps import SeedMaps
from wsss_core.io.seed_store import MaskStoreWriter, SeedStore
from wsss_core.refine.crf import crf_probabilities
from wsss_core.refine.settings import CRFParams
from wsss_core.registry import Registry
from wsss_core.utils.progress import progress

BackgroundFn = Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]
BACKGROUND_MODES: Registry[BackgroundFn] = Registry("background mode")


@BACKGROUND_MODES.register("threshold")
def constant_background(maps: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    """A constant background score: the seed evaluation's best threshold."""
    return np.full((1,) + maps.shape[1:], settings["threshold"], dtype=np.float32)


@BACKGROUND_MODES.register("power")
def power_background(maps: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    """PSA's background score ``(1 - max_c cam_c) ** alpha``."""
    top = maps.max(axis=0, keepdims=True) if len(maps) else np.zeros((1,) + maps.shape[1:], np.float32)
    return np.power(np.clip(1.0 - top, 0.0, 1.0), float(settings["alpha"])).astype(np.float32)


def seed_probabilities(seeds: SeedMaps, background: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel probabilities ``[K, H, W]`` over [background; seed classes] and their label ids."""
    maps = np.asarray(seeds.maps, dtype=np.float32)
    keys = np.asarray(seeds.keys, dtype=np.int64)
    if not seeds.has_background:
        maps = np.concatenate([BACKGROUND_MODES.get(background["mode"])(maps, background), maps])
        keys = np.concatenate([np.zeros(1, dtype=np.int64), keys])
    maps = np.clip(maps, 0.0, None)
    total = maps.sum(axis=0, keepdims=True)
    uniform = np.full_like(maps, 1.0 / len(maps))
    probabilities = np.where(total > 0, maps / np.where(total > 0, total, 1.0), uniform)
    return probabilities.astype(np.float32), keys


def refine_image(image: np.ndarray, seeds: SeedMaps, background: Mapping[str, Any], params: CRFParams) -> np.ndarray:
    """Label-space ``uint8 [H, W]`` pseudo mask of one image."""
    probabilities, keys = seed_probabilities(seeds, background)
    if len(keys) == 1:  # a single label: nothing for the CRF to decide
        return np.full(image.shape[:2], keys[0], dtype=np.uint8)
    refined = crf_probabilities(image, probabilities, params)
    return keys[np.argmax(refined, axis=0)].astype(np.uint8)


def _refine_job(job: tuple[np.ndarray, SeedMaps, Mapping[str, Any], CRFParams]) -> np.ndarray:
    return refine_image(*job)


def _batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def refine_split(
    store: SeedStore,
    reader: Any,
    ids: Sequence[str],
    writer: MaskStoreWriter,
    background: Mapping[str, Any],
    params: CRFParams,
    num_workers: int = 0,
) -> float:
    """Refine every image of ``ids`` into ``writer``; returns images per second."""
    started = time.perf_counter()
    pool = multiprocessing.get_context("spawn").Pool(num_workers) if num_workers > 1 else None
    try:
        # the main process reads (cheap), the workers run the CRF; batches bound the memory in flight
        batches = list(_batches(ids, max(1, 4 * num_workers)))
        for batch in progress(batches, "dense CRF", total=len(batches)):
            jobs = [(reader.image(image_id), store.get(image_id), background, params) for image_id in batch]
            masks = pool.map(_refine_job, jobs) if pool else [_refine_job(job) for job in jobs]
            for image_id, mask in zip(batch, masks):
                writer.add(image_id, mask)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return len(ids) / max(time.perf_counter() - started, 1e-9)


__all__ = ["BACKGROUND_MODES", "refine_image", "refine_split", "seed_probabilities"]
