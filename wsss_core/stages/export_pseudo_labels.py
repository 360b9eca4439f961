"""Stage ``export_pseudo_labels``: a single-stage method's own pseudo-masks into an HDF5 mask store.

    python -m wsss_core.stages.export_pseudo_labels --config JSON --model .../train/model.pt \
        --output .../masks/own/masks.h5

The single-stage methods train their decoder on labels they make themselves: PAR-refined CAM labels
(ToCo, MCC, AFA) or CARM labels (ECA), declared by their class (``Method.pseudo_labels``: the rule's name;
the workflow and this stage read that). ``Method.infer_pseudo_labels`` makes that label for a whole
image with the evaluation rule (one background threshold, no ignore band), so the same store can be
scored by ``evaluate_masks`` (the papers' "pseudo-label mIoU") and train DeepLab on the multi-stage
route (``pipeline.refine: own``). Reads ``dataset``, ``method``, ``stage.split`` (the training split),
and the run-time ``device``, ``num_workers`` (``--runtime``). The store records the method, the rule (``source`` = "par" | "carm"),
provenance and ``images_per_second``. A method without pseudo-labels of its own is a ConfigError.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from wsss_core import runtime
from wsss_core.data import open_dataset
from wsss_core.errors import ConfigError
from wsss_core.io.seed_store import MaskStoreWriter
from wsss_core.stages._cli import run, stage_parser
from wsss_core.stages.export_seeds import load_trained_model, prefetched_images
from wsss_core.utils.device import resolve_device, set_torch_threads
from wsss_core.utils.progress import progress
from wsss_core.utils.provenance import provenance
from wsss_core.workflow_config import own_pseudo_label_methods

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.export_pseudo_labels"


def export_pseudo_labels(config: Mapping[str, Any], model_path: Path, output: Path) -> float:
    """Write the method's pseudo-mask of every image of ``stage.split``; returns images per second."""
    run_time = runtime.settings(config)  # device, num_workers, threads: not in the provenance hash
    config = runtime.identity(config)
    split = dict(config.get("stage") or {}).get("split", "train_aug")
    set_torch_threads(run_time)
    reader = open_dataset(config["dataset"])
    method, model = load_trained_model(model_path, config, reader.num_classes)
    if method.pseudo_labels is None:
        raise ConfigError(
            f"method '{method.name}' makes no pseudo-labels of its own: set its pipeline.refine to crf, irn or "
            f"psa in config.yaml (refine: own is for {', '.join(own_pseudo_label_methods())})"
        )
    device = resolve_device(run_time.get("device", "auto"))
    model.to(device).eval()
    ids = reader.ids(split)
    attrs = {"split": split, "source": method.pseudo_labels, "provenance": provenance(dict(config), STAGE)}
    with MaskStoreWriter(output, num_classes=reader.num_classes, method=method.name, attrs=attrs) as writer:
        started = time.perf_counter()
        with torch.inference_mode():
            images = prefetched_images(reader, ids, int(run_time.get("num_workers", 0)))
            for image_id, image, labels in progress(images, f"{method.pseudo_labels} pseudo-labels {split}",
                                                    total=len(ids)):
                writer.add(image_id, method.infer_pseudo_labels(model, image, labels))
        seconds = time.perf_counter() - started
        speed = len(ids) / seconds if seconds > 0 else float("nan")
        writer.attrs.update({"images_per_second": round(speed, 3), "seconds": round(seconds, 2)})
    LOG.info("wrote %d %s pseudo-masks to %s (%.2f images/s)", len(ids), method.pseudo_labels, output, speed)
    return speed


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="trained model (…/train/model.pt)")
    parser.add_argument("--output", type=Path, required=True, help="mask store to write (…/masks/own/masks.h5)")
    args = parser.parse_args(argv)
    run(lambda: export_pseudo_labels(args.config, args.model, args.output))


if __name__ == "__main__":
    main()
