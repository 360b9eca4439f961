"""DINO's self-distillation loss (Caron et al., ICCV 2021; facebookresearch/dino ``DINOLoss``): the
cross-entropy between every teacher view (centred, sharpened by the teacher temperature) and every other
student view (divided by the student temperature), averaged over the pairs. The centre's EMA and the
temperature schedule are the objective's (``wsss_core.pretraining.dino``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dino_loss(student_out: torch.Tensor, teacher_out: torch.Tensor, center: torch.Tensor, num_global: int,
              student_temperature: float, teacher_temperature: float) -> torch.Tensor:
    """DINO's loss: ``student_out`` ``[V·B, K]`` (views stacked, global first), ``teacher_out``
    ``[num_global·B, K]``; mean over the pairs (teacher view i, student view v ≠ i) of
    ``−Σ softmax((t − c)/τ_t) · log_softmax(s/τ_s)``."""
    student_views = (student_out / student_temperature).chunk(student_out.shape[0] * num_global // teacher_out.shape[0])
    teacher_views = F.softmax((teacher_out - center) / teacher_temperature, dim=-1).detach().chunk(num_global)
    total, terms = student_out.new_zeros(()), 0
    for i, target in enumerate(teacher_views):
        for v, student in enumerate(student_views):
            if v == i:
                continue
            total = total + torch.sum(-target * F.log_softmax(student, dim=-1), dim=-1).mean()
            terms += 1
    return total / terms
