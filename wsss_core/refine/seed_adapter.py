"""The one conversion from any method's seeds to the input of IRN and PSA.

Methods export seeds differently (``SeedStore.normalization``: per-class ``minmax`` or ``max``;
with or without a background channel, key 0). IRN and PSA were written for max-normalised
foreground CAMs without background, and derive the background themselves (IRN: a constant threshold;
PSA: ``(1 − max_c cam_c)^α`` or a constant). So, for every method:

1. **Drop the background channel** (key 0) if the method has one: the refiners' thresholds and α are
   defined on the foreground maps alone, and keeping one definition of background makes the IRN/PSA
   presets mean the same thing for every method. The one exception is IRN's ``background: seeds``
   (SIPE's ``cam2ir`` / ``make_seg_labels``, the default of SWTformer-V2, which exports SIPE's
   background map): the channel is kept as :attr:`RefinementSeeds.background` (``keep_background``) and
   takes the place of the thresholds.
2. **Clip to [0, 1] and divide each foreground map by its own maximum** (IRN's ``high_res``
   convention; a map that is all zero stays zero). Min-max seeds already have max 1, so this leaves them
   unchanged; max-normalised seeds are unchanged too; it only repairs float16 rounding and seeds of
   other scales. A min-max map still has its minimum at 0 and a max map need not: the same threshold
   therefore selects different regions (shared/reference/cti_multistage.md G22), which is why the
   thresholds are presets to retune on ``train``, and why the seed normalisation is recorded next to
   every relation-label file.
3. **Stride-s maps** (``cam`` in IRN's files): bilinear resize of each full-resolution map to
   ``((H − 1) // s + 1, (W − 1) // s + 1)``, then divide by the maximum again (§5.0 of the reference).
   With the background kept, :meth:`RefinementSeeds.with_background` resizes ``[background; maps]``
   and does not divide again (SIPE resizes its saved IS-CAM to the edge map's size and walks it as is).

Keys stay in label space (1..C), so ``argmax`` over ``[background; maps]`` maps to label ids through
``[0, *keys]`` (:meth:`RefinementSeeds.label_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from wsss_core.io.seed_maps import SeedMaps

NORMALIZATIONS = ("minmax", "max")


@dataclass(frozen=True)
class RefinementSeeds:
    """Foreground seeds of one image in the refiners' convention.

    ``maps``: float32 ``[K, H, W]``, each map's maximum 1 (or all 0); ``keys``: int64 ``[K]`` label ids
    1..C of those maps; ``background``: the method's own background map ``[H, W]`` (maximum 1), kept only
    for a refiner that reads it (IRN ``background: seeds``), else ``None``.
    """

    maps: np.ndarray
    keys: np.ndarray
    background: np.ndarray | None = None

    @property
    def label_ids(self) -> np.ndarray:
        """Label id of each channel of ``[background; maps]``: ``[0, *keys]``."""
        return np.concatenate([[0], self.keys]).astype(np.int64)

    def downsampled(self, stride: int) -> np.ndarray:
        """Maps at feature stride ``stride``: ``[K, (H − 1) // s + 1, (W − 1) // s + 1]``, max 1 each."""
        return max_normalized(stride_resized(self.maps, stride))

    def with_background(self, stride: int = 1) -> np.ndarray:
        """``[background; maps]`` ``[K + 1, ...]``, in the order of :attr:`label_ids`: at full resolution
        (``stride`` 1), or bilinearly resized to ``((H − 1) // s + 1, (W − 1) // s + 1)`` and *not*
        re-normalised (SIPE's ``make_seg_labels``). Needs the background channel."""
        if self.background is None:
            raise ValueError("these seeds were converted without their background channel (keep_background=False)")
        stacked = np.concatenate([self.background[None], self.maps]).astype(np.float32)
        return stacked if stride == 1 else stride_resized(stacked, stride)


def stride_resized(maps: np.ndarray, stride: int) -> np.ndarray:
    """``[K, H, W]`` maps bilinearly resized to the stride-``s`` grid ``((H − 1) // s + 1, (W − 1) // s + 1)``."""
    height, width = maps.shape[1:]
    size = ((height - 1) // stride + 1, (width - 1) // stride + 1)
    if len(maps) == 0:
        return np.zeros((0, *size), np.float32)
    small = F.interpolate(torch.from_numpy(np.ascontiguousarray(maps))[None], size=size, mode="bilinear",
                          align_corners=False)
    return small[0].numpy()


def max_normalized(maps: np.ndarray) -> np.ndarray:
    """Each channel clipped to [0, 1] and divided by its maximum (all-zero channels stay zero)."""
    maps = np.clip(np.asarray(maps, dtype=np.float32), 0.0, 1.0)
    peaks = maps.reshape(len(maps), -1).max(axis=1) if maps.size else np.zeros(len(maps), np.float32)
    return maps / np.maximum(peaks, 1e-5)[:, None, None]


def to_refinement_seeds(seeds: SeedMaps, keep_background: bool = False) -> RefinementSeeds:
    """Apply steps 1–2 of the module's conversion to one image's seeds; ``keep_background`` keeps the
    background channel (max-normalised like the others) as ``background`` (ValueError if there is none)."""
    keys = np.asarray(seeds.keys)
    foreground = keys > 0
    maps = max_normalized(np.asarray(seeds.maps)[foreground])
    background = None
    if keep_background:
        if not (~foreground).any():
            raise ValueError("the seeds have no background channel (key 0) to keep")
        background = max_normalized(np.asarray(seeds.maps)[~foreground][:1])[0]
    return RefinementSeeds(maps=maps, keys=keys[foreground].astype(np.int64), background=background)


def background_from_power(maps: np.ndarray, alpha: float) -> np.ndarray:
    """PSA's background score ``(1 − max_c map_c)^α`` ``[H, W]`` (1 where there is no foreground map)."""
    if len(maps) == 0:
        return np.ones(maps.shape[1:], np.float32)
    return np.power(1.0 - maps.max(axis=0), alpha).astype(np.float32)
