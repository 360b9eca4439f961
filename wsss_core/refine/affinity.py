"""Inter-pixel affinities and their labels (IRN and PSA); their training losses are in
:mod:`wsss_core.losses.affinity`.

* :func:`affinity_from_boundary` — IRN: ``a(p, p + d) = 1 − max_{k ∈ path(d)} b(p + k)`` for a boundary
  probability map ``b``.
* :func:`affinity_from_features` — PSA: ``a(p, p + d) = exp(−mean_c |f_c(p) − f_c(p + d)|)``.
* :func:`pair_labels` — from a relation label map (0 background, 1..C confident class, 255 unsure):
  a pair is valid when both ends are not 255 (and in the grid); ``bg_pos`` = valid, equal, background;
  ``fg_pos`` = valid, equal, foreground; ``neg`` = valid and different.

Affinities and masks have the layout ``[B, D, H, W]`` of :mod:`wsss_core.refine.path_index`.

:class:`AffinityRefiner` is what the three affinity stages (``affinity_labels``, ``train_affinity``,
``refine_random_walk``) call; IRN (``wsss_core.refine.irn``) and PSA (``wsss_core.refine.psa``) register
one in ``AFFINITY_REFINERS`` under ``stage.refine``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from wsss_core.models.weights import WeightsCatalog
from wsss_core.refine.crf import CRFParams
from wsss_core.refine.path_index import PathIndex, shifted
from wsss_core.refine.seed_adapter import RefinementSeeds
from wsss_core.registry import Registry

IGNORE_LABEL = 255


# ------------------------------------------------------------------------------------- affinities
def affinity_from_boundary(boundary: torch.Tensor, path_index: PathIndex) -> torch.Tensor:
    """IRN's path-max affinity of a boundary probability map ``[B, H, W]`` → ``[B, D, H, W]``.

    Pairs leaving the grid get affinity 0 (IRN pads the boundary map with 1.0 for the same effect).
    """
    cache: dict[tuple[int, int], torch.Tensor] = {}

    def at(offset: tuple[int, int]) -> torch.Tensor:
        if offset not in cache:
            cache[offset] = shifted(boundary, offset[0], offset[1], fill=1.0)
        return cache[offset]

    per_direction = []
    for path in path_index.paths:
        path_max = at(path[0])
        for offset in path[1:]:
            path_max = torch.maximum(path_max, at(offset))
        per_direction.append(1.0 - path_max)
    return torch.stack(per_direction, dim=1)


def affinity_from_features(features: torch.Tensor, path_index: PathIndex) -> torch.Tensor:
    """PSA's affinity ``exp(−mean_c |f(p) − f(p + d)|)`` of features ``[B, C, H, W]`` → ``[B, D, H, W]``;
    pairs leaving the grid get 0."""
    height, width = features.shape[-2:]
    per_direction = []
    for dy, dx in path_index.directions:
        destination = shifted(features, dy, dx, fill=0.0)
        per_direction.append(torch.exp(-(features - destination).abs().mean(dim=1)))
    affinity = torch.stack(per_direction, dim=1)
    return affinity * path_index.in_bounds(height, width, features.device).to(affinity.dtype)


# ------------------------------------------------------------------------------------ pair labels
@dataclass(frozen=True)
class PairLabels:
    """Boolean masks ``[B, D, H, W]`` over the pairs of a :class:`PathIndex`."""

    bg_pos: torch.Tensor
    fg_pos: torch.Tensor
    neg: torch.Tensor


def pair_labels(labels: torch.Tensor, path_index: PathIndex, source_mask: torch.Tensor | None = None) -> PairLabels:
    """Pair masks from relation labels ``[B, H, W]`` (0 bg, 1..C fg, 255 unsure); ``source_mask``
    ``[H, W]`` optionally restricts the source pixels (IRN's training region)."""
    labels = labels.long()
    source = labels.unsqueeze(1)
    destination = torch.stack(
        [shifted(labels, dy, dx, fill=IGNORE_LABEL) for dy, dx in path_index.directions], dim=1
    )
    valid = (source != IGNORE_LABEL) & (destination != IGNORE_LABEL)
    if source_mask is not None:
        valid = valid & source_mask.to(valid.device)
    equal = valid & (source == destination)
    return PairLabels(bg_pos=equal & (source == 0), fg_pos=equal & (source > 0), neg=valid & (source != destination))


# ------------------------------------------------------------------------------ refiner interface
class AffinityRefiner(abc.ABC):
    """One affinity refinement method (IRN or PSA) as the stages see it."""

    name: ClassVar[str]
    feature_stride: ClassVar[int]  # stride of the affinity grid (IRN 4, PSA 8)
    default_crf: ClassVar[CRFParams]  # CRF kernels of the relation labels

    @abc.abstractmethod
    def settings(self, stage: Mapping[str, Any]) -> Any:
        """The method's settings from ``stage[<name>]`` (ConfigError on unknown keys)."""

    def uses_seed_background(self, settings: Any) -> bool:
        """Whether the refiner reads the seeds' own background channel (key 0) instead of deriving a
        background from the foreground maps (only IRN's ``background: seeds``, SIPE's reading)."""
        return False

    @abc.abstractmethod
    def relation_labels(self, image: np.ndarray, seeds: RefinementSeeds, settings: Any, crf: CRFParams) -> np.ndarray:
        """``uint8 [H, W]`` relation labels: class id, 0 background, 255 unsure."""

    @abc.abstractmethod
    def build_model(self, settings: Any, weights: WeightsCatalog) -> nn.Module:
        """The affinity network (pretrained parts from ``weights``)."""

    @abc.abstractmethod
    def training_task(self, settings: Any) -> Any:
        """An object with ``training_step(model, batch, progress)`` for the shared loop; a batch holds
        ``image`` ``[B, 3, S, S]`` and ``labels`` ``[B, S / stride, S / stride]``."""

    @abc.abstractmethod
    def parameter_groups(self, model: nn.Module, base_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """The authors' optimiser groups (lr multipliers, weight decays)."""

    @abc.abstractmethod
    def pseudo_mask(self, model: nn.Module, image: torch.Tensor, seeds: RefinementSeeds, settings: Any) -> np.ndarray:
        """``uint8 [H, W]`` pseudo-mask of one normalised image ``[3, H, W]`` (on the model's device)."""


AFFINITY_REFINERS: Registry[AffinityRefiner] = Registry("affinity refiner", package="wsss_core.refine")
