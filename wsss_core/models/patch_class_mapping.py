"""ViT-PCM's head: HV-BiLSTM patch conditioning and the patch-class mapping (PCM) classifier.

As the authors coded it (deepplants/ViT-PCM ``model.py``, TensorFlow):

* ``HVBiLSTM``: dropout on the token grid, then a bidirectional LSTM along every row (horizontal) and a
  second one, with its own weights, along every column (vertical), both reading the same input; the two
  outputs (``2 · hidden`` channels each) are concatenated. Keras' ``LSTM(dropout=p)`` drops the LSTM
  *inputs* with one mask per sequence; here one mask per sequence (shared by both directions) is drawn
  over the input channels — PyTorch's ``nn.LSTM(dropout=...)`` would instead act between stacked layers.
* ``PatchClassifier``: dropout, a bias-free linear layer ``W ∈ R^{e×(K+1)}`` initialised from
  N(0, 0.05²), softmax over the K+1 classes (background is class 0) at every patch (``Z``), and global
  max pooling over the patches (``y_k = max_i Z_i^k``). The authors' L2 kernel regulariser
  (0.01 · Σ W²) is exposed as ``weight_penalty()`` so that the method adds it to the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PatchClassOutput:
    """Per-patch logits ``A`` and probabilities ``Z`` ``[B, K+1, h, w]``, and the GMP scores ``y``
    ``[B, K+1]``."""

    logits: torch.Tensor
    probabilities: torch.Tensor
    pooled: torch.Tensor


class SequenceDropout(nn.Module):
    """Dropout with one mask per sequence: input ``[N, L, D]``, mask ``[N, 1, D]`` (variational
    dropout, what Keras applies to LSTM inputs)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return sequences
        keep = 1.0 - self.p
        mask = torch.empty_like(sequences[:, :1, :]).bernoulli_(keep) / keep
        return sequences * mask


class HVBiLSTM(nn.Module):
    """Horizontal + vertical bidirectional LSTMs over a token grid ``[B, h, w, D]`` →
    ``[B, h, w, 4 · hidden]``."""

    def __init__(self, in_dim: int, hidden_dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.grid_dropout = nn.Dropout(dropout)
        self.sequence_dropout = SequenceDropout(dropout)
        self.rows = nn.LSTM(in_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.columns = nn.LSTM(in_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.out_dim = 4 * hidden_dim

    def _run(self, lstm: nn.LSTM, grid: torch.Tensor) -> torch.Tensor:
        """Run ``lstm`` along the second grid axis of ``[B, a, b, D]`` (one sequence per ``a``)."""
        batch, first, second, dim = grid.shape
        sequences = self.sequence_dropout(grid.reshape(batch * first, second, dim))
        output, _ = lstm(sequences)
        return output.reshape(batch, first, second, -1)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        grid = self.grid_dropout(grid)
        horizontal = self._run(self.rows, grid)
        vertical = self._run(self.columns, grid.transpose(1, 2)).transpose(1, 2)
        return torch.cat([horizontal, vertical], dim=-1)


class PatchClassifier(nn.Module):
    """Bias-free linear map from patch features ``[B, h, w, e]`` to K+1 classes, softmax per patch,
    global max pooling over patches."""

    def __init__(
        self, in_dim: int, num_classes_with_background: int, dropout: float = 0.2, init_std: float = 0.05
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_dim, num_classes_with_background, bias=False)
        nn.init.normal_(self.linear.weight, mean=0.0, std=init_std)

    def weight_penalty(self) -> torch.Tensor:
        """Σ W² of the classifier (the authors' Keras L2 regulariser without its factor)."""
        return self.linear.weight.pow(2).sum()

    def forward(self, features: torch.Tensor) -> PatchClassOutput:
        logits = self.linear(self.dropout(features)).permute(0, 3, 1, 2)  # [B, K+1, h, w]
        probabilities = logits.softmax(dim=1)
        pooled = probabilities.flatten(2).amax(dim=2)
        return PatchClassOutput(logits=logits, probabilities=probabilities, pooled=pooled)


class PatchClassMapping(nn.Module):
    """The ViT-PCM head: HV-BiLSTM conditioning (optional) followed by the patch classifier."""

    def __init__(
        self,
        in_dim: int,
        num_classes_with_background: int,
        hidden_dim: int = 192,
        dropout: float = 0.2,
        init_std: float = 0.05,
        use_lstm: bool = True,
    ) -> None:
        super().__init__()
        self.conditioning = HVBiLSTM(in_dim, hidden_dim, dropout) if use_lstm else nn.Identity()
        feature_dim = self.conditioning.out_dim if use_lstm else in_dim
        self.classifier = PatchClassifier(feature_dim, num_classes_with_background, dropout, init_std)

    def weight_penalty(self) -> torch.Tensor:
        return self.classifier.weight_penalty()

    def forward(self, grid: torch.Tensor) -> PatchClassOutput:
        """``grid``: ViT patch tokens as ``[B, h, w, D]``."""
        return self.classifier(self.conditioning(grid))
