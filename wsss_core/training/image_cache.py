"""A decoded-image cache for training: a split's images decoded once into one uint8 file.

Why: a training run decodes every JPEG once per epoch in every DataLoader worker (60 epochs of VOC's
10,582 images: 635k decodes). The cache decodes each image once; workers then read it through a
read-only memory map, so all workers of all ranks on a node share the operating system's page cache
instead of holding copies, and no JPEG is decoded again. Images are stored exactly as the reader returns
them (no resizing), so training results do not change.

Layout of ``<folder>/``: ``images.u8`` (the images' bytes, one after the other) and ``index.json``
(``ids``, byte ``offsets``, ``shapes``, and ``source``: what the cache was built from). ``index.json`` is
written last and atomically, so a cache with an index is complete; one built from another source (a
different dataset root or split list) is rebuilt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsss_core.utils.atomic import atomic_path, write_json

LOG = logging.getLogger(__name__)
DATA_FILE = "images.u8"
INDEX_FILE = "index.json"


class DecodedImageCache:
    """Read access to a built cache; the memory map opens lazily in each process (picklable)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        index = json.loads((self.folder / INDEX_FILE).read_text())
        self.source = index["source"]
        self._positions = {image_id: position for position, image_id in enumerate(index["ids"])}
        self._offsets = index["offsets"]
        self._shapes = [tuple(shape) for shape in index["shapes"]]
        self._data: np.memmap | None = None

    @staticmethod
    def build(reader: Any, ids: Sequence[str], folder: str | Path, source: Any) -> "DecodedImageCache":
        """Decode ``ids`` with ``reader`` into ``folder`` (unless a complete cache of the same ``source``
        is there already) and open it."""
        folder = Path(folder)
        index_path = folder / INDEX_FILE
        if index_path.is_file() and json.loads(index_path.read_text()).get("source") == source:
            return DecodedImageCache(folder)
        folder.mkdir(parents=True, exist_ok=True)
        offsets, shapes, offset = [], [], 0
        with atomic_path(folder / DATA_FILE) as temp, open(temp, "wb") as stream:
            for image_id in ids:
                image = np.ascontiguousarray(reader.image(image_id), dtype=np.uint8)
                stream.write(image.tobytes())
                offsets.append(offset)
                shapes.append(list(image.shape))
                offset += image.nbytes
        write_json(index_path, {"ids": list(ids), "offsets": offsets, "shapes": shapes, "source": source})
        LOG.info("cached %d decoded images (%.1f MiB) in %s", len(ids), offset / 2**20, folder)
        return DecodedImageCache(folder)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._positions

    def __len__(self) -> int:
        return len(self._positions)

    def image(self, image_id: str) -> np.ndarray:
        """The cached ``uint8 [H, W, 3]`` image (a copy, writable like a decoded one)."""
        if self._data is None:
            self._data = np.memmap(self.folder / DATA_FILE, dtype=np.uint8, mode="r")
        position = self._positions[image_id]
        shape = self._shapes[position]
        start = self._offsets[position]
        return np.array(self._data[start : start + int(np.prod(shape))]).reshape(shape)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_data"] = None  # each worker maps the file itself
        return state


class CachedReader:
    """A dataset reader whose ``image`` comes from a :class:`DecodedImageCache` (for the ids it holds);
    every other attribute is the wrapped reader's."""

    def __init__(self, reader: Any, cache: DecodedImageCache) -> None:
        self.reader, self.cache = reader, cache

    def image(self, image_id: str) -> np.ndarray:
        return self.cache.image(image_id) if image_id in self.cache else self.reader.image(image_id)

    def __getattr__(self, name: str) -> Any:
        if name in ("reader", "cache"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.reader, name)
