"""Progress bars that draw on a terminal and stay quiet in log files and cluster jobs."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar only when stderr is a terminal."""
    return tqdm(
        iterable,
        desc=description,
        total=total,
        disable=not sys.stderr.isatty(),
        mininterval=1.0,
        dynamic_ncols=True,
    )
