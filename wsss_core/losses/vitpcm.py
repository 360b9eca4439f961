"""ViT-PCM's losses (ECCV 2022; the authors' TensorFlow code, deepplants/ViT-PCM ``model.py``).

* ``L_MCE`` = BCE(t, y) over the K+1 classes of the max-pooled patch probabilities, with Keras' clipping
  to [1e-7, 1 − 1e-7];
* ``L_ET`` (equivariant transformation) = categorical cross-entropy between the mosaic's patch
  predictions and the mapped, merged view-1 prediction (``methods.vitpcm`` builds the target).

``L_REG`` (the Keras L2 regulariser on the PC layer) is a weight penalty, computed by the method.
"""

from __future__ import annotations

import torch

KERAS_EPSILON = 1e-7  # Keras' backend epsilon: the clipping of both losses (and ViT-PCM's Adam epsilon)


def multilabel_bce(pooled: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L_MCE: binary cross-entropy averaged over the K+1 classes and the batch, Keras clipping."""
    pooled = pooled.clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON)
    return -(targets * pooled.log() + (1.0 - targets) * (1.0 - pooled).log()).mean()


def equivariance_loss(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_ET: categorical cross-entropy −Σ_k t_k log p_k per patch, averaged over patches and images
    (Keras ``CategoricalCrossentropy``: predictions renormalised, then clipped). ``[B, K+1, h, w]``."""
    student = student / student.sum(dim=1, keepdim=True)
    student = student.clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON)
    return -(target.detach() * student.log()).sum(dim=1).mean()
