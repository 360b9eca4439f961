"""Data-parallel training over several processes (one per GPU), launched with ``torchrun``.

What a training stage needs to run on N GPUs with the same results as on one, given the same global
batch:

* **Launch.** :func:`relaunch_under_torchrun` re-executes a stage under
  ``python -m torch.distributed.run --standalone --nproc_per_node N`` when the stage asks for N > 1
  processes and is not already a torchrun worker, so the Snakemake rule keeps its one command line
  (``python -m wsss_core.stages.train_method --config ...``) whatever the GPU count.
* **Process group.** :func:`initialize` joins the group torchrun describes (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``): NCCL on GPUs, gloo on CPU (the tests), one device per rank (``cuda:LOCAL_RANK``).
* **Sampling.** Each optimiser step consumes one global batch of the (seed, epoch) permutation; rank r
  takes the r-th contiguous slice of it (:func:`rank_share`), so the ranks' batches concatenated in rank
  order are exactly the single-process batch, and augmentation (a function of (seed, epoch, index))
  does not depend on the process count.
* **Gradients.** :class:`GradientAverager` averages gradients over the ranks after ``backward`` (summed
  into flat buckets, divided by N), so every rank applies the same update. With losses that are batch
  means, the mean of N per-rank means over equal slices is the global mean: the update equals the
  single-process one up to floating-point summation order.
* **BatchNorm.** Trained BatchNorm layers become ``SyncBatchNorm`` on GPUs
  (:func:`synchronize_batch_norm`), so their statistics cover the global batch.
* **Seeding.** Every rank builds the model from the same seed (and rank 0's tensors are broadcast, to be
  safe); afterwards rank r reseeds its generators with :func:`rank_seed` so that dropout / drop-path
  masks differ between ranks as they would between the images of one big batch.
* **Checkpoints.** Rank 0 writes; every rank's RNG state is gathered into the checkpoint, and every rank
  resumes from it with its own RNG state (:func:`gather_to_main`).

Why not ``torch.nn.parallel.DistributedDataParallel``: its reducer is armed by the wrapper's
``forward``. The methods call into their networks in other ways (sub-modules directly, four passes per
step in CTI, an EMA teacher in ToCo/ECA), and a call that bypasses the wrapper's ``forward`` silently
skips gradient synchronisation. Averaging after ``backward`` is correct for every method at the price
of not overlapping communication with the backward pass (for ViT-S, ~88 MB of gradients per step,
a few milliseconds over NVLink).

Caveat, method state: buffers that a method updates inside ``training_step`` from its own batch (CTI's
class-token memory, ECA's prototypes) see only the rank's slice; the method must all-gather what it
stores (``gather_tensor``) for them to match a single-process run. Buffers are broadcast from rank 0
once, at the start.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from wsss_core.errors import ConfigError

LOG = logging.getLogger(__name__)

# torchrun sets these in every worker; TORCHELASTIC_RUN_ID marks a torchrun worker even with one process
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
RANK_SEED_STRIDE = 1_000_003
BUCKET_ELEMENTS = 25 * 1024 * 1024 // 4  # 25 MiB of float32 per all-reduce, like DDP's default bucket


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the group: rank, number of processes, and its local GPU index."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, writes checkpoints and the stage's outputs."""
        return self.rank == 0


SINGLE_PROCESS = DistributedContext()


# ------------------------------------------------------------------------------------ launching
def requested_processes(value: Any, key: str = "stage.processes") -> int:
    """Number of training processes from the config: an integer ≥ 1, or ``auto`` = the visible CUDA
    devices (1 without CUDA). Under SLURM the allocation's GPUs are the visible ones."""
    if value is None:
        return 1
    if value == "auto":
        return max(torch.cuda.device_count(), 1) if torch.cuda.is_available() else 1
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a positive integer or 'auto', got {value!r}") from None
    if count < 1:
        raise ConfigError(f"{key} must be at least 1, got {count}")
    return count


def is_torchrun_worker() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def torchrun_command(processes: int, module: str, arguments: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m MODULE ARGS...``; standalone
    picks a free rendezvous port on this node, so parallel jobs on one node do not collide."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        "-m", module, *arguments,
    ]


def relaunch_under_torchrun(processes: int, module: str, arguments: Sequence[str]) -> None:
    """Replace this process by ``torchrun`` with ``processes`` workers running ``module arguments``,
    unless one process is asked for or this already is a torchrun worker (then return and go on)."""
    if processes <= 1 or is_torchrun_worker():
        return
    command = torchrun_command(processes, module, arguments)
    LOG.info("relaunching under torchrun with %d processes", processes)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)


def context_from_environment() -> DistributedContext:
    """The context torchrun describes in the environment; one process when it does not."""
    if not is_torchrun_worker():
        return SINGLE_PROCESS
    return DistributedContext(
        rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
    )


def initialize(device: torch.device, timeout_minutes: int = 30) -> tuple[DistributedContext, torch.device]:
    """Join the process group of a torchrun launch (NCCL on CUDA, gloo on CPU) and return the context
    and this rank's device (``cuda:LOCAL_RANK``); one process returns ``device`` unchanged."""
    context = context_from_environment()
    if not context.is_distributed:
        return context, device
    if device.type == "cuda":
        if context.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"{context.world_size} training processes per node but only {torch.cuda.device_count()} visible "
                "GPUs: lower compute.<dataset>.gpu (stage.processes) or ask the scheduler for more GPUs"
            )
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
    LOG.info("rank %d of %d on %s", context.rank, context.world_size, device)
    return context, device


def shutdown(context: DistributedContext) -> None:
    if context.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------------ seeds, sampling
def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s generators after model construction (rank 0 keeps ``seed``)."""
    return seed + RANK_SEED_STRIDE * rank


def local_batch_size(global_batch: int, context: DistributedContext) -> int:
    """Images per rank and step; the global batch must split evenly over the ranks."""
    if global_batch % context.world_size:
        raise ConfigError(
            f"batch size {global_batch} (method.train.batch_size, or stage.batch_size of a segmentation "
            f"network) does not split over {context.world_size} processes; use a batch size divisible by "
            "the GPU count (compute.<dataset>.gpu)"
        )
    return global_batch // context.world_size


def rank_share(order: np.ndarray, global_batch: int, context: DistributedContext) -> np.ndarray:
    """This rank's part of a sample order: the ``rank``-th contiguous slice of every complete global
    batch (an incomplete last batch is dropped, as ``drop_last`` does for one process)."""
    local = local_batch_size(global_batch, context)
    batches = len(order) // global_batch
    grid = np.asarray(order[: batches * global_batch]).reshape(batches, context.world_size, local)
    return grid[:, context.rank].reshape(-1)


# -------------------------------------------------------------------------------- collectives
def broadcast_module(module: torch.nn.Module, context: DistributedContext) -> None:
    """Give every rank rank 0's parameters and buffers."""
    if not context.is_distributed:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def synchronize_batch_norm(
    module: torch.nn.Module, context: DistributedContext, device: torch.device
) -> torch.nn.Module:
    """``module`` with its trained BatchNorm layers computing statistics over the global batch
    (``SyncBatchNorm``, CUDA only) when training on several GPUs, so that they see what one process with
    the whole batch sees; frozen BatchNorm (timm's ``FrozenBatchNorm2d``) is left alone."""
    if not context.is_distributed or device.type != "cuda":
        return module
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)


class GradientAverager:
    """Averages the gradients of ``parameters`` over the ranks, in flat buckets.

    A parameter whose gradient is ``None`` on every rank stays ``None`` (an optimiser then skips it, as
    it would in one process); one that has a gradient on some ranks only gets the average with zeros
    from the others.
    """

    def __init__(self, parameters: Iterable[torch.nn.Parameter], context: DistributedContext) -> None:
        self.parameters = [parameter for parameter in parameters if parameter.requires_grad]
        self.context = context

    def __call__(self) -> None:
        if not self.context.is_distributed or not self.parameters:
            return
        device = self.parameters[0].device
        has_gradient = torch.tensor(
            [parameter.grad is not None for parameter in self.parameters], dtype=torch.float32, device=device
        )
        dist.all_reduce(has_gradient)
        present = [
            parameter for parameter, count in zip(self.parameters, has_gradient.tolist()) if count > 0
        ]
        for parameter in present:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
        for bucket in _buckets(present):
            flat = torch.cat([parameter.grad.reshape(-1) for parameter in bucket])
            dist.all_reduce(flat)
            flat /= self.context.world_size
            offset = 0
            for parameter in bucket:
                count = parameter.grad.numel()
                parameter.grad.copy_(flat[offset : offset + count].view_as(parameter.grad))
                offset += count


def _buckets(parameters: Sequence[torch.nn.Parameter]) -> list[list[torch.nn.Parameter]]:
    """Consecutive parameters grouped into buckets of at most ``BUCKET_ELEMENTS`` (same dtype/device)."""
    buckets: list[list[torch.nn.Parameter]] = []
    current: list[torch.nn.Parameter] = []
    size = 0
    for parameter in parameters:
        compatible = not current or (
            current[0].grad.dtype == parameter.grad.dtype and current[0].grad.device == parameter.grad.device
        )
        if current and (size + parameter.numel() > BUCKET_ELEMENTS or not compatible):
            buckets.append(current)
            current, size = [], 0
        current.append(parameter)
        size += parameter.numel()
    if current:
        buckets.append(current)
    return buckets


def all_ranks_true(flag: bool, context: DistributedContext, device: torch.device) -> bool:
    """True when ``flag`` holds on every rank (so that all ranks stop together, never deadlock)."""
    if not context.is_distributed:
        return flag
    value = torch.tensor([0.0 if flag else 1.0], device=device)
    dist.all_reduce(value)
    return float(value) == 0.0


def mean_over_ranks(values: Mapping[str, float], context: DistributedContext, device: torch.device) -> dict[str, float]:
    """The mean of each logged value over the ranks (in key order; every rank must pass the same keys)."""
    if not context.is_distributed or not values:
        return dict(values)
    names = list(values)
    tensor = torch.tensor([float(values[name]) for name in names], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= context.world_size
    return dict(zip(names, tensor.tolist()))


def gather_to_main(value: Any, context: DistributedContext) -> list[Any] | None:
    """Every rank's ``value`` (any picklable object) on rank 0, in rank order; ``None`` elsewhere."""
    if not context.is_distributed:
        return [value]
    gathered: list[Any] | None = [None] * context.world_size if context.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def current_context() -> DistributedContext:
    """The context of the initialised process group (one process when there is none): for code that
    is not handed a context, such as a method's ``training_step``."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE_PROCESS
    rank = dist.get_rank()
    return DistributedContext(rank=rank, world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", rank)))


def gather_tensor(tensor: torch.Tensor, context: DistributedContext | None = None) -> torch.Tensor:
    """The ranks' ``tensor`` concatenated along dim 0 in rank order (same shape on every rank; no
    gradient): what a method's batch-fed buffers need to see the whole global batch, in the order one
    process would see it. E.g. CTI's memory update: ``memory.update(gather_tensor(tokens),
    gather_tensor(labels))``. ``context`` defaults to :func:`current_context`."""
    context = context or current_context()
    if not context.is_distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(context.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def barrier(context: DistributedContext) -> None:
    if context.is_distributed:
        dist.barrier()
