"""Stage ``export_seeds``: a trained method's CAM seeds for every image of a split, into an HDF5 store.

    python -m wsss_core.stages.export_seeds --config JSON --model .../train/model.pt --output .../seeds/train_aug.h5

Reads ``dataset``, ``method`` (its ``seeds`` settings may differ from training), ``stage.split``
(default ``train_aug``), ``device`` and optionally ``threads``. The network is rebuilt without
pretrained weights (the checkpoint holds every tensor), put in eval mode and run under
``torch.inference_mode``. The store records the
method, class count, seed normalisation, provenance and the measured ``images_per_second``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from wsss_core.data import open_dataset
from wsss_core.errors import StoreError
from wsss_core.io.seed_store import SeedStoreWriter
from wsss_core.methods.base import Method
from wsss_core.models.weights import PretrainedWeights, WeightsCatalog
from wsss_core.stages._cli import run, stage_parser
from wsss_core.methods.base import method_from_config
from wsss_core.utils.device import resolve_device, set_torch_threads
from wsss_core.utils.progress import progress
from wsss_core.utils.provenance import provenance

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.export_seeds"


class RandomInitCatalog(WeightsCatalog):
    """A catalog that answers every key with random initialisation: the trained checkpoint replaces
    all tensors, so no pretrained file is needed to rebuild a network."""

    def __init__(self) -> None:
        super().__init__({})

    def get(self, key: str | None) -> PretrainedWeights | None:
        return None


def load_trained_model(
    model_path: Path, config: Mapping[str, Any], num_classes: int
) -> tuple[Method, torch.nn.Module]:
    """The configured method and its network with the weights of ``model_path`` (a train_method output)."""
    if not model_path.is_file():
        raise StoreError(f"model file '{model_path}' does not exist: run the train_method stage first")
    checkpoint = torch.load(model_path, map_location="cpu", weights_only=True)
    method = method_from_config(config, num_classes)
    if checkpoint.get("method") != method.name or checkpoint.get("num_classes") != num_classes:
        raise StoreError(
            f"model file '{model_path}' holds method '{checkpoint.get('method')}' with "
            f"{checkpoint.get('num_classes')} classes, but the config asks for '{method.name}' with "
            f"{num_classes}; retrain or point --model at the right file"
        )
    model = method.build_model(RandomInitCatalog())
    model.load_state_dict(checkpoint["model"])
    return method, model


def export_seeds(config: Mapping[str, Any], model_path: Path, output: Path) -> float:
    """Write the seeds of every image of ``stage.split``; returns images per second."""
    split = dict(config.get("stage") or {}).get("split", "train_aug")
    set_torch_threads(config)
    reader = open_dataset(config["dataset"])
    method, model = load_trained_model(model_path, config, reader.num_classes)
    device = resolve_device(config.get("device", "auto"))
    model.to(device).eval()
    ids = reader.ids(split)
    attrs = {"split": split, "provenance": provenance(dict(config), STAGE)}
    with SeedStoreWriter(
        output, method=method.name, num_classes=reader.num_classes,
        normalization=method.seed_normalization, attrs=attrs,
    ) as writer:
        started = time.perf_counter()
        with torch.inference_mode():
            for image_id in progress(ids, f"seeds {split}"):
                seeds = method.infer_seeds(model, reader.image(image_id), reader.labels(image_id))
                writer.add(image_id, seeds.maps, seeds.keys)
        seconds = time.perf_counter() - started
        speed = len(ids) / seconds if seconds > 0 else float("nan")
        writer.attrs.update({"images_per_second": round(speed, 3), "seconds": round(seconds, 2)})
    LOG.info("wrote %d seed maps to %s (%.2f images/s)", len(ids), output, speed)
    return speed


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="trained model (…/train/model.pt)")
    parser.add_argument("--output", type=Path, required=True, help="seed store to write (…/seeds/<split>.h5)")
    args = parser.parse_args(argv)
    run(lambda: export_seeds(args.config, args.model, args.output))


if __name__ == "__main__":
    main()
