"""Deterministic seeding of Python, NumPy and torch, including DataLoader workers."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
from collections.abc import Iterator
from types import TracebackType

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed every random generator; with ``deterministic`` ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def _quiet_lost_transfer(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
    """A worker's ``sys.excepthook``: a connection that broke (``OSError``, ``EOFError``) is the main process
    gone mid-transfer — interrupted while it fetched a batch's file descriptor from the worker's
    ``multiprocessing.resource_sharer`` thread, which reports such errors through this hook; the main
    process has already said why it stopped. Anything else is printed as usual."""
    if not issubclass(kind, (OSError, EOFError)):
        sys.__excepthook__(kind, value, traceback)


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive NumPy/random seeds from torch's per-worker seed. Workers
    ignore Ctrl-C (SIGINT reaches the whole process group): the main process stops them, and each would
    otherwise print its own KeyboardInterrupt traceback (and, when the main process stopped while taking
    a batch from it, a broken-connection one: ``_quiet_lost_transfer``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.excepthook = _quiet_lost_transfer
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def sample_rng(base_seed: int, epoch: int, index: int) -> np.random.Generator:
    """A generator that depends only on (seed, epoch, sample index): augmentation is then
    reproducible whatever the number of workers, and a resumed epoch sees the same crops."""
    return np.random.default_rng([base_seed, epoch, index])


@contextlib.contextmanager
def seeded_global_generators(rng: np.random.Generator) -> Iterator[None]:
    """Seed Python's ``random`` and NumPy's legacy global generator from ``rng`` for the duration of
    the block, then restore both: library augmentations (timm's RandAugment picks its operations with
    ``np.random`` and its magnitudes with ``random``) then depend on the sample's own generator only."""
    saved_python, saved_numpy = random.getstate(), np.random.get_state()
    random.seed(int(rng.integers(2**62)))
    np.random.seed(int(rng.integers(2**32)))
    try:
        yield
    finally:
        random.setstate(saved_python)
        np.random.set_state(saved_numpy)
