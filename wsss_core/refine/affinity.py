"""Inter-pixel affinities, their labels and their training losses (IRN and PSA).

* :func:`affinity_from_boundary` — IRN: ``a(p, p + d) = 1 − max_{k ∈ path(d)} b(p + k)`` for a boundary
  probability map ``b``.
* :func:`affinity_from_features` — PSA: ``a(p, p + d) = exp(−mean_c |f_c(p) − f_c(p + d)|)``.
* :func:`pair_labels` — from a relation label map (0 background, 1..C confident class, 255 unsure):
  a pair is valid when both ends are not 255 (and in the grid); ``bg_pos`` = valid, equal, background;
  ``fg_pos`` = valid, equal, foreground; ``neg`` = valid and different.
* Losses, each term a mean over its mask (sum / (count + 1e-5), as both authors' code):
  positive ``−log(a + 1e-5)``, negative ``−log(1 + 1e-5 − a)``.

  - IRN: ``(½ L_bg + ½ L_fg + L_neg) / 2 + (L_dp_fg + L_dp_bg) / 2``, where the displacement terms
    are ``|(δ_p − δ_{p+d}) − d|`` over ``fg_pos`` (the two points of an instance share a centroid) and
    ``|δ_p − δ_{p+d}|`` over ``bg_pos``, averaged over pairs and both components.
  - PSA: ``¼ L_bg + ¼ L_fg + ½ L_neg``.

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
EPSILON = 1e-5


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


# ----------------------------------------------------------------------------------------- losses
def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum(values · mask) / (count(mask) + 1e-5)``: 0 when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / (mask.sum() + EPSILON)


def affinity_loss_terms(affinity: torch.Tensor, labels: PairLabels) -> dict[str, torch.Tensor]:
    """The three cross-entropy terms ``bg_pos``, ``fg_pos``, ``neg`` of affinities ``[B, D, H, W]``."""
    positive = -torch.log(affinity + EPSILON)
    negative = -torch.log(1.0 + EPSILON - affinity)
    return {
        "bg_pos": masked_mean(positive, labels.bg_pos),
        "fg_pos": masked_mean(positive, labels.fg_pos),
        "neg": masked_mean(negative, labels.neg),
    }


def pair_displacement(displacement: torch.Tensor, path_index: PathIndex) -> torch.Tensor:
    """``δ(p) − δ(p + d)`` of a displacement field ``[B, 2, H, W]`` → ``[B, 2, D, H, W]``
    (0 where ``p + d`` leaves the grid; those pairs are never labelled)."""
    destination = torch.stack(
        [shifted(displacement, dy, dx, fill=0.0) for dy, dx in path_index.directions], dim=2
    )
    return displacement.unsqueeze(2) - destination


def displacement_loss_terms(
    displacement: torch.Tensor, labels: PairLabels, path_index: PathIndex
) -> dict[str, torch.Tensor]:
    """IRN's ``dp_fg`` (target: the pair offset) and ``dp_bg`` (target: 0) L1 terms, each averaged
    over its pairs and the two components."""
    pairs = pair_displacement(displacement, path_index)
    target = path_index.offsets(displacement.device).t().reshape(1, 2, -1, 1, 1)
    fg_error = (pairs - target).abs().sum(dim=1)
    bg_error = pairs.abs().sum(dim=1)
    return {
        "dp_fg": (fg_error * labels.fg_pos).sum() / (2 * labels.fg_pos.sum() + EPSILON),
        "dp_bg": (bg_error * labels.bg_pos).sum() / (2 * labels.bg_pos.sum() + EPSILON),
    }


def irn_loss(
    affinity: torch.Tensor, displacement: torch.Tensor, labels: PairLabels, path_index: PathIndex
) -> dict[str, torch.Tensor]:
    """IRN's total ``(½ bg + ½ fg + neg)/2 + (dp_fg + dp_bg)/2`` and its terms."""
    terms = affinity_loss_terms(affinity, labels)
    terms.update(displacement_loss_terms(displacement, labels, path_index))
    positive = terms["bg_pos"] / 2 + terms["fg_pos"] / 2
    terms["loss"] = (positive + terms["neg"]) / 2 + (terms["dp_fg"] + terms["dp_bg"]) / 2
    return terms


def psa_loss(affinity: torch.Tensor, labels: PairLabels) -> dict[str, torch.Tensor]:
    """PSA's total ``¼ bg + ¼ fg + ½ neg`` and its terms."""
    terms = affinity_loss_terms(affinity, labels)
    terms["loss"] = terms["bg_pos"] / 4 + terms["fg_pos"] / 4 + terms["neg"] / 2
    return terms


# ------------------------------------------------------------------------------ refiner interface
class AffinityRefiner(abc.ABC):
    """One affinity refinement method (IRN or PSA) as the stages see it."""

    name: ClassVar[str]
    feature_stride: ClassVar[int]  # stride of the affinity grid (IRN 4, PSA 8)
    default_crf: ClassVar[CRFParams]  # CRF kernels of the relation labels

    @abc.abstractmethod
    def settings(self, stage: Mapping[str, Any]) -> Any:
        """The method's settings from ``stage[<name>]`` (ConfigError on unknown keys)."""

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
