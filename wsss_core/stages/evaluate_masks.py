"""Stage ``evaluate_masks``: score a mask store (pseudo masks or segmentation predictions) on a split.

    python -m wsss_core.stages.evaluate_masks --config JSON --masks MASKS.h5 --output scores.json \\
        [--sources SEEDS.h5 EVAL.json MODEL.pt ...]

Stage keys: ``split`` (default ``"train"``). Pixels the masks leave unlabelled (255) are not scored;
their share of the valid ground-truth pixels is reported as ``ignored_fraction``. The output records
the store's provenance and, for every ``--sources`` path, the provenance found in it, so a
``miou.json`` says which seeds, masks and model produced it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import wsss_core.data
from wsss_core.errors import ConfigError, StoreError
from wsss_core.evaluation.metrics import ConfusionMatrix, label_names
from wsss_core.io.seed_store import MaskStore
from wsss_core.stages import _cli
from wsss_core.utils.atomic import write_json
from wsss_core.utils.progress import progress
from wsss_core.utils.provenance import provenance

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.evaluate_masks"


def stage_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``stage`` mapping of a stage configuration (``{}`` when absent)."""
    stage = config.get("stage") or {}
    if not isinstance(stage, Mapping):
        raise ConfigError(f"'stage' must be a mapping of stage parameters, got {type(stage).__name__}")
    return dict(stage)


def open_reader(config: Mapping[str, Any]) -> Any:
    """The dataset reader for ``config["dataset"]``."""
    if "dataset" not in config:
        raise ConfigError("the stage configuration has no 'dataset' key; the rule must pass it")
    return wsss_core.data.open_dataset(config["dataset"])


def expected_method(config: Mapping[str, Any]) -> str | None:
    """The method named in the configuration, or None for stages run without one."""
    method = config.get("method") or {}
    return method.get("name") if isinstance(method, Mapping) else None


def read_provenance(path: str | Path) -> dict[str, Any] | None:
    """The ``provenance`` recorded in an artefact (JSON key, HDF5 attribute or checkpoint field)."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"--sources: {path} does not exist; pass the artefacts this evaluation depends on")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return json.loads(path.read_text()).get("provenance")
    if suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r", locking=False) as handle:
            value = handle.attrs.get("provenance")
        return json.loads(value) if value is not None else None
    if suffix in (".pt", ".pth"):
        import torch

        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a checkpoint holding objects weights_only refuses
            LOG.warning("cannot read provenance from %s (%s)", path, error)
            return None
        return checkpoint.get("provenance") if isinstance(checkpoint, Mapping) else None
    return None


def source_record(path: str | Path) -> dict[str, Any]:
    """Path of an artefact plus who made it (stage, config hash, code fingerprint, git commit)."""
    found = read_provenance(path) or {}
    return {
        "path": str(path),
        **{key: found.get(key) for key in ("stage", "config_hash", "code_fingerprint", "git_commit")},
    }


def evaluate_masks(masks: MaskStore, reader: Any, ids: Sequence[str]) -> dict[str, Any]:
    """Dataset-level scores of ``masks`` against the reader's ground truth on ``ids``."""
    matrix = ConfusionMatrix(reader.num_classes + 1)
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
        matrix.update(prediction, truth, prediction_ignore_index=255)
    return matrix.scores(label_names(reader))


def missing_ids(store: Any, ids: Sequence[str], what: str) -> None:
    """StoreError when ``store`` lacks some of the split's ``ids``."""
    missing = [image_id for image_id in ids if image_id not in store]
    if missing:
        raise StoreError(
            f"{what} {store.path} lacks {len(missing)} of the {len(ids)} images of the split "
            f"(first: {', '.join(missing[:3])}); re-run the stage that writes it for this split"
        )


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
