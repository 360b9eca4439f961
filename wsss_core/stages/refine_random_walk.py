"""Stage ``refine_random_walk``: pseudo-masks from seeds by the random walk of a trained IRN or PSA model.

    python -m wsss_core.stages.refine_random_walk --config JSON --seeds SEEDS.h5 --model model.pt \\
        --output MASKS.h5

Stage keys (``config["stage"]``): ``refine`` (``irn`` | ``psa``, must match the model file), ``split``
(default ``train_aug``: every image feeds the segmentation network; ``train`` ⊂ ``train_aug`` is scored
from the same store), the method block ``irn`` / ``psa`` (the random-walk keys — IRN
``background``, ``sem_seg_bg_threshold``, ``cam_power``, ``walk_radius``, ``beta``, ``exp_times``; PSA
``background``, ``background_alpha``, ``background_constant``, ``radius``, ``beta``, ``logt`` — are read
from here, so they can be retuned without retraining; the network keys must describe the trained model). The
``device`` is a run-time setting (``--runtime``, :mod:`wsss_core.runtime`), not part of the identity.

The walk is the sparse one of :mod:`wsss_core.refine.random_walk` (memory linear in the pixels, no
dense ``(HW/16)²`` matrix). The mask store records throughput and the source artefacts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from wsss_core import runtime
from wsss_core.errors import StoreError
from wsss_core.io.seed_store import MaskStoreWriter, SeedStore
from wsss_core.models.weights import WeightsCatalog
from wsss_core.refine.affinity import AffinityRefiner
from wsss_core.refine.seed_adapter import to_refinement_seeds
from wsss_core.segmentation import NORMALIZATIONS
from wsss_core.stages import _cli
from wsss_core.stages.affinity_labels import refiner_from_stage, seed_background_kept
from wsss_core.stages._shared import expected_method, missing_ids, open_reader, source_record, stage_config
from wsss_core.utils.device import resolve_device
from wsss_core.utils.progress import progress
from wsss_core.utils.provenance import provenance

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.refine_random_walk"


class _NoWeights(WeightsCatalog):
    """The trained state dict replaces every pretrained weight, so none is loaded."""

    def __init__(self) -> None:
        super().__init__({})

    def get(self, key: str | None) -> None:
        return None


def load_model(refiner: AffinityRefiner, settings: Any, path: Path, num_classes: int,
               device: torch.device) -> torch.nn.Module:
    """The trained affinity network of ``path`` in eval mode on ``device``."""
    if not path.is_file():
        raise StoreError(f"affinity model {path} does not exist; run train_affinity first")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or checkpoint.get("refine") != refiner.name:
        found = checkpoint.get("refine") if isinstance(checkpoint, dict) else None
        raise StoreError(f"{path} is not a {refiner.name} affinity model (it says {found!r}); check stage.refine "
                         "or re-run train_affinity")
    if checkpoint.get("num_classes") != num_classes:
        raise StoreError(f"{path} was trained on a dataset with {checkpoint.get('num_classes')} classes, not "
                         f"{num_classes}; re-run train_affinity for this dataset")
    model = refiner.build_model(settings, _NoWeights())
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise StoreError(f"{path} does not fit the network described by stage.{refiner.name} "
                         f"({str(error).splitlines()[0]}); use the settings it was trained with") from None
    return model.to(device).eval()


def refine(config: dict[str, Any], seeds_path: Path, model_path: Path, output: Path) -> float:
    """Write the pseudo-masks of the split; returns images per second."""
    run_time = runtime.settings(config)  # device: not in the provenance hash
    config = runtime.identity(config)
    stage = stage_config(config)
    refiner = refiner_from_stage(stage)
    settings = refiner.settings(stage)
    split = stage.get("split", "train_aug")
    reader = open_reader(config)
    store = SeedStore(seeds_path)
    store.check(method=expected_method(config), num_classes=reader.num_classes)
    ids = reader.ids(split)
    missing_ids(store, ids, "seed store")
    keep_background = seed_background_kept(refiner, settings, store)
    device = resolve_device(run_time.get("device", "auto"))
    model = load_model(refiner, settings, model_path, reader.num_classes, device)
    normalization = NORMALIZATIONS["imagenet"]
    attrs = {
        "split": split,
        "refine": refiner.name,
        "settings": settings.model_dump(),
        "seed_normalization": store.normalization,
        "seeds": source_record(seeds_path),
        "model": source_record(model_path),
        "provenance": provenance(config, STAGE),
    }
    started = time.perf_counter()
    with MaskStoreWriter(output, num_classes=reader.num_classes, method=store.method, attrs=attrs) as writer:
        for image_id in progress(ids, f"{refiner.name} random walk"):
            image = reader.image(image_id)
            seeds = store.get(image_id)
            if seeds.maps.shape[1:] != image.shape[:2]:
                raise StoreError(f"seeds of '{image_id}' are {seeds.maps.shape[1:]} but the image is "
                                 f"{image.shape[:2]}; re-run export_seeds for this dataset")
            writer.add(image_id, refiner.pseudo_mask(model, normalization(image).to(device),
                                                     to_refinement_seeds(seeds, keep_background), settings))
        speed = len(ids) / max(time.perf_counter() - started, 1e-9)
        writer.attrs["images_per_second"] = float(speed)
    LOG.info("%s random walk on %d images of %s: %.2f images/s -> %s", refiner.name, len(ids), split, speed, output)
    return speed


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", required=True, type=Path, help="seed store (HDF5) of the split")
    parser.add_argument("--model", required=True, type=Path, help="train_affinity model file")
    parser.add_argument("--output", required=True, type=Path, help="pseudo-mask store (HDF5) to write")
    args = parser.parse_args(argv)
    _cli.run(lambda: refine(args.config, args.seeds, args.model, args.output))


if __name__ == "__main__":
    main()
