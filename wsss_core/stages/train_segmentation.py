"""Stage ``train_segmentation``: train a segmentation network (DeepLab-V2, ...) on pseudo-masks.

    python -m wsss_core.stages.train_segmentation --config JSON --masks MASKS.h5 --output model.pt

Stage keys (``config["stage"]``; their type: ``SegmentationTrain`` in ``wsss_core/stages/settings.py``, the
network's keys ``SegmentationNetworkSettings`` in ``wsss_core/segmentation/settings.py``): ``network`` (a ``SEGMENTATION_NETWORKS`` name, e.g. ``deeplab_v2``) and
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
The sample transform and the training step are ``wsss_core.segmentation.training``, the loss
``wsss_core.losses.segmentation``.

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
from pathlib import Path
from typing import Any

import torch

import wsss_core.data
from wsss_core import runtime
from wsss_core.data.datasets import SegmentationTrainingDataset
from wsss_core.io.seed_store import MaskStore
from wsss_core.models.weights import WeightsCatalog
from wsss_core.segmentation import build_segmentation_network
from wsss_core.segmentation.training import SegmentationSample, SegmentationTask
from wsss_core.stages import _cli
from wsss_core.stages._shared import missing_ids, section_settings, stage_config
from wsss_core.stages.settings import SegmentationTrain
from wsss_core.training import distributed
from wsss_core.training.checkpoint import ResumeState
from wsss_core.training.loop import LoopSettings, images_per_second, run_training
from wsss_core.training.schedulers import PolyLRScheduler
from wsss_core.utils.atomic import save_torch
from wsss_core.utils.device import resolve_device
from wsss_core.utils.provenance import code_fingerprint, config_hash, provenance
from wsss_core.utils.seeding import seed_everything

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.train_segmentation"
SECTION = "segmentation.*.train"  # its run-time keys (wsss_core.runtime)


def check_mask_store(masks: MaskStore, ids: Sequence[str], num_classes: int) -> None:
    """StoreError unless the store has every id of the split and the dataset's class count."""
    masks.check(num_classes=num_classes)
    missing_ids(masks, ids, "mask store")


def train(config: Mapping[str, Any], masks_path: Path, output: Path) -> dict[str, Any]:
    """Train the configured network on the pseudo-masks and write ``output``; returns the payload."""
    run_time = runtime.settings(config, SECTION)  # how it runs: not in the resume key or the provenance hash
    config = runtime.identity(config, SECTION)
    stage = stage_config(config)
    train_settings = section_settings(stage, SegmentationTrain)
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
    model = build_segmentation_network(train_settings.network, num_labels, train_settings, weights)
    model = distributed.synchronize_batch_norm(model, context, device)
    distributed.broadcast_module(model, context)
    if context.is_distributed:  # different random draws per rank, like different images of one batch
        seed_everything(distributed.rank_seed(seed, context.rank))
    lr = train_settings.lr
    optimizer = torch.optim.SGD(
        model.parameter_groups(lr), lr=lr, momentum=train_settings.momentum, weight_decay=train_settings.weight_decay,
    )
    iterations = train_settings.iterations
    scheduler = PolyLRScheduler(
        optimizer, iterations, power=train_settings.poly_power, update_every=train_settings.lr_update_every,
    )
    sample = SegmentationSample(
        train_settings.crop_size, tuple(train_settings.scales), model.normalization, flip=train_settings.flip,
    )
    dataset = SegmentationTrainingDataset(reader, split, masks.get, sample, seed)
    batch_size = train_settings.batch_size
    settings = LoopSettings(
        batch_size=batch_size,
        num_workers=int(run_time.get("num_workers", 0)),
        seed=seed,
        log_every=int(run_time.get("log_every", 20)),
        checkpoint_every=int(run_time.get("checkpoint_every", 500)),
        precision=train_settings.precision,
        channels_last=train_settings.channels_last,
        pin_memory=run_time.get("pin_memory"),
        prefetch_factor=run_time.get("prefetch_factor"),
    )
    state = ResumeState(output.parent / "_state", config_hash(config), code_fingerprint(STAGE))
    LOG.info("training %s on %d images of %s for %d iterations on %s", train_settings.network, len(ids), split,
             iterations, device)
    started = time.perf_counter()
    history = run_training(
        task=SegmentationTask(), model=model, optimizer=optimizer, scheduler=scheduler, dataset=dataset,
        total_steps=iterations, settings=settings, state=state, device=device, context=context,
    )
    payload = {
        "network": train_settings.network,
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

