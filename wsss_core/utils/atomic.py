"""Atomic file writes: write to a temporary sibling, then rename, so no reader ever sees half a file.

The result gets the mode a plain ``open()`` would give it under the process umask (``mkstemp`` makes
owner-only files, which teammates on a shared project could not read)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wsss_core.errors import DiskFullError


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
        os.chmod(temp, new_file_mode())
        os.replace(temp, target)
    except (OSError, RuntimeError) as error:
        if not is_write_failure(error):
            raise
        raise DiskFullError(write_failure_message(target, temp, error)) from None
    finally:
        if temp.exists():
            temp.unlink()


WRITE_FAILURE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# torch.save's zip writer reports a short write as "unexpected pos N vs M" or "failed writing ..."
WRITE_FAILURE_TEXT = ("unexpected pos", "PytorchStreamWriter failed writing", "file write failed",
                      "No space left on device", "Disk quota exceeded", "File too large")


def is_write_failure(error: BaseException) -> bool:
    """Whether ``error`` says the file system refused more bytes (full disk, quota, size limit)."""
    if isinstance(error, OSError) and error.errno in WRITE_FAILURE_ERRNOS:
        return True
    return any(text in str(error) for text in WRITE_FAILURE_TEXT)


def write_failure_message(target: Path, temp: Path, error: BaseException) -> str:
    """One line: which file could not be written, how far it got and how much space is left there."""
    written = temp.stat().st_size if temp.exists() else 0
    free = shutil.disk_usage(target.parent).free
    cause = os.strerror(error.errno) if isinstance(error, OSError) and error.errno else str(error).splitlines()[0]
    return (
        f"cannot write '{target}': the file system refused more bytes after {_size(written)} ({cause}); "
        f"{_size(free)} free on the disk holding '{target.parent}'. Free space (or raise the quota) and re-run"
    )


def _size(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} bytes"


def current_umask() -> int:
    """The process umask (read from /proc where it can be, since setting it to read it back is racy)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """Mode of a file created by ``open()`` now: 0o666 less the umask."""
    return 0o666 & ~current_umask()


def new_folder_mode() -> int:
    """Mode of a folder created by ``mkdir()`` now: 0o777 less the umask."""
    return 0o777 & ~current_umask()


def remove_stale_partials(target: Path, suffix: str = ".partial") -> None:
    """Delete temporary siblings (files or folders) left by a writer of ``target`` that was killed
    (SIGKILL/SIGTERM skip the cleanup above). Snakemake runs one job per output at a time, so none of
    them is in use."""
    for stale in target.parent.glob(f".{target.name}.*{suffix}"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
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
