"""Stage ``affinity_labels``: inter-pixel relation labels for IRN or PSA from CAM seeds (dense CRF).

    python -m wsss_core.stages.affinity_labels --config JSON --seeds SEEDS.h5 --output LABELS.h5

Stage keys (``config["stage"]``):

* ``refine``: ``irn`` or ``psa`` (an ``AFFINITY_REFINERS`` name).
* ``split`` (default ``train_aug``): the images to label (the affinity network trains on all of them).
* ``irn`` / ``psa``: the method's settings (``IRNSettings`` / ``PSASettings``); this stage reads the
  thresholds (IRN ``conf_fg_threshold``, ``conf_bg_threshold``) or the two α (PSA ``low_alpha``,
  ``high_alpha``).
* ``crf`` (optional): ``CRFParams`` fields overriding the method's kernels (IRN: bilateral 50/5;
  PSA: 80/13).

Seeds of any method pass through :func:`wsss_core.refine.seed_adapter.to_refinement_seeds` first (the
one documented conversion; it keeps the background channel only for a refiner that reads it, IRN's
``background: seeds``, and the stage stops before any work if the seeds have none). The output is a mask
store (``uint8``, 0 background, 1..C, 255 unsure) whose attributes record the refiner, its settings, the CRF,
the seeds' normalisation and provenance.
The run-time ``num_workers`` (``--runtime``) > 1 spreads the CRF over processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsss_core import runtime
from wsss_core.errors import ConfigError, StoreError
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.io.seed_store import MaskStoreWriter, SeedStore
from wsss_core.refine.affinity import AFFINITY_REFINERS, AffinityRefiner
from wsss_core.refine.crf import CRFParams
from wsss_core.refine.seed_adapter import to_refinement_seeds
from wsss_core.stages import _cli
from wsss_core.stages._shared import expected_method, missing_ids, open_reader, source_record, stage_config
from wsss_core.utils.progress import progress
from wsss_core.utils.provenance import provenance

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.affinity_labels"


def refiner_from_stage(stage: dict[str, Any]) -> AffinityRefiner:
    """The refiner named by ``stage.refine``."""
    name = stage.get("refine")
    if name not in AFFINITY_REFINERS:
        raise ConfigError(f"stage.refine is {name!r}; use one of {', '.join(AFFINITY_REFINERS.names())}")
    return AFFINITY_REFINERS.get(name)()  # type: ignore[operator]


def label_crf(refiner: AffinityRefiner, fields: Mapping[str, Any] | None) -> CRFParams:
    """The CRF of the relation labels: the refiner's kernels (IRN: ``LABEL_CRF_PARAMS``; PSA: ``CRFParams()``)
    with the fields of ``stage.crf`` (config.yaml: ``stages.refine.<refine>.label_crf``) on top."""
    return CRFParams.load({**refiner.default_crf.model_dump(), **(fields or {})}, "stage.crf")


def seed_background_kept(refiner: AffinityRefiner, settings: Any, store: SeedStore) -> bool:
    """Whether the refiner reads the seeds' own background channel; a ConfigError, before any work, when
    it does and the seed store has none."""
    keep = refiner.uses_seed_background(settings)
    if keep and not store.has_background:
        raise ConfigError(
            f"stages.refine.{refiner.name}.settings.background = 'seeds' (preset sipe) reads the seeds' "
            f"background channel, but the seeds of {store.method!r} have none: use background: threshold "
            "(preset irn or rib) for this method"
        )
    return keep


def label_image(refiner: AffinityRefiner, image: np.ndarray, seeds: SeedMaps, settings: Any, crf: CRFParams,
                image_id: str = "?", keep_background: bool = False) -> np.ndarray:
    """Relation labels of one image (its seeds must have the image's size)."""
    if seeds.maps.shape[1:] != image.shape[:2]:
        raise StoreError(
            f"seeds of '{image_id}' are {seeds.maps.shape[1:]} but the image is {image.shape[:2]}; the seed "
            "store belongs to another dataset: re-run export_seeds"
        )
    return refiner.relation_labels(image, to_refinement_seeds(seeds, keep_background), settings, crf)


def _label_job(job: tuple[AffinityRefiner, np.ndarray, SeedMaps, Any, CRFParams, str, bool]) -> np.ndarray:
    return label_image(*job)


def _batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def label_split(refiner: AffinityRefiner, settings: Any, crf: CRFParams, store: SeedStore, reader: Any,
                ids: Sequence[str], writer: MaskStoreWriter, num_workers: int = 0,
                keep_background: bool = False) -> float:
    """Write the relation labels of ``ids`` (``keep_background``: :func:`seed_background_kept`); returns images
    per second."""
    started = time.perf_counter()
    pool = multiprocessing.get_context("spawn").Pool(num_workers) if num_workers > 1 else None
    try:
        batches = list(_batches(ids, max(1, 4 * num_workers)))
        for batch in progress(batches, f"{refiner.name} relation labels", total=len(batches)):
            jobs = [(refiner, reader.image(i), store.get(i), settings, crf, i, keep_background) for i in batch]
            labels = pool.map(_label_job, jobs) if pool else [_label_job(job) for job in jobs]
            for image_id, label in zip(batch, labels):
                writer.add(image_id, label)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return len(ids) / max(time.perf_counter() - started, 1e-9)


def make_labels(config: dict[str, Any], seeds_path: Path, output: Path) -> None:
    run_time = runtime.settings(config)  # num_workers: not in the provenance hash
    config = runtime.identity(config)
    stage = stage_config(config)
    refiner = refiner_from_stage(stage)
    settings = refiner.settings(stage)
    crf = label_crf(refiner, stage.get("crf"))
    split = stage.get("split", "train_aug")
    reader = open_reader(config)
    store = SeedStore(seeds_path)
    store.check(method=expected_method(config), num_classes=reader.num_classes)
    ids = reader.ids(split)
    missing_ids(store, ids, "seed store")
    keep_background = seed_background_kept(refiner, settings, store)
    attrs = {
        "split": split,
        "refine": refiner.name,
        "settings": settings.model_dump(),
        "crf": crf.model_dump(),
        "seed_normalization": store.normalization,
        "seeds": source_record(seeds_path),
        "provenance": provenance(config, STAGE),
    }
    num_workers = int(run_time.get("num_workers", 0) or 0)
    with MaskStoreWriter(output, num_classes=reader.num_classes, method=store.method, attrs=attrs) as writer:
        speed = label_split(refiner, settings, crf, store, reader, ids, writer, num_workers, keep_background)
        writer.attrs["images_per_second"] = float(speed)
    LOG.info("%s relation labels of %d images of %s: %.2f images/s -> %s", refiner.name, len(ids), split, speed, output)


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", required=True, type=Path, help="seed store (HDF5) of the split")
    parser.add_argument("--output", required=True, type=Path, help="relation-label mask store (HDF5) to write")
    args = parser.parse_args(argv)
    _cli.run(lambda: make_labels(args.config, args.seeds, args.output))


if __name__ == "__main__":
    main()
