"""Stage ``export_seeds``: a trained method's CAM seeds for every image of a split, into an HDF5 store.

    python -m wsss_core.stages.export_seeds --config JSON --model .../train/model.pt --output .../seeds/train_aug.h5 \
        [--shard I --shards N]

Reads ``dataset``, ``method`` (its ``seeds`` settings may differ from training), ``stage.split``
(default ``train_aug``), ``device`` and optionally ``threads``. The network is rebuilt without
pretrained weights (the checkpoint holds every tensor), put in eval mode and run under
``torch.inference_mode``. The store records the
method, class count, seed normalisation, provenance and the measured ``images_per_second``.

With ``--shard I --shards N`` only the images ``ids[I::N]`` are exported (attribute ``shard`` = "I/N");
``merge_stores`` joins the N shard stores into the store an unsharded run writes. ``stage.precision``
(``fp32`` default | ``bf16`` | ``auto``) runs the network under bf16 autocast; the maps are min-max
normalised in float32 either way. Images are decoded ahead of the network by ``num_workers`` DataLoader
workers (:func:`prefetched_images`, in split order), so the GPU does not wait for JPEG decoding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from wsss_core import runtime
from wsss_core.data import open_dataset
from wsss_core.errors import StoreError, summarize
from wsss_core.io.seed_store import SeedStoreWriter
from wsss_core.methods.base import Method
from wsss_core.models.weights import PretrainedWeights, WeightsCatalog
from wsss_core.stages._cli import run, stage_parser
from wsss_core.stages._shared import section_settings
from wsss_core.stages.settings import ExportSeedsStage
from wsss_core.stages.merge_stores import add_shard_arguments, shard_ids
from wsss_core.training.loop import autocast, resolve_precision
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


class _DecodedImages(Dataset):
    """``(image_id, RGB uint8 image, multi-hot labels or None)`` of a list of ids, read by a dataset reader."""

    def __init__(self, reader: Any, ids: Sequence[str], with_labels: bool) -> None:
        self.reader, self.ids, self.with_labels = reader, list(ids), with_labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, position: int) -> tuple[str, np.ndarray, np.ndarray | None]:
        image_id = self.ids[position]
        labels = self.reader.labels(image_id) if self.with_labels else None
        return image_id, self.reader.image(image_id), labels


def _unchanged(item: Any) -> Any:
    return item


def prefetched_images(
    reader: Any, ids: Sequence[str], workers: int, with_labels: bool = True, prefetch_factor: int = 4
) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
    """``(image_id, image, labels)`` of ``ids`` in order, decoded by ``workers`` background processes
    (0 = inline); ``labels`` is None without ``with_labels`` (splits without image labels)."""
    dataset = _DecodedImages(reader, ids, with_labels)
    if workers <= 0:
        yield from (dataset[position] for position in range(len(dataset)))
        return
    loader = DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=workers, collate_fn=_unchanged,
        prefetch_factor=prefetch_factor,
    )
    yield from loader


def load_trained_model(
    model_path: Path, config: Mapping[str, Any], num_classes: int
) -> tuple[Method, torch.nn.Module]:
    """The configured method and its network with the weights of ``model_path`` (a train_method output)."""
    if not model_path.is_file():
        raise StoreError(f"model file '{model_path}' does not exist: run the train_method stage first")
    try:
        checkpoint = torch.load(model_path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated copy, another file format: torch's errors name neither
        raise StoreError(
            f"model file '{model_path}' cannot be read ({summarize(error)}); delete it and "
            "re-run the train_method stage"
        ) from None
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("model"), Mapping):
        raise StoreError(
            f"'{model_path}' is not a model written by train_method (no 'model' state dict); check the "
            "--model path"
        )
    method = method_from_config(config, num_classes)
    if checkpoint.get("method") != method.name or checkpoint.get("num_classes") != num_classes:
        raise StoreError(
            f"model file '{model_path}' holds method '{checkpoint.get('method')}' with "
            f"{checkpoint.get('num_classes')} classes, but the config asks for '{method.name}' with "
            f"{num_classes}; retrain or point --model at the right file"
        )
    model = method.build_model(RandomInitCatalog())
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:  # same method, another network (e.g. method.model changed since training)
        raise StoreError(
            f"model file '{model_path}' does not fit the network of method.model {method.config.get('model')}: "
            f"{summarize(error)}; retrain, or point --model at the right file"
        ) from None
    return method, model


def export_seeds(
    config: Mapping[str, Any], model_path: Path, output: Path, shard: int = 0, shards: int = 1
) -> float:
    """Write the seeds of every image of ``stage.split`` (of its shard ``shard`` of ``shards``); returns
    images per second."""
    run_time = runtime.settings(config)  # device, num_workers, threads: not in the provenance hash
    config = runtime.identity(config)
    stage = dict(config.get("stage") or {})
    split = stage.get("split", "train_aug")
    set_torch_threads(run_time)
    reader = open_dataset(config["dataset"])
    method, model = load_trained_model(model_path, config, reader.num_classes)
    device = resolve_device(run_time.get("device", "auto"))
    model.to(device).eval()
    precision = resolve_precision(section_settings(stage, ExportSeedsStage).precision, device)
    ids = shard_ids(reader.ids(split), shard, shards)
    attrs: dict[str, Any] = {"split": split, "provenance": provenance(dict(config), STAGE)}
    if shards > 1:
        attrs["shard"] = f"{shard}/{shards}"
    with SeedStoreWriter(
        output, method=method.name, num_classes=reader.num_classes,
        normalization=method.seed_normalization, attrs=attrs,
    ) as writer:
        started = time.perf_counter()
        with torch.inference_mode(), autocast(device, precision):
            images = prefetched_images(reader, ids, int(run_time.get("num_workers", 0)))
            for image_id, image, labels in progress(images, f"seeds {split}", total=len(ids)):
                seeds = method.infer_seeds(model, image, labels)
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
    add_shard_arguments(parser)
    args = parser.parse_args(argv)
    run(lambda: export_seeds(args.config, args.model, args.output, args.shard, args.shards))


if __name__ == "__main__":
    main()
