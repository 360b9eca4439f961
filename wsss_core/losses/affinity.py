"""The training losses of the inter-pixel affinity networks (IRN and PSA), on the pairs of a
:class:`~wsss_core.refine.path_index.PathIndex` labelled by :func:`wsss_core.refine.affinity.pair_labels`.

Each term is a mean over its mask (sum / (count + 1e-5), as both authors' code): positive
``−log(a + 1e-5)``, negative ``−log(1 + 1e-5 − a)``.

* IRN: ``(½ L_bg + ½ L_fg + L_neg) / 2 + (L_dp_fg + L_dp_bg) / 2``, where the displacement terms
  are ``|(δ_p − δ_{p+d}) − d|`` over ``fg_pos`` (the two points of an instance share a centroid) and
  ``|δ_p − δ_{p+d}|`` over ``bg_pos``, averaged over pairs and both components.
* PSA: ``¼ L_bg + ¼ L_fg + ½ L_neg``.

Affinities and masks have the layout ``[B, D, H, W]`` of :mod:`wsss_core.refine.path_index`.
"""

from __future__ import annotations

import torch

from wsss_core.refine.affinity import PairLabels
from wsss_core.refine.path_index import PathIndex, shifted

EPSILON = 1e-5


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
