"""Choice of compute device from the configuration."""

from __future__ import annotations

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
