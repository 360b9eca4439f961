"""``SeedMaps``: the class activation maps of one image, the record every seed store holds.

It lives with the stores rather than with the methods because everything below the methods (the
stores, evaluation, refinement) reads and writes it; methods produce it through
``Method.infer_seeds``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SeedMaps:
    """Class activation maps of one image at its native resolution.

    ``maps``: float32 ``[k, H, W]``, each channel in ``[0, 1]``.
    ``keys``: int64 ``[k]`` class ids in label space: 0 is background, 1..C the foreground classes.
    A method with an explicit background map (SWTformer-V2, ViT-PCM) includes key 0; one without it
    (MCTformer, CTI) leaves the background to a threshold chosen at evaluation.
    """

    maps: np.ndarray
    keys: np.ndarray

    def __post_init__(self) -> None:
        if self.maps.ndim != 3 or self.maps.shape[0] != len(self.keys):
            raise ValueError(f"maps {self.maps.shape} do not match keys {list(self.keys)}")

    @property
    def has_background(self) -> bool:
        return bool(len(self.keys)) and int(self.keys[0]) == 0
