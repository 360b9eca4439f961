"""HDF5 stores for per-image CAM seeds and for label masks (pseudo-masks, predictions).

One file per split, written once by one writer and read by many (DataLoader workers, later stages):

``seeds`` file::

    /maps/<image_id>   float16 [k, H, W], chunks (1, H, W), lzf; attrs: keys int16 [k], orig_size [H, W]
    file attrs: kind="seeds", method, num_classes, normalization, has_background, caller attrs

``masks`` file::

    /masks/<image_id>  uint8 [H, W] (255 = ignore), chunked, lzf; attrs: orig_size [H, W]
    file attrs: kind="masks", method, num_classes, caller attrs

Caller attributes that are not plain scalars or strings (the nested ``provenance`` dict) are stored as
JSON strings and decoded on read; their names are listed in the file attribute ``json_attrs``.
Writers write a temporary sibling file and rename it only when the ``with`` block ends without an
error (``wsss_core.utils.atomic.atomic_path``), so a failed export leaves nothing behind. Readers open
the file lazily with HDF5 file locking off, and drop the handle when pickled so that each DataLoader
worker reopens its own.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import h5py
import numpy as np

from wsss_core.errors import StoreError
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.utils.atomic import atomic_path

_RESERVED_ATTRS = ("kind", "method", "num_classes", "normalization", "has_background", "json_attrs")


def _encode_attrs(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """HDF5-storable attributes; dicts, lists and None become JSON strings (names returned)."""
    encoded: dict[str, Any] = {}
    json_names: list[str] = []
    for name, value in attrs.items():
        if name in _RESERVED_ATTRS:
            raise ValueError(f"attribute '{name}' is set by the store itself")
        if isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
            encoded[name] = value
        else:
            encoded[name] = json.dumps(value, sort_keys=True, default=str)
            json_names.append(name)
    return encoded, json_names


def _check_image_id(image_id: str) -> str:
    if not isinstance(image_id, str) or not image_id or "/" in image_id or image_id in (".", ".."):
        raise ValueError(f"image id {image_id!r} cannot name an HDF5 dataset (empty, '/' or dots)")
    return image_id


class _StoreWriter:
    """Shared writer machinery: atomic temporary file, file attributes, one group of datasets."""

    kind: ClassVar[str]
    group_name: ClassVar[str]

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        num_classes: int,
        method: str = "",
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.num_classes = int(num_classes)
        self.method = method
        # caller attributes; may be extended until the ``with`` block ends (e.g. throughput)
        self.attrs: dict[str, Any] = dict(attrs or {})
        self._stack: contextlib.ExitStack | None = None
        self._file: h5py.File | None = None
        self._group: h5py.Group | None = None

    def __enter__(self) -> "_StoreWriter":
        stack = contextlib.ExitStack()
        temp = stack.enter_context(atomic_path(self.path))
        try:
            self._file = h5py.File(temp, "w", locking=False)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        self._group = self._file.create_group(self.group_name)
        return self

    def _file_attrs(self) -> dict[str, Any]:
        return {"kind": self.kind, "method": self.method, "num_classes": self.num_classes}

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        assert self._file is not None and self._stack is not None, "writer used outside 'with'"
        try:
            if exc_type is None:
                encoded, json_names = _encode_attrs(self.attrs)
                for name, value in {**self._file_attrs(), **encoded}.items():
                    self._file.attrs[name] = value
                self._file.attrs["json_attrs"] = json.dumps(json_names)
            self._file.close()
        finally:
            self._file = self._group = None
            stack, self._stack = self._stack, None
            # atomic_path renames the temporary file on success and deletes it on an exception
            stack.__exit__(exc_type, exc, traceback)
        return False

    def _new_dataset(self, image_id: str, data: np.ndarray, chunks: tuple[int, ...] | None) -> h5py.Dataset:
        if self._group is None:
            raise RuntimeError(f"{type(self).__name__} must be used in a 'with' block")
        if _check_image_id(image_id) in self._group:
            raise ValueError(f"image '{image_id}' was already added to {self.path}")
        if data.size == 0:  # HDF5 cannot chunk an empty dataset
            return self._group.create_dataset(image_id, data=data)
        return self._group.create_dataset(image_id, data=data, chunks=chunks, compression="lzf")


class SeedStoreWriter(_StoreWriter):
    """Writes CAM seeds: ``with SeedStoreWriter(path, method=..., num_classes=C) as w: w.add(...)``."""

    kind = "seeds"
    group_name = "maps"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        method: str,
        num_classes: int,
        normalization: str = "minmax",
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(path, num_classes=num_classes, method=method, attrs=attrs)
        self.normalization = normalization
        self._has_background: bool | None = None

    def __enter__(self) -> "SeedStoreWriter":
        super().__enter__()
        return self

    def _file_attrs(self) -> dict[str, Any]:
        return {
            **super()._file_attrs(),
            "normalization": self.normalization,
            "has_background": bool(self._has_background),
        }

    def add(self, image_id: str, maps: np.ndarray, keys: np.ndarray) -> None:
        """Store one image's maps ``[k, H, W]`` (values in [0, 1]) for label ids ``keys [k]``."""
        maps = np.asarray(maps)
        keys = np.asarray(keys)
        if maps.ndim != 3 or keys.ndim != 1 or maps.shape[0] != keys.shape[0]:
            raise ValueError(f"'{image_id}': maps {maps.shape} do not match keys {keys.shape}")
        if keys.size and (keys.min() < 0 or keys.max() > self.num_classes):
            raise ValueError(f"'{image_id}': keys {keys.tolist()} are outside 0..{self.num_classes}")
        if keys.size and np.any(np.diff(keys) <= 0):
            raise ValueError(f"'{image_id}': keys {keys.tolist()} must be strictly increasing")
        if not np.all(np.isfinite(maps)):
            raise ValueError(f"'{image_id}': maps contain NaN or infinity")
        if keys.size:
            has_background = int(keys[0]) == 0
            if self._has_background is None:
                self._has_background = has_background
            elif self._has_background != has_background:
                raise ValueError(
                    f"'{image_id}': background channel {'present' if has_background else 'absent'}, "
                    "unlike the images before it; a store holds seeds of one kind"
                )
        dataset = self._new_dataset(image_id, maps.astype(np.float16), (1,) + maps.shape[1:])
        dataset.attrs["keys"] = keys.astype(np.int16)
        dataset.attrs["orig_size"] = np.asarray(maps.shape[1:], dtype=np.int32)


class MaskStoreWriter(_StoreWriter):
    """Writes label masks: ``with MaskStoreWriter(path, num_classes=C) as w: w.add(id, mask)``."""

    kind = "masks"
    group_name = "masks"

    def __enter__(self) -> "MaskStoreWriter":
        super().__enter__()
        return self

    def add(self, image_id: str, mask: np.ndarray) -> None:
        """Store one ``uint8 [H, W]`` mask with values in ``0..C`` or 255 (ignore)."""
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"'{image_id}': a mask is [H, W], got {mask.shape}")
        if mask.dtype != np.uint8:
            if mask.size and (mask.min() < 0 or mask.max() > 255):
                raise ValueError(f"'{image_id}': mask values must fit uint8")
            mask = mask.astype(np.uint8)
        labels = mask[mask != 255]
        if labels.size and labels.max() > self.num_classes:
            raise ValueError(f"'{image_id}': mask label {labels.max()} is outside 0..{self.num_classes} and 255")
        dataset = self._new_dataset(image_id, mask, mask.shape)
        dataset.attrs["orig_size"] = np.asarray(mask.shape, dtype=np.int32)


class _Store:
    """Shared reader machinery: lazy, picklable, lock-free read-only access."""

    kind: ClassVar[str]
    group_name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        if not self.path.is_file():
            raise StoreError(f"{self.description} {self.path} does not exist; run the stage that writes it")

    # -- lazy opening, pickling -------------------------------------------------------------
    @property
    def _handle(self) -> h5py.File:
        if self._file is None:
            try:
                handle = h5py.File(self.path, "r", locking=False)
            except OSError as error:
                raise StoreError(
                    f"{self.description} {self.path} cannot be read ({error}); delete it and re-run"
                ) from None
            kind = handle.attrs.get("kind")
            if kind != self.kind or self.group_name not in handle:
                handle.close()
                raise StoreError(
                    f"{self.path} is not a {self.description} (its kind is {kind!r}); check the path"
                )
            self._file = handle
        return self._file

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # each process opens its own handle
        return state

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "_Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata ---------------------------------------------------------------------------
    @property
    def method(self) -> str:
        return str(self._handle.attrs.get("method", ""))

    @property
    def num_classes(self) -> int:
        return int(self._handle.attrs["num_classes"])

    @property
    def attrs(self) -> dict[str, Any]:
        """Caller attributes (e.g. ``provenance``), JSON ones decoded."""
        raw = self._handle.attrs
        json_names = set(json.loads(raw.get("json_attrs", "[]")))
        decoded: dict[str, Any] = {}
        for name, value in raw.items():
            if name in _RESERVED_ATTRS:
                continue
            if isinstance(value, bytes):
                value = value.decode()
            if name in json_names:
                value = json.loads(value)
            elif isinstance(value, np.generic):
                value = value.item()
            decoded[name] = value
        return decoded

    def check(self, method: str | None = None, num_classes: int | None = None) -> None:
        """Raise StoreError when the store was written by another method or for another class count."""
        wrong_method = method is not None and self.method != method
        wrong_classes = num_classes is not None and self.num_classes != num_classes
        if wrong_method or wrong_classes:
            expected_method = method if method is not None else self.method
            expected_classes = num_classes if num_classes is not None else self.num_classes
            raise StoreError(
                f"{self.description} {self.path} was written by method '{self.method}' with "
                f"{self.num_classes} classes, but this run expects '{expected_method}' with "
                f"{expected_classes}; delete it (or fix the path) and re-run the stage that writes it"
            )

    # -- contents ---------------------------------------------------------------------------
    def ids(self) -> list[str]:
        """Image ids in the store, sorted."""
        return sorted(self._handle[self.group_name].keys())

    def __contains__(self, image_id: object) -> bool:
        return isinstance(image_id, str) and image_id in self._handle[self.group_name]

    def __len__(self) -> int:
        return len(self._handle[self.group_name])

    def _dataset(self, image_id: str) -> h5py.Dataset:
        try:
            return self._handle[self.group_name][image_id]
        except KeyError:
            raise StoreError(
                f"{self.description} {self.path} has no image '{image_id}'; it was written for another "
                "split or dataset: re-run the stage that writes it"
            ) from None


class SeedStore(_Store):
    """Reads CAM seeds: ``SeedStore(path).get(image_id) -> SeedMaps`` (float32 maps, int64 keys)."""

    kind = "seeds"
    group_name = "maps"
    description = "seed store"

    @property
    def normalization(self) -> str:
        return str(self._handle.attrs.get("normalization", ""))

    @property
    def has_background(self) -> bool:
        """True when the seeds carry their own background channel (key 0)."""
        return bool(self._handle.attrs.get("has_background", False))

    def get(self, image_id: str) -> SeedMaps:
        dataset = self._dataset(image_id)
        maps = dataset[()].astype(np.float32)
        keys = np.asarray(dataset.attrs["keys"], dtype=np.int64)
        return SeedMaps(maps=maps, keys=keys)


class MaskStore(_Store):
    """Reads label masks: ``MaskStore(path).get(image_id) -> uint8 [H, W]`` (255 = ignore)."""

    kind = "masks"
    group_name = "masks"
    description = "mask store"

    def get(self, image_id: str) -> np.ndarray:
        return np.asarray(self._dataset(image_id)[()], dtype=np.uint8)
