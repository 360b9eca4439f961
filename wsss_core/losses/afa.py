"""AFA's affinity-from-attention loss (Ru et al., CVPR 2022), also trained by ECA.

The pair labels it is compared with come from ``methods.afa.attention_affinity_labels``.
"""

from __future__ import annotations

import torch


def attention_affinity_loss(affinity: torch.Tensor, pair_labels: torch.Tensor) -> torch.Tensor:
    """½·Σ_pos(1 − â)/(N_pos + 1) + ½·Σ_neg â/(N_neg + 1) over the batch (255 pairs ignored)."""
    positive = (pair_labels == 1).to(affinity)
    negative = (pair_labels == 0).to(affinity)
    attract = (positive * (1 - affinity)).sum() / (positive.sum() + 1)
    repel = (negative * affinity).sum() / (negative.sum() + 1)
    return 0.5 * attract + 0.5 * repel
