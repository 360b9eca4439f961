"""Stage ``refine_crf``: pseudo masks from CAM seeds by a dense CRF on [background; class maps].

    python -m wsss_core.stages.refine_crf --config JSON --seeds SEEDS.h5 --seed-eval EVAL.json \\
        --output MASKS.h5

Stage keys:

* ``split`` (default ``"train_aug"``): the images to refine (all of them feed the segmentation net).
* ``crf``: ``CRFParams`` fields (default PSA's: 10 steps, Gaussian 3/3, bilateral 80/13/10).
* ``background``: how seeds without a background channel get one —
  ``{"mode": "threshold"}`` uses the constant best threshold of ``--seed-eval`` (the evaluation's
  ``argmax([t; cams])`` turned into probabilities; ``threshold_from: held_out`` takes the threshold its
  held-out protocol chose on other images instead of the oracle one), ``{"mode": "power", "alpha": a}`` uses
  ``(1 - max_c cam_c) ** a`` as PSA and MCTformer do. Seeds with their own background channel use it
  as stored.

Per image the scores are normalised to sum to 1 per pixel, refined by the CRF, and the argmax mapped
back to label ids through the seed keys. ``num_workers`` > 1 spreads the CRF over processes. The
mask store records throughput (``images_per_second``), the CRF and background settings, and the
provenance of the seeds and of this stage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsss_core import runtime
from wsss_core.errors import ConfigError, StoreError
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.io.seed_store import MaskStoreWriter, SeedStore
from wsss_core.refine.crf import CRFParams, crf_probabilities
from wsss_core.registry import Registry
from wsss_core.stages import _cli
from wsss_core.stages._shared import (
    expected_method,
    missing_ids,
    open_reader,
    source_record,
    stage_config,
)
from wsss_core.utils.progress import progress
from wsss_core.utils.provenance import provenance

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.refine_crf"

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


def background_settings(stage: Mapping[str, Any], seed_eval: Path | None, store: SeedStore) -> dict[str, Any]:
    """The resolved ``background`` settings (mode plus the threshold or alpha it needs)."""
    settings = dict(stage.get("background") or {"mode": "threshold"})
    mode = settings.get("mode", "threshold")
    if mode not in BACKGROUND_MODES:
        raise ConfigError(f"stage.background.mode '{mode}' is unknown; use one of {BACKGROUND_MODES.names()}")
    settings["mode"] = mode
    if store.has_background:
        return {"mode": "stored"}
    if mode == "power":
        alpha = settings.get("alpha")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
            raise ConfigError(f"stage.background.alpha must be a positive number for mode 'power', got {alpha!r}")
        return {"mode": "power", "alpha": float(alpha)}
    if seed_eval is None:
        raise ConfigError("stage.background.mode 'threshold' needs --seed-eval (the evaluate_seeds JSON)")
    source = settings.get("threshold_from", "oracle")
    if source not in THRESHOLD_SOURCES:
        raise ConfigError(f"stage.background.threshold_from is '{source}'; use {' or '.join(THRESHOLD_SOURCES)}")
    resolved = {"mode": "threshold", "threshold": seed_eval_threshold(seed_eval, store, source)}
    return resolved if source == "oracle" else {**resolved, "threshold_from": source}


# oracle: best_threshold, tuned on the scored split (the papers); held_out: tuned on other images
THRESHOLD_SOURCES = ("oracle", "held_out")


def seed_eval_threshold(path: Path, store: SeedStore, source: str = "oracle") -> float:
    """The background threshold of an ``evaluate_seeds`` JSON made from ``store``: its best one
    (``oracle``), or the one its held-out protocol chose (``held_out``)."""
    if not path.is_file():
        raise StoreError(f"seed evaluation {path} does not exist; run evaluate_seeds first")
    evaluation = json.loads(path.read_text())
    threshold = evaluation.get("best_threshold")
    if source == "held_out":
        threshold = (evaluation.get("held_out") or {}).get("threshold")
        if not isinstance(threshold, (int, float)):
            raise StoreError(f"seed evaluation {path} has no held_out threshold: set stages.evaluate_seeds.held_out "
                             "(or stage.background.threshold_from: oracle)")
    if not isinstance(threshold, (int, float)):
        raise StoreError(f"seed evaluation {path} has no best_threshold; it scored seeds with a background channel")
    scored = (evaluation.get("seeds") or {}).get("config_hash")
    current = (store.attrs.get("provenance") or {}).get("config_hash")
    if scored and current and scored != current:
        raise StoreError(
            f"seed evaluation {path} scored another seed store (config hash {scored}) than {store.path} "
            f"({current}); re-run evaluate_seeds on this store"
        )
    return float(threshold)


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", required=True, type=Path, help="seed store (HDF5)")
    parser.add_argument("--seed-eval", type=Path, default=None, help="evaluate_seeds JSON (best threshold)")
    parser.add_argument("--output", required=True, type=Path, help="mask store (HDF5) to write")
    args = parser.parse_args(argv)

    def run() -> None:
        run_time = runtime.settings(args.config)  # num_workers: not in the provenance hash
        config = runtime.identity(args.config)
        stage = stage_config(config)
        split = stage.get("split", "train_aug")
        params = CRFParams.from_config(stage.get("crf"))
        reader = open_reader(config)
        store = SeedStore(args.seeds)
        store.check(method=expected_method(config), num_classes=reader.num_classes)
        background = background_settings(stage, args.seed_eval, store)
        ids = reader.ids(split)
        missing_ids(store, ids, "seed store")
        num_workers = int(run_time.get("num_workers", 0) or 0)
        attrs = {
            "split": split,
            "crf": dataclasses.asdict(params),
            "background": background,
            "seeds": source_record(args.seeds),
            "provenance": provenance(config, STAGE),
        }
        with MaskStoreWriter(args.output, num_classes=reader.num_classes, method=store.method, attrs=attrs) as writer:
            speed = refine_split(store, reader, ids, writer, background, params, num_workers)
            writer.attrs["images_per_second"] = float(speed)
        LOG.info("dense CRF on %d images of %s: %.2f images/s -> %s", len(ids), split, speed, args.output)

    _cli.run(run)


if __name__ == "__main__":
    main()
