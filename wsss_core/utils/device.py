"""Choice of compute device from the configuration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` are taken literally.

    Snakemake never sets CUDA_VISIBLE_DEVICES; under SLURM the allocation does, so ``cuda`` means
    the job's own GPU.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"config asks for device '{name}' but no CUDA device is visible; set device: cpu or auto"
        )
    return device


def set_torch_threads(config: Mapping[str, Any]) -> None:
    """Use ``config["threads"]`` intra-op threads (the rule's ``threads``) when given: torch's default of
    one thread per core oversubscribes a shared machine (measured 14x slower seed export with 2 threads
    on a loaded 2-core machine)."""
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
