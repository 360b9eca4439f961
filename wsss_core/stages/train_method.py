"""Stage ``train_method``: train a method's network (a CAM classifier or an end-to-end network).

    python -m wsss_core.stages.train_method --config JSON --output results/{ds}/{m}/train/model.pt

Reads ``dataset``, ``method`` (``name`` + hyper-parameters), ``stage.split`` (default ``train_aug``),
``weights``, ``seed``, and the run-time settings (``--runtime``, :mod:`wsss_core.runtime`): ``log_every``,
``checkpoint_every``, ``device``, ``num_workers`` and optionally ``threads`` (torch intra-op threads).
The resume key and the provenance hash are made of the rest (:func:`wsss_core.runtime.identity`), so a
killed job resumed with other run-time values continues from its checkpoint.

Paper-scale keys (all optional, see ``wsss_core.training.loop`` and ``wsss_core.training.distributed``):
``stage.processes`` (default 1; N > 1 or ``auto`` = the visible GPUs: the stage re-executes itself under
``torchrun --standalone --nproc_per_node N``, data-parallel with ``method.train.batch_size`` as the
global batch), ``stage.precision`` (``fp32`` default | ``bf16`` | ``auto`` = bf16 on a capable GPU),
``stage.channels_last`` (false), and run-time: ``pin_memory`` (null = on for CUDA), ``prefetch_factor``
(null = torch's 2), ``image_cache`` (null = off; true = decode the split once into
``<output dir>/_image_cache/`` (removed after training); a folder path = keep it there, e.g. node-local
scratch; see ``wsss_core.training.image_cache``). Rank 0 writes the checkpoints and ``model.pt``.
The shared resumable loop keeps its state in ``<output dir>/_state/`` (outside Snakemake's declared
output), so a killed job resumes where it stopped; the state is removed once ``model.pt`` is written.
The model file holds ``method``, ``method_config``, ``num_classes``, ``model`` (state dict on CPU),
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


from wsss_core import runtime
from wsss_core.data import open_dataset
from wsss_core.data.datasets import TrainingDataset
from wsss_core.errors import ConfigError
from wsss_core.methods.base import method_from_config
from wsss_core.models.weights import WeightsCatalog
from wsss_core.stages._cli import run, stage_parser
from wsss_core.stages._shared import check_chain_splits, section_settings
from wsss_core.stages.settings import TrainMethodStage
from wsss_core.training import distributed
from wsss_core.training.checkpoint import ResumeState
from wsss_core.training.image_cache import CachedReader, DecodedImageCache
from wsss_core.training.loop import LoopSettings, run_training
from wsss_core.utils.atomic import save_torch
from wsss_core.utils.device import resolve_device, set_torch_threads
from wsss_core.utils.provenance import code_fingerprint, config_hash, provenance
from wsss_core.utils.seeding import seed_everything

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.train_method"
SECTION = "train_method"  # config.yaml's stages.train_method: its run-time keys (wsss_core.runtime)
IMAGE_CACHE_DIR = "_image_cache"


def _with_image_cache(
    reader: Any, setting: Any, split: str, dataset: Mapping[str, Any], output: Path,
    context: distributed.DistributedContext,
) -> Any:
    """``reader`` with its ``split`` images served from a decoded-image cache when ``stage.image_cache``
    asks for one (rank 0 builds it, the other ranks wait and open it)."""
    if not setting:
        return reader
    if setting is not True and not isinstance(setting, str):
        raise ConfigError(f"stage.image_cache must be null, true or a folder path, got {setting!r}")
    folder = output.parent / IMAGE_CACHE_DIR if setting is True else Path(setting)
    ids = reader.ids(split)
    source = {"dataset": dict(dataset), "split": split, "ids": config_hash(ids)}
    if context.is_main:
        DecodedImageCache.build(reader, ids, folder / split, source)
    distributed.barrier(context)
    return CachedReader(reader, DecodedImageCache(folder / split))


def check_image_labels(reader: Any, split: str) -> None:
    """Read every image's labels before training: a list that disagrees with the labels file stops now,
    naming the image, not at the batch that holds it hours later. (Images are decoded by the workers;
    an undecodable one stops training at its batch with a message naming the file.)"""
    for image_id in reader.ids(split):
        reader.labels(image_id)


def train_method(config: Mapping[str, Any], output: Path) -> dict[str, Any]:
    """Train the configured method and write ``output`` atomically; returns the saved payload."""
    started = time.perf_counter()
    run_time = runtime.settings(config, SECTION)  # how it runs: not in the resume key or the provenance hash
    config = runtime.identity(config, SECTION)
    seed = int(config.get("seed", 0))
    set_torch_threads(run_time)
    context, device = distributed.initialize(resolve_device(run_time.get("device", "auto")))
    if not context.is_main:  # one log: rank 0's
        logging.getLogger().setLevel(logging.WARNING)
    seed_everything(seed)
    stage = dict(config.get("stage") or {})
    split = stage.get("split", "train_aug")
    reader = open_dataset(config["dataset"])
    check_image_labels(reader, split)
    check_chain_splits(reader, config["dataset"], split)
    reader = _with_image_cache(reader, run_time.get("image_cache"), split, config["dataset"], output, context)
    method = method_from_config(config, reader.num_classes)
    model = method.build_model(WeightsCatalog.from_config(config.get("weights")))
    model = distributed.synchronize_batch_norm(model, context, device)
    distributed.broadcast_module(model, context)
    if context.is_distributed:  # different dropout / drop-path masks per rank, like different images
        seed_everything(distributed.rank_seed(seed, context.rank))
    dataset = TrainingDataset(reader, split, method.training_sample, seed)
    train = method.settings.train
    typed_stage = section_settings(stage, TrainMethodStage)
    batch_size = int(train.batch_size)
    steps_per_epoch = len(dataset) // batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"split '{split}' has {len(dataset)} images, fewer than method.train.batch_size = {batch_size}; "
            "lower the batch size or use a larger split"
        )
    optimizer, scheduler = method.build_optimizer(model, steps_per_epoch)
    settings = LoopSettings(
        batch_size=batch_size,
        num_workers=int(run_time.get("num_workers", 0)),
        seed=seed,
        log_every=int(run_time.get("log_every", 10)),
        checkpoint_every=int(run_time.get("checkpoint_every", 0)),
        clip_grad_norm=getattr(train, "clip_grad_norm", None),
        precision=typed_stage.precision,
        channels_last=typed_stage.channels_last,
        pin_memory=run_time.get("pin_memory"),
        prefetch_factor=run_time.get("prefetch_factor"),
    )
    # a state of other code (an edited stage or method) is not resumed: one model, one code version
    code = code_fingerprint(STAGE, type(method).__module__)
    state = ResumeState(output.parent / "_state", config_hash(config), code)
    saved = state.load()
    first_step = 0 if saved is None else int(saved["step"])
    del saved
    total_steps = method.total_steps(steps_per_epoch)
    training_started = time.perf_counter()
    history = run_training(
        task=method,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        dataset=dataset,
        total_steps=total_steps,
        settings=settings,
        state=state,
        device=device,
        context=context,
    )
    training_seconds = time.perf_counter() - training_started
    payload = {
        "method": method.name,
        "method_config": method.config,
        "num_classes": reader.num_classes,
        "model": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "history": history,
        # this invocation's steps only (a resumed run trained fewer than total_steps)
        "images_per_second": (total_steps - first_step) * batch_size / max(training_seconds, 1e-9),
        "seconds": round(time.perf_counter() - started, 2),
        "processes": context.world_size,
        "provenance": provenance(dict(config), STAGE),
    }
    if context.is_main:
        save_torch(payload, output)
        shutil.rmtree(state.state_dir, ignore_errors=True)
        if run_time.get("image_cache") is True:
            shutil.rmtree(output.parent / IMAGE_CACHE_DIR, ignore_errors=True)
        LOG.info("wrote %s (%.1f images/s)", output, payload["images_per_second"])
    distributed.barrier(context)
    distributed.shutdown(context)
    return payload


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="model file to write (…/train/model.pt)")
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)

    def launch() -> None:
        processes = distributed.requested_processes((args.config.get("stage") or {}).get("processes"))
        distributed.relaunch_under_torchrun(processes, STAGE, arguments)
        train_method(args.config, args.output)

    run(launch)


if __name__ == "__main__":
    main()
