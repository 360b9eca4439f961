"""Deterministic seeding of Python, NumPy and torch, including DataLoader workers."""

from __future__ import annotations

import os
import random

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


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive NumPy/random seeds from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def sample_rng(base_seed: int, epoch: int, index: int) -> np.random.Generator:
    """A generator that depends only on (seed, epoch, sample index): augmentation is then
    reproducible whatever the number of workers, and a resumed epoch sees the same crops."""
    return np.random.default_rng([base_seed, epoch, index])
