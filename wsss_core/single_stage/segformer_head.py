"""SegFormer's all-MLP segmentation decoder, as AFA (``wetr/segformer_head.py``) and ECA use it.

Each of the four MiT stage maps goes through its own linear layer to ``embedding_dim`` (256); stages
2-4 are upsampled bilinearly (align_corners=False) to stage 1's size (1/4 of the input); the four maps
are concatenated in the order (c4, c3, c2, c1), fused by a bias-free 1×1 conv + BatchNorm + ReLU
(mmcv ``ConvModule``), passed through Dropout2d(0.1) and a 1×1 conv (with bias) to the C+1 labels.

⚠ The authors use SyncBatchNorm, which needs a DDP process group; this single-process project uses
plain BatchNorm2d (the same maths on one device).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class MLPEmbedding(nn.Module):
    """A per-token linear layer on a map: ``[B, C, h, w]`` → ``[B, E, h, w]``."""

    def __init__(self, in_channels: int, embedding_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        tokens = self.proj(x.flatten(2).transpose(1, 2))
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, height, width)


class SegFormerHead(nn.Module):
    """All-MLP decoder over the four stage maps; logits at stage 1's resolution."""

    def __init__(
        self, in_channels: Sequence[int], num_labels: int, embedding_dim: int = 256, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"SegFormerHead needs the 4 MiT stage widths, got {list(in_channels)}")
        self.embeddings = nn.ModuleList(MLPEmbedding(channels, embedding_dim) for channels in in_channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(4 * embedding_dim, embedding_dim, 1, bias=False),
            nn.BatchNorm2d(embedding_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(embedding_dim, num_labels, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits ``[B, num_labels, h1, w1]`` from stage maps ``features[0..3]``."""
        size = features[0].shape[-2:]
        embedded = []
        for embedding, feature in zip(self.embeddings, features):
            x = embedding(feature)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            embedded.append(x)
        fused = self.fuse(torch.cat(embedded[::-1], dim=1))
        return self.classifier(self.dropout(fused))
