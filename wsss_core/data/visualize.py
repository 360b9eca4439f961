"""Pictures of a dataset: label maps in the VOC colours, and image | mask sample grids.

Used to look at the synthetic benchmark (``docs/synth_samples.png``) and at any reader's ground truth.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from wsss_core.data.classes import voc_palette
from wsss_core.data.voc import DatasetReader
from wsss_core.utils.atomic import atomic_path

_PALETTE = voc_palette()


def colorize(mask: np.ndarray) -> np.ndarray:
    """RGB ``uint8 [H, W, 3]`` of a label map with the VOC palette (255 = cream ignore band)."""
    return _PALETTE[np.asarray(mask, dtype=np.uint8)]


def _fit(image: np.ndarray, tile: int, interpolation: int) -> np.ndarray:
    """``image`` resized so its long side is ``tile`` and padded to a ``tile`` square (grey)."""
    height, width = image.shape[:2]
    scale = tile / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = cv2.resize(image, size, interpolation=interpolation)
    square = np.full((tile, tile, 3), 96, dtype=np.uint8)
    square[: resized.shape[0], : resized.shape[1]] = resized
    return square


def sample_grid(
    reader: DatasetReader,
    ids: Sequence[str],
    path: str | os.PathLike[str],
    columns: int = 4,
    tile: int = 160,
    margin: int = 4,
) -> np.ndarray:
    """Write a PNG grid of (image, colourised mask) pairs, ``columns`` pairs per row, each pair
    captioned with the image's class names; returns the grid (RGB)."""
    rows = (len(ids) + columns - 1) // columns
    caption = 14
    cell_width, cell_height = 2 * tile + margin, tile + caption
    grid = np.full((rows * (cell_height + margin) + margin, columns * (cell_width + margin) + margin, 3), 255,
                   dtype=np.uint8)
    for position, image_id in enumerate(ids):
        row, column = divmod(position, columns)
        top = margin + row * (cell_height + margin)
        left = margin + column * (cell_width + margin)
        grid[top : top + tile, left : left + tile] = _fit(reader.image(image_id), tile, cv2.INTER_AREA)
        grid[top : top + tile, left + tile + margin : left + 2 * tile + margin] = _fit(
            colorize(reader.mask(image_id)), tile, cv2.INTER_NEAREST
        )
        names = [reader.class_names[index] for index in np.flatnonzero(reader.labels(image_id))]
        cv2.putText(grid, ", ".join(names)[:40], (left, top + tile + caption - 3), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (0, 0, 0), 1, cv2.LINE_AA)
    with atomic_path(path, suffix=".png") as temporary:
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        assert ok, "PNG encoding failed"
        temporary.write_bytes(encoded.tobytes())
        temporary.chmod(0o644)  # mkstemp makes owner-only files; a picture is for everyone to read
    return grid
