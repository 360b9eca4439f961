"""Stage ``train_segmentation``: train a segmentation network (DeepLab-V2, ...) on pseudo-masks.

    python -m wsss_core.stages.train_segmentation --config JSON --masks MASKS.h5 --output model.pt

Stage keys (``config["stage"]``): ``network`` (a ``SEGMENTATION_NETWORKS`` name, e.g. ``deeplab_v2``) and
that network's keys (``backbone``, ``backbone_args``, ``weights``, ``batch_norm``, ``normalization``,
...); ``split`` (default ``train_aug``), ``batch_size``, ``iterations``, ``lr``, ``momentum``,
``weight_decay``, ``poly_power`` (0.9), ``lr_update_every`` (1; deeplab-pytorch uses 10), ``crop_size``,
``scales`` (random choice per image), ``flip`` (true). Run-time (``--runtime``, section
``segmentation.<network>.train``, :mod:`wsss_core.runtime`; not in the resume key): ``num_workers``,
``log_every`` (20), ``checkpoint_every`` (500), ``device`` (the section's, else the top-level one),
``pin_memory``, ``prefetch_factor``.
Paper scale (``wsss_core.training.loop`` / ``.distributed``): ``processes`` (default 1; N > 1: the stage
re-executes itself under ``torchrun`` with N data-parallel ranks, ``batch_size`` being the global batch;
trained BatchNorm becomes SyncBatchNorm on GPUs), ``precision`` (fp32 | bf16 | auto), ``channels_last``
(false). Rank 0 writes checkpoints and the model.

Recipe of kazuto1011/deeplab-pytorch (configs/voc12.yaml): SGD with momentum, the network's parameter
groups (DeepLab-V2: ×1 / ×10 / ×20 without weight decay), poly decay, a random scale from a fixed list,
random crop filling with the mean colour (0 after normalisation) and ignore label 255 (deeplab-pytorch
pads bottom/right; ``data.transforms.random_crop`` places a small image at a random offset), flip;
cross-entropy ignoring 255 against the labels resized by nearest neighbour to the logit size (stride 8).
Simplification: one branch (deeplab-pytorch also trains 0.5/0.75 input branches and their max, MSC).

Resume state lives in ``<output dir>/_state/`` (config-hash checked) and is removed once the model is
written. The model file holds ``network``, ``num_labels``, ``model`` (state dict), ``stage_config``,
``history``, ``images_per_second``, ``seconds`` and ``provenance``.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import wsss_core.data
from wsss_core import runtime
from wsss_core.data import transforms
from wsss_core.data.datasets import SegmentationTrainingDataset
from wsss_core.errors import ConfigError, StoreError
from wsss_core.io.seed_store import MaskStore
from wsss_core.models.weights import WeightsCatalog
from wsss_core.segmentation import InputNormalization, build_segmentation_network
from wsss_core.stages import _cli
from wsss_core.stages._shared import missing_ids
from wsss_core.training import distributed
from wsss_core.training.checkpoint import ResumeState
from wsss_core.training.loop import LoopSettings, images_per_second, run_training
from wsss_core.training.progress import TrainingProgress
from wsss_core.training.schedulers import PolyLRScheduler
from wsss_core.utils.atomic import save_torch
from wsss_core.utils.device import resolve_device
from wsss_core.utils.provenance import code_fingerprint, config_hash, provenance
from wsss_core.utils.seeding import seed_everything

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.train_segmentation"
SECTION = "segmentation.*.train"  # its run-time keys (wsss_core.runtime)
IGNORE_INDEX = 255
REQUIRED_KEYS = ("network", "batch_size", "iterations", "lr", "momentum", "weight_decay", "crop_size", "scales")


@dataclass(frozen=True)
class SegmentationSample:
    """deeplab-pytorch's training augmentation of one image and its pseudo-mask: a scale drawn from
    ``scales``, normalisation, a random ``crop_size`` crop that fills what the image does not cover with
    0 (the mean colour, as deeplab-pytorch pads with the mean) and 255 in the mask, and a horizontal flip
    with probability 0.5. Randomness only from ``rng``."""

    crop_size: int
    scales: tuple[float, ...]
    normalization: InputNormalization
    flip: bool = True

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if image.shape[:2] != mask.shape:
            raise StoreError(
                f"pseudo-mask {mask.shape} and image {image.shape[:2]} differ in size; the mask store "
                "belongs to another dataset: re-run the stage that writes it"
            )
        scale = float(self.scales[int(rng.integers(len(self.scales)))])
        height, width = mask.shape
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        if size != (height, width):
            image, mask = transforms.resize(image, size, mask)
        pixels = self.normalization.array(image)
        pixels, mask, _ = transforms.random_crop(pixels, self.crop_size, rng, mask, image_fill=0.0,
                                                 mask_fill=IGNORE_INDEX)
        if self.flip:
            pixels, mask = transforms.horizontal_flip(pixels, rng, mask)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))),
            "mask": torch.from_numpy(mask.astype(np.int64)),
        }


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of label maps ``[B, H, W]`` to ``size`` (pixel-centre sampling, as PIL's
    nearest that deeplab-pytorch uses), keeping 255."""
    resized = F.interpolate(labels[:, None].float(), size=size, mode="nearest-exact")
    return resized[:, 0].long()


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the non-ignored pixels of labels resized to the logits; 0 (not NaN)
    when a batch has no labelled pixel."""
    targets = resize_labels(labels, tuple(logits.shape[-2:]))
    valid = (targets != IGNORE_INDEX).sum()
    total = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / valid.clamp(min=1)


class SegmentationTask:
    """The training step the shared loop calls: logits at stride 8, CE against the resized labels."""

    def training_step(
        self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]:
        return {"loss": segmentation_loss(model(batch["image"]), batch["mask"])}


def stage_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config["stage"]``, checked for the keys this stage needs."""
    stage = config.get("stage")
    if not isinstance(stage, Mapping):
        raise ConfigError("the configuration has no 'stage' mapping; the rule must pass the stage parameters")
    missing = [key for key in REQUIRED_KEYS if key not in stage]
    if missing:
        raise ConfigError(f"stage keys {missing} are missing for train_segmentation; set them in config.yaml")
    scales = stage["scales"]
    if not isinstance(scales, Sequence) or not scales or any(float(scale) <= 0 for scale in scales):
        raise ConfigError(f"stage.scales must be a non-empty list of positive scales, got {scales!r}")
    return dict(stage)


def check_mask_store(masks: MaskStore, ids: Sequence[str], num_classes: int) -> None:
    """StoreError unless the store has every id of the split and the dataset's class count."""
    masks.check(num_classes=num_classes)
    missing_ids(masks, ids, "mask store")


def train(config: Mapping[str, Any], masks_path: Path, output: Path) -> dict[str, Any]:
    """Train the configured network on the pseudo-masks and write ``output``; returns the payload."""
    run_time = runtime.settings(config, SECTION)  # how it runs: not in the resume key or the provenance hash
    config = runtime.identity(config, SECTION)
    stage = stage_settings(config)
    seed = int(config.get("seed", 0))
    context, device = distributed.initialize(resolve_device(run_time.get("device", "auto")))
    if not context.is_main:  # one log: rank 0's
        logging.getLogger().setLevel(logging.WARNING)
    seed_everything(seed)
    reader = wsss_core.data.open_dataset(config["dataset"])
    split = stage.get("split", "train_aug")
    ids = reader.ids(split)
    masks = MaskStore(masks_path)
    check_mask_store(masks, ids, reader.num_classes)

    num_labels = reader.num_classes + 1
    weights = WeightsCatalog.from_config(config.get("weights"))
    model = build_segmentation_network(stage["network"], num_labels, stage, weights)
    model = distributed.synchronize_batch_norm(model, context, device)
    distributed.broadcast_module(model, context)
    if context.is_distributed:  # different random draws per rank, like different images of one batch
        seed_everything(distributed.rank_seed(seed, context.rank))
    lr = float(stage["lr"])
    optimizer = torch.optim.SGD(
        model.parameter_groups(lr), lr=lr, momentum=float(stage["momentum"]),
        weight_decay=float(stage["weight_decay"]),
    )
    iterations = int(stage["iterations"])
    scheduler = PolyLRScheduler(
        optimizer, iterations, power=float(stage.get("poly_power", 0.9)),
        update_every=int(stage.get("lr_update_every", 1)),
    )
    sample = SegmentationSample(
        int(stage["crop_size"]), tuple(float(scale) for scale in stage["scales"]), model.normalization,
        flip=bool(stage.get("flip", True)),
    )
    dataset = SegmentationTrainingDataset(reader, split, masks.get, sample, seed)
    batch_size = int(stage["batch_size"])
    settings = LoopSettings(
        batch_size=batch_size,
        num_workers=int(run_time.get("num_workers", 0)),
        seed=seed,
        log_every=int(run_time.get("log_every", 20)),
        checkpoint_every=int(run_time.get("checkpoint_every", 500)),
        precision=str(stage.get("precision", "fp32")),
        channels_last=bool(stage.get("channels_last", False)),
        pin_memory=run_time.get("pin_memory"),
        prefetch_factor=run_time.get("prefetch_factor"),
    )
    state = ResumeState(output.parent / "_state", config_hash(config), code_fingerprint(STAGE))
    LOG.info("training %s on %d images of %s for %d iterations on %s", stage["network"], len(ids), split,
             iterations, device)
    started = time.perf_counter()
    history = run_training(
        task=SegmentationTask(), model=model, optimizer=optimizer, scheduler=scheduler, dataset=dataset,
        total_steps=iterations, settings=settings, state=state, device=device, context=context,
    )
    payload = {
        "network": stage["network"],
        "num_labels": num_labels,
        "model": {key: value.cpu() for key, value in model.state_dict().items()},
        "stage_config": stage,
        "history": history,
        "images_per_second": images_per_second(history, batch_size),
        "seconds": round(time.perf_counter() - started, 2),
        "processes": context.world_size,
        "provenance": provenance(config, STAGE),
    }
    if context.is_main:
        save_torch(payload, output)
        shutil.rmtree(state.state_dir, ignore_errors=True)
    distributed.barrier(context)
    distributed.shutdown(context)
    return payload


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--masks", required=True, type=Path, help="pseudo-mask store (HDF5) of the split")
    parser.add_argument("--output", required=True, type=Path, help="model file to write")
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)

    def launch() -> None:
        processes = distributed.requested_processes((args.config.get("stage") or {}).get("processes"))
        distributed.relaunch_under_torchrun(processes, STAGE, arguments)
        train(args.config, args.masks, args.output)

    _cli.run(launch)


if __name__ == "__main__":
    main()

