"""Atomic file writes: write to a temporary sibling, then rename, so no reader ever sees half a file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".partial") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync and rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched, so a killed or
    failed writer never leaves a file that looks complete.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target, suffix)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        with open(temp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temp, target)
    finally:
        if temp.exists():
            temp.unlink()


def remove_stale_partials(target: Path, suffix: str = ".partial") -> None:
    """Delete temporary siblings left by a writer of ``target`` that was killed (SIGKILL/SIGTERM skip
    the cleanup above). Snakemake runs one job per output at a time, so none of them is in use."""
    for stale in target.parent.glob(f".{target.name}.*{suffix}"):
        stale.unlink(missing_ok=True)


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as temp:
        temp.write_text(text)


def save_torch(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` atomically (checkpoints, trained models)."""
    import torch

    with atomic_path(path) as temp:
        torch.save(obj, temp)


def _json_default(value: Any) -> Any:
    """Serialise numpy scalars/arrays and paths that ``json`` does not know."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")
