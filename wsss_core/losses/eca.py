"""ECA's CAM correspondence loss (CCE, Wu et al., ACM MM 2024, Eq. 11) and the Jensen-Shannon divergence
it is made of.

Local CAM logits of a view give p_i = softmax over the C classes at each token; D = JS(p_i ‖ p_j) / ln 2
∈ [0, 1]; per view L = mean_{R+} D + mean_{R−} (1 − D), averaged over views. Eq. 11 as printed puts
(1 − D) on positive and D on negative pairs, against the text ("maximising the similarity of positive
pairs"): ``sign: corrected`` (default) is the reading above, ``sign: printed`` the formula as printed.
The pair labels come from ``single_stage.pseudo_labels.affinity_labels`` (``methods.eca``).
"""

from __future__ import annotations

import math

import torch


def pairwise_js_divergence(probabilities: torch.Tensor, epsilon: float = 1e-8) -> torch.Tensor:
    """Jensen-Shannon divergence in bits ``[B, N, N]`` (∈ [0, 1]) between all pairs of the distributions
    ``probabilities`` ``[B, N, C]``."""
    p = probabilities.clamp_min(epsilon)
    negative_entropy = (p * p.log()).sum(dim=-1)  # [B, N]
    mixture = 0.5 * (p[:, :, None, :] + p[:, None, :, :])
    mixture_term = (mixture * mixture.log()).sum(dim=-1)  # [B, N, N]
    divergence = 0.5 * (negative_entropy[:, :, None] + negative_entropy[:, None, :]) - mixture_term
    return (divergence / math.log(2.0)).clamp(0.0, 1.0)


def correspondence_loss(logits: torch.Tensor, pair_labels: torch.Tensor, sign: str = "corrected") -> torch.Tensor:
    """Eq. 11 over views: local CAM logits ``[V, C, h, w]`` (softmax over C) and pair labels ``[V, N, N]``
    (1 positive, 0 negative, else ignored). ``corrected``: mean_{R+} D + mean_{R−} (1 − D) per view,
    averaged over views (an empty set adds 0); ``printed``: the formula as printed, (1 − D) on R+ and D on R−."""
    if sign not in ("corrected", "printed"):
        raise ValueError(f"correspondence sign must be 'corrected' or 'printed', not {sign!r}")
    probabilities = logits.flatten(2).transpose(1, 2).softmax(dim=-1)
    divergence = pairwise_js_divergence(probabilities)
    positive = (pair_labels == 1).to(divergence)
    negative = (pair_labels == 0).to(divergence)
    on_positive, on_negative = (divergence, 1 - divergence) if sign == "corrected" else (1 - divergence, divergence)
    per_view = (positive * on_positive).sum(dim=(1, 2)) / positive.sum(dim=(1, 2)).clamp_min(1) + (
        negative * on_negative
    ).sum(dim=(1, 2)) / negative.sum(dim=(1, 2)).clamp_min(1)
    return per_view.mean()
