"""The resumable training loop shared by every training stage.

It knows nothing about any method: a *task* supplies ``training_step(model, batch, progress)`` and the
loop does sampling, back-propagation, the learning-rate schedule, non-finite-loss guards, metric
logging and checkpoints. Sampling is a function of (seed, epoch) and augmentation a function of
(seed, epoch, sample index), so a run killed mid-epoch and resumed from its last checkpoint draws the
same batches as an uninterrupted one.
"""

from __future__ import annotations

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

from wsss_core.methods.base import TrainingProgress
from wsss_core.training.checkpoint import ResumeState, set_rng_state
from wsss_core.utils.seeding import worker_init

LOG = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or Inf; the message names the step and the offending terms."""


class TrainingTask(Protocol):
    def training_step(
        self, model: torch.nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class LoopSettings:
    batch_size: int
    num_workers: int = 0
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0  # extra checkpoints every N steps; 0 = at epoch ends only
    clip_grad_norm: float | None = None


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` pairs in a permutation fixed by (seed, epoch), from ``start`` on."""

    def __init__(self, size: int, seed: int, epoch: int, start: int = 0) -> None:
        self.size, self.seed, self.epoch, self.start = size, seed, epoch, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng([self.seed, self.epoch, 7919]).permutation(self.size)
        for index in order[self.start :]:
            yield self.epoch, int(index)

    def __len__(self) -> int:
        return self.size - self.start


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) batch on ``device``; everything else unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
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
) -> list[dict[str, float]]:
    """Train ``model`` for ``total_steps`` optimiser steps, resuming from ``state`` when it holds a
    checkpoint of the same configuration. Returns the logged history (one dict per logged step)."""
    size = len(dataset)  # type: ignore[arg-type]
    steps_per_epoch = size // settings.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training split has {size} images, fewer than one batch of {settings.batch_size}: "
            "lower the batch size or use a larger split"
        )
    model.to(device)
    history: list[dict[str, float]] = []
    step = 0
    saved = state.load()
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved["scheduler"] is not None:
            scheduler.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"])
        history = saved["history"]
        step = saved["step"]
        LOG.info("resumed from %s at step %d/%d", state.path, step, total_steps)
    model.train()
    started = time.perf_counter()
    while step < total_steps:
        epoch, offset = divmod(step, steps_per_epoch)
        sampler = EpochSampler(size, settings.seed, epoch, start=offset * settings.batch_size)
        loader = DataLoader(
            dataset,
            batch_size=settings.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=settings.num_workers,
            worker_init_fn=worker_init,
            collate_fn=collate_fn,
            pin_memory=device.type == "cuda",
            # a private generator: creating the iterator must not consume the global torch RNG,
            # or a resumed run would draw different dropout masks than an uninterrupted one
            generator=torch.Generator().manual_seed(settings.seed * 100003 + epoch),
        )
        for batch in loader:
            progress = TrainingProgress(epoch, step, steps_per_epoch, total_steps)
            losses = task.training_step(model, move_to_device(batch, device), progress)
            loss = losses["loss"]
            if not torch.isfinite(loss):
                terms = {name: float(value.detach()) for name, value in losses.items()}
                raise NonFiniteLossError(
                    f"non-finite loss at epoch {epoch} step {step}: {terms}; lower the learning rate or "
                    "check the inputs of the terms that are nan/inf"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad_norm)
            optimizer.step()
            step += 1
            if scheduler is not None:
                scheduler.step_update(num_updates=step)
            if step % settings.log_every == 0 or step == total_steps:
                record = {"step": step, "epoch": epoch}
                record.update({name: float(value.detach()) for name, value in losses.items()})
                record["lr"] = float(optimizer.param_groups[0]["lr"])
                record["seconds"] = round(time.perf_counter() - started, 2)
                history.append(record)
                LOG.info("%s", json.dumps(record))
            epoch_done = step % steps_per_epoch == 0
            if epoch_done and scheduler is not None:
                scheduler.step(epoch + 1)
            periodic = settings.checkpoint_every and step % settings.checkpoint_every == 0
            if (epoch_done or periodic) and step < total_steps:
                state.save(step=step, model=model, optimizer=optimizer, scheduler=scheduler, history=history)
            if step >= total_steps or epoch_done:
                break
    elapsed = time.perf_counter() - started
    LOG.info("trained %d steps in %.1f s", total_steps, elapsed)
    return history


def images_per_second(history: list[dict[str, float]], batch_size: int) -> float:
    """Throughput from the last logged record (steps × batch / seconds)."""
    if not history or history[-1]["seconds"] <= 0:
        return math.nan
    return history[-1]["step"] * batch_size / history[-1]["seconds"]
