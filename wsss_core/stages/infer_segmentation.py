"""Stage ``infer_segmentation``: predict label masks of a split with a trained segmentation model.

    python -m wsss_core.stages.infer_segmentation --config JSON --model model.pt [--split val] --output PRED.h5 \
        [--shard I --shards N]

The model file is either
* a ``train_segmentation`` model (``network`` key): a ``SEGMENTATION_NETWORKS`` network, run with the
  shared multi-scale (+ flip) inference of ``wsss_core.segmentation.inference``; or
* an end-to-end method's ``train_method`` model (``method`` key): the method's own ``segment``.
Then, unless ``stage.crf`` is null, the dense CRF on the RGB ``uint8`` image, and the argmax → MaskStore.

Stage keys: ``split`` (default ``val``; ``--split`` overrides it), ``scales`` (default [0.5, 0.75, 1.0]),
``flip`` (true), ``fuse`` (``max`` | ``mean``), ``fuse_space`` (``logits`` | ``probabilities``, see
``segmentation.inference``), ``crf`` (CRFParams fields; absent = deeplab-pytorch's, null = no CRF),
and run-time (``--runtime``, section ``segmentation.<network>.inference``, :mod:`wsss_core.runtime`):
``device`` (the section's, else the top-level one), ``num_workers``. ``scales``/``flip``/``fuse``/``fuse_space`` do not apply to
end-to-end methods, whose ``segment`` follows its paper. The store's attributes record
``images_per_second`` and the provenance.

With ``--shard I --shards N`` only the images ``ids[I::N]`` are segmented (attribute ``shard`` = "I/N");
``merge_stores`` joins the shards into the store an unsharded run writes. Images are decoded ahead by
``num_workers`` DataLoader workers (``export_seeds.prefetched_images``), in split order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import wsss_core.data
from wsss_core import runtime
from wsss_core.errors import StoreError
from wsss_core.io.seed_store import MaskStoreWriter
from wsss_core.methods.base import build_method
from wsss_core.models.weights import PretrainedWeights, WeightsCatalog
from wsss_core.refine.crf import CRFParams, crf_probabilities
from wsss_core.segmentation import build_segmentation_network
from wsss_core.segmentation.inference import predict_probabilities
from wsss_core.stages import _cli
from wsss_core.stages.export_seeds import prefetched_images
from wsss_core.stages._shared import section_settings
from wsss_core.stages.settings import SegmentationInference
from wsss_core.stages.merge_stores import add_shard_arguments, shard_ids
from wsss_core.utils.device import resolve_device
from wsss_core.utils.progress import progress
from wsss_core.utils.provenance import provenance

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.infer_segmentation"
SECTION = "segmentation.*.inference"  # its run-time keys (wsss_core.runtime)

Segmenter = Callable[[np.ndarray], np.ndarray]


class CheckpointWeights(WeightsCatalog):
    """A catalog that answers "random init" for every key: the checkpoint's state dict replaces all
    weights right after the network is built, so no pretrained file is needed (or read) at inference."""

    def __init__(self) -> None:
        super().__init__({}, use_hub=False)

    def get(self, key: str | None) -> PretrainedWeights | None:
        return None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The model file written by ``train_segmentation`` or ``train_method``."""
    if not path.is_file():
        raise StoreError(f"model file {path} does not exist; run the training stage that writes it")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise StoreError(f"model file {path} cannot be read ({error}); delete it and re-run its training") from None
    if not isinstance(checkpoint, Mapping) or "model" not in checkpoint or not (
        "method" in checkpoint or "network" in checkpoint
    ):
        raise StoreError(
            f"{path} is not a model written by train_segmentation or train_method (no 'model' with "
            "'network' or 'method'); check the --model path"
        )
    return dict(checkpoint)


def label_count(checkpoint: Mapping[str, Any]) -> int:
    """Output channels (background + classes) of the model in a checkpoint."""
    if "method" in checkpoint:
        return int(checkpoint["num_classes"]) + 1
    return int(checkpoint["num_labels"])


def network_segmenter(checkpoint: Mapping[str, Any], stage: Mapping[str, Any], device: torch.device) -> Segmenter:
    """Multi-scale (+ flip) probabilities of a ``SEGMENTATION_NETWORKS`` model."""
    model = build_segmentation_network(
        checkpoint["network"], int(checkpoint["num_labels"]), checkpoint["stage_config"], CheckpointWeights()
    )
    model.load_state_dict(checkpoint["model"])
    model.to(device).eval()
    settings = section_settings(stage, SegmentationInference)  # stages.segmentation.<network>.inference
    scales, flip, fuse, space = tuple(settings.scales), settings.flip, settings.fuse, settings.fuse_space

    def segment(image: np.ndarray) -> np.ndarray:
        pixels = model.normalization(image).to(device)
        return predict_probabilities(model, pixels, scales, flip, fuse, space).cpu().numpy()

    return segment


def method_segmenter(checkpoint: Mapping[str, Any], device: torch.device) -> Segmenter:
    """An end-to-end method's own decoder output (``Method.segment``)."""
    method = build_method(checkpoint["method"], checkpoint["method_config"], int(checkpoint["num_classes"]))
    if not method.end_to_end:
        raise StoreError(
            f"the model file holds method '{checkpoint['method']}', which has no segmentation decoder; "
            "train DeepLab on its refined masks (train_segmentation) and pass that model instead"
        )
    model: nn.Module = method.build_model(CheckpointWeights())
    model.load_state_dict(checkpoint["model"])
    model.to(device).eval()

    def segment(image: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(method.segment(model, image), dtype=np.float32)

    return segment


def crf_settings(stage: Mapping[str, Any]) -> CRFParams | None:
    """``stage.crf`` through its type (``SegmentationInference.crf``): deeplab-pytorch's CRF when absent,
    none when null, else the given fields."""
    return section_settings(stage, SegmentationInference).crf


def infer(
    config: Mapping[str, Any], model_path: Path, output: Path, split: str | None = None, shard: int = 0,
    shards: int = 1,
) -> dict[str, Any]:
    """Write the predicted masks of ``split`` (default ``stage.split``, else ``val``; its shard ``shard`` of
    ``shards``) to ``output``; returns the store attributes."""
    run_time = runtime.settings(config, SECTION)  # device, num_workers: not in the provenance hash
    config = runtime.identity(config, SECTION)
    stage = dict(config.get("stage") or {})
    reader = wsss_core.data.open_dataset(config["dataset"])
    split = split or stage.get("split", "val")
    ids = shard_ids(reader.ids(split), shard, shards)
    checkpoint = load_checkpoint(model_path)
    device = resolve_device(run_time.get("device", "auto"))
    num_labels = label_count(checkpoint)
    if num_labels != reader.num_classes + 1:
        raise StoreError(
            f"model {model_path} predicts {num_labels - 1} classes but dataset "
            f"'{config['dataset'].get('name', '?')}' has {reader.num_classes}; pass the model trained on it"
        )
    if "method" in checkpoint:
        segment = method_segmenter(checkpoint, device)
    else:
        segment = network_segmenter(checkpoint, stage, device)
    crf = crf_settings(stage)
    attrs: dict[str, Any] = {
        "provenance": provenance(config, STAGE),
        "split": split,
        "model_config_hash": (checkpoint.get("provenance") or {}).get("config_hash", ""),
        "crf": None if crf is None else crf.model_dump(),
    }
    if shards > 1:
        attrs["shard"] = f"{shard}/{shards}"
    with MaskStoreWriter(output, num_classes=reader.num_classes, attrs=attrs) as writer:
        started = time.perf_counter()
        images = prefetched_images(reader, ids, int(run_time.get("num_workers", 0)), with_labels=False)
        for image_id, image, _ in progress(images, f"segment {split}", total=len(ids)):
            probabilities = segment(image)
            if crf is not None:
                probabilities = crf_probabilities(image, probabilities, crf)
            writer.add(image_id, probabilities.argmax(axis=0).astype(np.uint8))
        seconds = time.perf_counter() - started
        writer.attrs["images_per_second"] = len(ids) / seconds if seconds > 0 else float("nan")
        writer.attrs["seconds"] = round(seconds, 2)
    LOG.info("segmented %d images of %s at %.2f images/s", len(ids), split, writer.attrs["images_per_second"])
    return writer.attrs


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="model file from train_segmentation or train_method")
    parser.add_argument("--split", default=None, help="split to segment (default: stage.split, else val)")
    parser.add_argument("--output", required=True, type=Path, help="mask store (HDF5) to write")
    add_shard_arguments(parser)
    args = parser.parse_args(argv)
    _cli.run(lambda: infer(args.config, args.model, args.output, args.split, args.shard, args.shards))


if __name__ == "__main__":
    main()
