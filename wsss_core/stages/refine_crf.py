"""Stage ``refine_crf``: pseudo masks from CAM seeds by a dense CRF on [background; class maps].

    python -m wsss_core.stages.refine_crf --config JSON --seeds SEEDS.h5 --seed-eval EVAL.json \\
        --output MASKS.h5

Stage keys (``RefineCRFJob`` in ``wsss_core/stages/settings.py``; config.yaml: ``stages.refine.crf``):

* ``split`` (default ``"train_aug"``): the images to refine (all of them feed the segmentation net).
* ``crf``: ``CRFParams`` fields (default PSA's: 10 steps, Gaussian 3/3, bilateral 80/13/10).
* ``background``: how seeds without a background channel get one —
  ``{"mode": "threshold"}`` uses the constant best threshold of ``--seed-eval`` (the evaluation's
  ``argmax([t; cams])`` turned into probabilities; ``threshold_from: held_out`` takes the threshold its
  held-out protocol chose on other images instead of the oracle one), ``{"mode": "power", "alpha": a}`` uses
  ``(1 - max_c cam_c) ** a`` as PSA and MCTformer do. Seeds with their own background channel use it
  as stored.

The refinement itself is :mod:`wsss_core.refine.crf_masks`. The run-time ``num_workers`` > 1 spreads the CRF
over processes. The mask store records throughput (``images_per_second``), the CRF and background settings,
and the provenance of the seeds and of this stage.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsss_core import runtime
from wsss_core.errors import ConfigError, StoreError
from wsss_core.io.seed_store import MaskStoreWriter, SeedStore
from wsss_core.refine.crf_masks import refine_split
from wsss_core.stages import _cli
from wsss_core.stages._shared import (
    expected_method,
    missing_ids,
    open_reader,
    section_settings,
    source_record,
    stage_config,
)
from wsss_core.stages.settings import CRFBackground, RefineCRFJob
from wsss_core.utils.provenance import provenance

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.refine_crf"


def background_settings(background: CRFBackground, seed_eval: Path | None, store: SeedStore) -> dict[str, Any]:
    """The resolved ``background`` settings (mode plus the threshold or alpha it needs)."""
    if store.has_background:
        return {"mode": "stored"}
    if background.mode == "power":
        return {"mode": "power", "alpha": float(background.alpha)}  # type: ignore[arg-type]  (checked: set)
    if seed_eval is None:
        raise ConfigError("stage.background.mode 'threshold' needs --seed-eval (the evaluate_seeds JSON)")
    source = background.threshold_from
    resolved = {"mode": "threshold", "threshold": seed_eval_threshold(seed_eval, store, source)}
    return resolved if source == "oracle" else {**resolved, "threshold_from": source}


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
        settings = section_settings(stage, RefineCRFJob)
        reader = open_reader(config)
        store = SeedStore(args.seeds)
        store.check(method=expected_method(config), num_classes=reader.num_classes)
        background = background_settings(settings.background, args.seed_eval, store)
        ids = reader.ids(split)
        missing_ids(store, ids, "seed store")
        num_workers = int(run_time.get("num_workers", 0) or 0)
        attrs = {
            "split": split,
            "crf": settings.crf.model_dump(),
            "background": background,
            "seeds": source_record(args.seeds),
            "provenance": provenance(config, STAGE),
        }
        with MaskStoreWriter(args.output, num_classes=reader.num_classes, method=store.method, attrs=attrs) as writer:
            speed = refine_split(store, reader, ids, writer, background, settings.crf, num_workers)
            writer.attrs["images_per_second"] = float(speed)
        LOG.info("dense CRF on %d images of %s: %.2f images/s -> %s", len(ids), split, speed, args.output)

    _cli.run(run)


if __name__ == "__main__":
    main()
