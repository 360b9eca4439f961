"""Stage ``evaluate_masks``: score a mask store (pseudo masks or segmentation predictions) on a split.

    python -m wsss_core.stages.evaluate_masks --config JSON --masks MASKS.h5 --output scores.json \\
        [--sources SEEDS.h5 EVAL.json MODEL.pt ...]

Stage keys: ``split`` (default ``"train"``). Pixels the masks leave unlabelled (255) are not scored;
their share of the valid ground-truth pixels is reported as ``ignored_fraction``; ``diagnostics.errors`` says
where the object pixels went (their class, background, another class), the class-agnostic foreground IoU
and the share of images given a class they do not contain (``evaluation.diagnostics``). The output records
the store's provenance and, for every ``--sources`` path, the provenance found in it, so a
``miou.json`` says which seeds, masks and model produced it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsss_core.errors import StoreError
from wsss_core.evaluation.diagnostics import MaskScoring, describe_errors
from wsss_core.evaluation.metrics import label_names
from wsss_core.io.seed_store import MaskStore
from wsss_core.stages import _cli
from wsss_core.stages._shared import missing_ids, open_reader, source_record, stage_config
from wsss_core.utils.atomic import write_json
from wsss_core.utils.progress import progress
from wsss_core.utils.provenance import provenance

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.evaluate_masks"


def evaluate_masks(masks: MaskStore, reader: Any, ids: Sequence[str]) -> dict[str, Any]:
    """Dataset-level scores of ``masks`` against the reader's ground truth on ``ids``."""
    scoring = MaskScoring(reader.num_classes + 1)
    for image_id in progress(ids, "evaluate masks"):
        prediction = masks.get(image_id)
        truth = reader.mask(image_id)
        if prediction.shape != truth.shape:
            raise StoreError(
                f"mask of '{image_id}' in {masks.path} is {prediction.shape} but its ground truth is "
                f"{truth.shape}; the store belongs to another dataset: re-run the stage that wrote it"
            )
        labelled = prediction[prediction != 255]
        if labelled.size and labelled.max() > reader.num_classes:
            raise StoreError(f"mask of '{image_id}' in {masks.path} has labels above {reader.num_classes}")
        scoring.update(prediction, truth)
    return scoring.result(label_names(reader))


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--masks", required=True, type=Path, help="mask store (HDF5) to score")
    parser.add_argument("--output", required=True, type=Path, help="scores JSON to write")
    parser.add_argument("--sources", nargs="*", default=[], type=Path, help="artefacts to credit")
    args = parser.parse_args(argv)

    def run() -> None:
        config = args.config
        split = stage_config(config).get("split", "train")
        reader = open_reader(config)
        masks = MaskStore(args.masks)
        masks.check(num_classes=reader.num_classes)
        ids = reader.ids(split)
        missing_ids(masks, ids, "mask store")
        scores = evaluate_masks(masks, reader, ids)
        LOG.info("%s on %s (%d images): mIoU %.4f", args.masks, split, len(ids), scores["miou"] or 0.0)
        LOG.info("where the object pixels went: %s", describe_errors(scores["diagnostics"]["errors"]))
        write_json(
            args.output,
            {
                "split": split,
                "num_images": len(ids),
                **scores,
                "masks": source_record(args.masks),
                "sources": [source_record(path) for path in args.sources],
                "provenance": provenance(config, STAGE),
            },
        )

    _cli.run(run)


if __name__ == "__main__":
    main()
