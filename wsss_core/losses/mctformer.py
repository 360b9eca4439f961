"""MCTformer-V2's loss (Xu et al., CVPR 2022; the authors' code at commit 9606597): the multilabel
soft-margin loss on the class-token logits plus the same loss on the patch-CAM logits, weight 1 each."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F


class MultiTokenLogits(Protocol):
    """What the loss reads of the network's output (``methods.mctformer.MCTformerOutput``)."""

    token_logits: torch.Tensor  # [B, C] mean over dims of each final class token
    patch_logits: torch.Tensor  # [B, C] global average of the patch CAM


def mctformer_losses(output: MultiTokenLogits, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Multilabel soft-margin losses on the token and the patch logits, summed with weight 1."""
    token = F.multilabel_soft_margin_loss(output.token_logits, labels)
    patch = F.multilabel_soft_margin_loss(output.patch_logits, labels)
    return {"loss": token + patch, "token_loss": token, "patch_loss": patch}
