"""Stage ``evaluate_seeds``: score CAM seeds against the ground truth of a split.

    python -m wsss_core.stages.evaluate_seeds --config JSON --seeds SEEDS.h5 --output eval.json

Stage keys: ``split`` (default ``"train"``: VOC's 1464 images, scored inside the train_aug store) and
``thresholds`` ``{start, stop, step}`` (default 0.05 … 0.95 by 0.01, both ends included). Seeds
without a background channel (MCTformer, CTI) are scored at every background threshold in one pass
and the best one (highest mIoU) is reported, as the papers choose it on train; seeds with their own
background channel are scored by argmax. ``held_out`` ``{tune_split, max_tune_images}`` (null = off)
also chooses the threshold on ``tune_split`` minus ``split`` and reports ``split`` at it, beside the
oracle numbers (:mod:`wsss_core.evaluation.threshold_protocol`). The JSON holds the best threshold, its
scores (mIoU, IoU, precision and recall per class and their means, confusion matrix), the sweep curve, the
diagnostics (flags, CAM statistics, threshold-free localisation: pointing game and energy inside; where the
object pixels went at the best threshold),
the held-out protocol's result (or null), counts, the seed store's provenance and this stage's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsss_core.errors import ConfigError
from wsss_core.evaluation.diagnostics import describe_errors, error_breakdown, seed_flags, seed_map_statistics
from wsss_core.evaluation.metrics import score_seeds_by_argmax, threshold_sweep
from wsss_core.evaluation.threshold_protocol import held_out_scores, held_out_settings
from wsss_core.io.seed_store import SeedStore
from wsss_core.stages import _cli
from wsss_core.stages._shared import (
    expected_method,
    missing_ids,
    open_reader,
    section_settings,
    source_record,
    stage_config,
)
from wsss_core.stages.settings import EvaluateSeedsStage, ThresholdGrid
from wsss_core.utils.atomic import write_json
from wsss_core.utils.progress import progress
from wsss_core.utils.provenance import provenance

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.evaluate_seeds"
def threshold_grid(spec: Mapping[str, Any] | ThresholdGrid | None) -> list[float]:
    """Thresholds ``start, start + step, …, stop`` (stop included), rounded to 6 decimals; the defaults
    of a missing key are :class:`~wsss_core.stages.settings.ThresholdGrid`'s."""
    grid = spec if isinstance(spec, ThresholdGrid) else ThresholdGrid.load(spec, "stage.thresholds")
    start, stop, step = grid.start, grid.stop, grid.step
    if stop < start:
        raise ConfigError(f"stage.thresholds: need stop >= start, got {grid.model_dump()}")
    count = int(np.floor((stop - start) / step + 1e-9)) + 1
    return [round(start + index * step, 6) for index in range(count)]


def evaluate_seeds(
    store: SeedStore, reader: Any, ids: Sequence[str], thresholds: Sequence[float]
) -> dict[str, Any]:
    """Sweep (no background channel) or argmax (background channel) scores of the seeds on ``ids``."""
    ids = progress(ids, "evaluate seeds", total=len(ids))
    if store.has_background:
        return score_seeds_by_argmax(store, reader, ids)
    return threshold_sweep(store, reader, ids, thresholds)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", required=True, type=Path, help="seed store (HDF5)")
    parser.add_argument("--output", required=True, type=Path, help="evaluation JSON to write")
    args = parser.parse_args(argv)

    def run() -> None:
        config = args.config
        stage = stage_config(config)
        split = stage.get("split", "train")
        thresholds = threshold_grid(section_settings(stage, EvaluateSeedsStage).thresholds)
        reader = open_reader(config)
        store = SeedStore(args.seeds)
        store.check(method=expected_method(config), num_classes=reader.num_classes)
        ids = reader.ids(split)
        missing_ids(store, ids, "seed store")
        result = evaluate_seeds(store, reader, ids, thresholds)
        protocol = held_out_settings(stage.get("held_out"), (config.get("dataset", {}).get("roles") or {}).get("train"))
        held_out = None
        if protocol is not None and not store.has_background:  # seeds with a bg channel tune nothing
            held_out = held_out_scores(store, reader, protocol, reader.ids(protocol["tune_split"]), split, ids,
                                       result, thresholds)
        best = result["best"]
        LOG.info(
            "%s on %s (%d images): mIoU %.4f at background threshold %s",
            args.seeds, split, len(ids), best["miou"] or 0.0, result["best_threshold"],
        )
        cams, localisation = seed_map_statistics(
            (seeds.maps, seeds.keys, reader.mask(image_id)) for image_id, seeds in ((i, store.get(i)) for i in ids))
        diagnostics = seed_flags(result, thresholds, cams)
        diagnostics["localisation"] = localisation
        diagnostics["errors"] = error_breakdown(best["confusion"])  # at the best threshold
        LOG.info("at that threshold, where the object pixels went: %s", describe_errors(diagnostics["errors"]))
        LOG.info("localisation (%d image-class pairs): pointing %s (chance %s), energy inside %s (flat map %s), "
                 "on any object %s (flat map %s)", localisation["pairs"], *(_percent(localisation[key]) for key in (
                     "pointing_accuracy", "pointing_chance", "energy_inside", "pointing_chance", "energy_on_objects",
                     "objects_chance")))
        for name, message in diagnostics["flags"].items():
            LOG.warning("diagnostic %s: %s", name, message)
        write_json(
            args.output,
            {
                "split": split,
                "num_images": result["num_images"],
                "has_background": store.has_background,
                "normalization": store.normalization,
                "best_threshold": result["best_threshold"],
                "best": best,
                "sweep": result["sweep"],
                "diagnostics": diagnostics,
                "held_out": held_out,
                "seeds": source_record(args.seeds),
                "provenance": provenance(config, STAGE),
            },
        )

    _cli.run(run)


if __name__ == "__main__":
    main()
