"""Losses of the single-stage ToCo family: balanced segmentation CE (ToCo, MCC, AFA, ECA), patch-token
affinity and class-token contrast (ToCo, MCC).

* ``balanced_segmentation_loss``: ½·CE over pixels labelled background + ½·CE over pixels labelled
  foreground (255 ignored). The authors' version returns NaN when a crop has no valid background or no
  valid foreground pixel (ToCo issues #3, #8, #15, #26); here an empty term is skipped (it contributes 0,
  the other keeps its ½ weight, so non-empty crops get exactly the authors' gradient).
* ``affinity_loss`` (ToCo "PTC", MCC "L_aff"): with |cos| between final patch tokens,
  ½·(1 − Σ_pos|cos| / (N_pos + 1)) + ½·Σ_neg|cos| / (N_neg + 1), sums over the whole batch.
* ``class_token_contrast_loss`` (ToCo CTC = MCC L_mcc): per image with teacher outputs T_a (a = the 2
  global views) and student outputs S_j, ℓ_aj = exp(T_a·S_j / τ) on raw dot products and
  Neg_a = Σ_{j negative} ℓ_aj,

      L = Σ_a [ Σ_{j positive} −log(ℓ_aj / (ℓ_aj + Neg_a + ε)) + log(1 + Neg_a + ε) ] / 2 / (#pos + ε)

  averaged over the batch, ε = 1e-4. The paper (Eq. 10) has only the first term; the second is added
  once per image by the authors' code (a Python ``for … else``); ``negative_term`` switches it (default
  on, as coded and logged).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wsss_core.single_stage.pseudo_labels import IGNORE_INDEX


def balanced_segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """½ CE on background pixels + ½ CE on foreground pixels of ``logits`` ``[B, K, H, W]`` against
    ``target`` ``[B, H, W]``; an empty part contributes 0 instead of NaN."""
    target = target.long()
    per_pixel = F.cross_entropy(logits, target.masked_fill(target == ignore_index, 0), reduction="none")
    background = target == 0
    foreground = (target > 0) & (target != ignore_index)
    loss = logits.sum() * 0.0  # keeps the graph when both parts are empty
    for part in (background, foreground):
        count = part.sum()
        if count > 0:
            loss = loss + 0.5 * (per_pixel * part).sum() / count
    return loss


def absolute_cosine_similarity(tokens: torch.Tensor) -> torch.Tensor:
    """|cos| between every pair of tokens of ``tokens`` ``[B, D, h, w]``: ``[B, N, N]``."""
    flat = F.normalize(tokens.flatten(2), p=2, dim=1, eps=1e-8)
    return torch.matmul(flat.transpose(1, 2), flat).abs()


def affinity_loss(tokens: torch.Tensor, pair_labels: torch.Tensor) -> torch.Tensor:
    """Patch-token affinity loss of ``tokens`` ``[B, D, h, w]`` against pair labels ``[B, N, N]``
    (1 positive, 0 negative, anything else ignored)."""
    similarity = absolute_cosine_similarity(tokens)
    positive = (pair_labels == 1).to(similarity)
    negative = (pair_labels == 0).to(similarity)
    attract = 1 - (positive * similarity).sum() / (positive.sum() + 1)
    repel = (negative * similarity).sum() / (negative.sum() + 1)
    return 0.5 * attract + 0.5 * repel


def class_token_contrast_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    positive: torch.Tensor,
    temperature: float,
    negative_term: bool = True,
    epsilon: float = 1e-4,
) -> torch.Tensor:
    """Contrast of student outputs ``[B, S, E]`` (positive flags ``[B, S]``) with teacher outputs
    ``[B, T, E]`` (the global views); computed in float32 even under autocast (exp of raw products)."""
    with torch.autocast(device_type=student.device.type, enabled=False):
        return _contrast(student.float(), teacher.float(), positive, temperature, negative_term, epsilon)


def _contrast(
    student: torch.Tensor, teacher: torch.Tensor, positive: torch.Tensor, temperature: float,
    negative_term: bool, epsilon: float,
) -> torch.Tensor:
    exp_logits = torch.exp(torch.matmul(teacher, student.transpose(1, 2)) / temperature)  # [B, T, S]
    positive = positive.bool()
    negatives = (exp_logits * (~positive)[:, None, :].to(exp_logits)).sum(dim=2, keepdim=True)  # [B, T, 1]
    per_pair = -torch.log(exp_logits / (exp_logits + negatives + epsilon))
    image_loss = (per_pair * positive[:, None, :].to(per_pair)).sum(dim=(1, 2))
    if negative_term:
        image_loss = image_loss + torch.log(1 + negatives + epsilon).sum(dim=(1, 2))
    image_loss = image_loss / teacher.shape[1] / (positive.sum(dim=1).to(image_loss) + epsilon)
    return image_loss.mean()
