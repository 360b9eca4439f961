"""The resumable training loop shared by every training stage.

It knows nothing about any method: a *task* supplies ``training_step(model, batch, progress)`` and the
loop does sampling, back-propagation, the learning-rate schedule, non-finite-loss guards, metric
logging and checkpoints. Sampling is a function of (seed, epoch) and augmentation a function of
(seed, epoch, sample index), so a run killed mid-epoch and resumed from its last checkpoint draws the
same batches as an uninterrupted one.

Paper scale (GPU clusters):

* **Several processes** (``torchrun``, :mod:`wsss_core.training.distributed`): ``batch_size`` is the
  global batch; each rank loads its slice of every global batch, gradients are averaged over the ranks
  after ``backward``, logged values are averaged over the ranks, rank 0 writes the checkpoints (with
  every rank's RNG state) and every rank resumes from them.
* **One DataLoader for the whole run** (:class:`RunSampler`): its workers live from the first to the
  last step and keep ``prefetch_factor`` batches in flight across epoch boundaries, so the GPU does not
  wait for new workers at each epoch; pinned memory on CUDA.
* **Precision** (``precision``): ``fp32`` (default), ``bf16`` (autocast of the forward pass and the
  losses to bfloat16; parameters, gradients and optimiser stay fp32, so no loss scaling is needed) or
  ``auto`` (bf16 on a CUDA device that supports it, fp32 otherwise, e.g. on CPU).
* **Channels-last** (``channels_last``): the model and the 4-D image tensors of a batch in NHWC, which
  cuDNN's convolutions prefer (CNNs: DeepLab, ResNet backbones); leave it off for ViTs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from wsss_core.errors import ConfigError
from wsss_core.training.checkpoint import ResumeState, rank_rng_state, rng_state, set_rng_state
from wsss_core.training.distributed import (
    SINGLE_PROCESS,
    DistributedContext,
    GradientAverager,
    all_ranks_true,
    gather_to_main,
    local_batch_size,
    mean_over_ranks,
    rank_share,
)
from wsss_core.training.progress import TrainingProgress
from wsss_core.utils.seeding import worker_init

LOG = logging.getLogger(__name__)
PRECISIONS = ("fp32", "bf16", "auto")


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or Inf; the message names the step and the offending terms."""


class TrainingTask(Protocol):
    def training_step(
        self, model: torch.nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]: ...


def before_optimizer_step(task: Any, model: torch.nn.Module, progress: TrainingProgress) -> None:
    """A task's own gradient handling between backward and the optimiser step, when it has one (DINO
    clips each parameter's gradient and drops its last layer's during the first epoch)."""
    hook = getattr(task, "before_optimizer_step", None)
    if hook is not None:
        hook(model, progress)


@dataclass(frozen=True)
class LoopSettings:
    batch_size: int  # the global batch: all processes together
    num_workers: int = 0
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0  # extra checkpoints every N steps; 0 = at epoch ends only
    clip_grad_norm: float | None = None
    precision: str = "fp32"  # fp32 | bf16 | auto (bf16 on a CUDA device that supports it)
    channels_last: bool = False  # NHWC model and images (CNNs)
    pin_memory: bool | None = None  # None: on for CUDA
    prefetch_factor: int | None = None  # batches in flight per worker; None = torch's default (2)


def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    """The sample permutation of one epoch, fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 7919]).permutation(size)


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` pairs in a permutation fixed by (seed, epoch), from ``start`` on."""

    def __init__(self, size: int, seed: int, epoch: int, start: int = 0) -> None:
        self.size, self.seed, self.epoch, self.start = size, seed, epoch, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in epoch_order(self.size, self.seed, self.epoch)[self.start :]:
            yield self.epoch, int(index)

    def __len__(self) -> int:
        return self.size - self.start


class RunSampler(Sampler[tuple[int, int]]):
    """The ``(epoch, index)`` pairs of optimiser steps ``first_step .. total_steps − 1`` that this rank
    loads: epoch by epoch the :func:`epoch_order` permutation, cut into global batches (the incomplete
    last one dropped), of which the rank takes its contiguous slice."""

    def __init__(
        self, size: int, seed: int, global_batch: int, first_step: int, total_steps: int,
        context: DistributedContext = SINGLE_PROCESS,
    ) -> None:
        self.size, self.seed, self.global_batch = size, seed, global_batch
        self.first_step, self.total_steps, self.context = first_step, total_steps, context
        self.steps_per_epoch = size // global_batch
        self.local_batch = local_batch_size(global_batch, context)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.first_step
        while step < self.total_steps:
            epoch, offset = divmod(step, self.steps_per_epoch)
            steps = min(self.steps_per_epoch - offset, self.total_steps - step)
            window = epoch_order(self.size, self.seed, epoch)[offset * self.global_batch :]
            for index in rank_share(window[: steps * self.global_batch], self.global_batch, self.context):
                yield epoch, int(index)
            step += steps

    def __len__(self) -> int:
        return max(self.total_steps - self.first_step, 0) * self.local_batch


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a ``precision`` setting on ``device``; None = plain fp32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision '{precision}' is not one of {list(PRECISIONS)} (stage.precision)")
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` to ``dtype`` on the device's type, or nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def move_to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Tensors of a (nested) batch on ``device`` (4-D floating ones NHWC with ``channels_last``);
    everything else unchanged."""
    if isinstance(batch, torch.Tensor):
        moved = batch.to(device, non_blocking=True)
        if channels_last and moved.ndim == 4 and moved.is_floating_point():
            moved = moved.contiguous(memory_format=torch.channels_last)
        return moved
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device, channels_last) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device, channels_last) for value in batch)
    return batch


def run_training(
    *,
    task: TrainingTask,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    dataset: Dataset,
    total_steps: int,
    settings: LoopSettings,
    state: ResumeState,
    device: torch.device,
    collate_fn: Any = None,
    context: DistributedContext = SINGLE_PROCESS,
) -> list[dict[str, float]]:
    """Train ``model`` for ``total_steps`` optimiser steps, resuming from ``state`` when it holds a
    checkpoint of the same configuration. Returns the logged history (one dict per logged step; in
    multi-process training every value is the mean over the ranks, on every rank).

    With ``context`` of several processes, ``model`` must be identical on every rank (same seed, or
    :func:`~wsss_core.training.distributed.broadcast_module`) and ``settings.batch_size`` divisible by
    the number of processes."""
    size = len(dataset)  # type: ignore[arg-type]
    steps_per_epoch = size // settings.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training split has {size} images, fewer than one batch of {settings.batch_size}: "
            "lower the batch size or use a larger split"
        )
    autocast_dtype = resolve_precision(settings.precision, device)
    model.to(device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    history: list[dict[str, float]] = []
    step = 0
    saved = state.load()
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved["scheduler"] is not None:
            scheduler.load_state_dict(saved["scheduler"])
        set_rng_state(rank_rng_state(saved, context.rank, context.world_size))
        history = saved["history"]
        step = saved["step"]
        LOG.info("resumed from %s at step %d/%d", state.path, step, total_steps)
    del saved
    model.train()
    average_gradients = GradientAverager(model.parameters(), context)
    workers = settings.num_workers
    loader = DataLoader(
        dataset,
        batch_size=local_batch_size(settings.batch_size, context),
        sampler=RunSampler(size, settings.seed, settings.batch_size, step, total_steps, context),
        drop_last=True,
        num_workers=workers,
        worker_init_fn=worker_init,
        collate_fn=collate_fn,
        pin_memory=device.type == "cuda" if settings.pin_memory is None else settings.pin_memory,
        prefetch_factor=settings.prefetch_factor if workers else None,
        # a private generator: creating the iterator must not consume the global torch RNG,
        # or a resumed run would draw different dropout masks than an uninterrupted one
        generator=torch.Generator().manual_seed(settings.seed * 100003 + context.rank),
    )
    # logged seconds count training time across resumes, so steps / seconds stays a true throughput
    earlier_seconds = history[-1]["seconds"] if history else 0.0
    started = time.perf_counter() - earlier_seconds
    for batch in loader:
        epoch = step // steps_per_epoch
        progress = TrainingProgress(epoch, step, steps_per_epoch, total_steps)
        with autocast(device, autocast_dtype):
            losses = task.training_step(model, move_to_device(batch, device, settings.channels_last), progress)
        loss = losses["loss"]
        if not all_ranks_true(bool(torch.isfinite(loss)), context, device):
            terms = {name: float(value.detach()) for name, value in losses.items()}
            raise NonFiniteLossError(
                f"non-finite loss at epoch {epoch} step {step}: {terms} (rank {context.rank}); lower the "
                "learning rate or check the inputs of the terms that are nan/inf"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients()
        if settings.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad_norm)
        before_optimizer_step(task, model, progress)
        optimizer.step()
        step += 1
        if scheduler is not None:
            scheduler.step_update(num_updates=step)
        if step % settings.log_every == 0 or step == total_steps:
            values = mean_over_ranks(
                {name: float(value.detach()) for name, value in losses.items()}, context, device
            )
            record = {"step": step, "epoch": epoch, **values}
            record["lr"] = float(optimizer.param_groups[0]["lr"])
            record["seconds"] = round(time.perf_counter() - started, 2)
            history.append(record)
            if context.is_main:
                LOG.info("%s", json.dumps(record))
        epoch_done = step % steps_per_epoch == 0
        if epoch_done and scheduler is not None:
            scheduler.step(epoch + 1)
        periodic = settings.checkpoint_every and step % settings.checkpoint_every == 0
        if (epoch_done or periodic) and step < total_steps:
            rng_per_rank = gather_to_main(rng_state(), context)
            if context.is_main:
                state.save(
                    step=step, model=model, optimizer=optimizer, scheduler=scheduler, history=history,
                    rng_per_rank=rng_per_rank if context.is_distributed else None,
                )
        if step >= total_steps:
            break
    elapsed = time.perf_counter() - started
    LOG.info("trained %d steps in %.1f s", total_steps, elapsed)
    return history


def images_per_second(history: list[dict[str, float]], batch_size: int) -> float:
    """Throughput from the last logged record (steps × batch / seconds)."""
    if not history or history[-1]["seconds"] <= 0:
        return math.nan
    return history[-1]["step"] * batch_size / history[-1]["seconds"]
