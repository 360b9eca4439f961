"""A ViT encoder with K class tokens that returns every block's softmax attention.

MCTformer and CTI replace ViT's single [CLS] token with one token per class and read class-to-patch
and patch-to-patch attention out of every block. ``MultiTokenViT`` wraps a timm ``VisionTransformer``
and reuses its patch embedding, the patch part of its position embedding and its blocks; the class
tokens (with their position embedding already added) come from the caller, so each method owns its
token parameters. timm's fused attention cannot return probabilities, so each block's attention is
computed explicitly from ``blk.attn.qkv`` / ``scale`` / softmax / ``proj`` (same arithmetic as timm's
non-fused path). The final LayerNorm is never applied (MCTformer-V2 and CTI read tokens from the
residual stream).

When a caller does not need the attention maps (``need_attentions=False``: CTI's strong-view and I-CTI
passes, any inference that reads only tokens or CAMs), the blocks run timm's arithmetic through
``torch.nn.functional.scaled_dot_product_attention`` instead (flash / memory-efficient kernels on GPU:
no ``[B, heads, N, N]`` probabilities are materialised) and ``attentions`` is empty; outputs agree with the
explicit path to float rounding.

The patch position embedding is resized bicubically to the exact patch grid of each input
(``(H // p, W // p)``; cti_multistage.md G11); rows/columns beyond a multiple of the patch size are
dropped by the patch convolution, as in the authors' code (G12).

The attention-map helpers shared by MCTformer and CTI live here too:
``class_to_patch_attention`` (A_cp), ``patch_to_patch_attention`` (A_pp) and
``refine_with_patch_attention`` (R_k = A_pp · vec(cam_k)).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

ClassTokenHook = Callable[[torch.Tensor], torch.Tensor]


class ViTOutput(NamedTuple):
    """What ``MultiTokenViT.forward`` returns."""

    class_tokens: torch.Tensor  # [B, K, D] after the last block, no final norm
    patch_tokens: torch.Tensor  # [B, D, h, w]
    attentions: tuple[torch.Tensor, ...]  # L × [B, heads, K+hw, K+hw] softmax probabilities
    class_tokens_per_block: tuple[torch.Tensor, ...]  # L × [B, K, D], output of each block


def _query_key_value(block: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A timm ``Block``'s normed query, key and value, each ``[B, heads, N, D/heads]``."""
    attention = block.attn
    batch, length, _ = tokens.shape
    qkv = attention.qkv(block.norm1(tokens)).reshape(batch, length, 3, attention.num_heads, -1).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)
    return attention.q_norm(query), attention.k_norm(key), value


def _finish_block(block: nn.Module, tokens: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
    """The rest of a timm ``Block`` after attention: ``mixed [B, heads, N, D/heads]`` → projection,
    residual, MLP."""
    attention = block.attn
    mixed = mixed.transpose(1, 2).reshape(tokens.shape)
    mixed = attention.proj_drop(attention.proj(getattr(attention, "norm", nn.Identity())(mixed)))
    tokens = tokens + block.drop_path1(block.ls1(mixed))
    return tokens + block.drop_path2(block.ls2(block.mlp(block.norm2(tokens))))


def block_with_attention(block: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one pre-norm timm ``Block`` and also return its softmax attention ``[B, heads, N, N]``."""
    query, key, value = _query_key_value(block, tokens)
    probabilities = ((query * block.attn.scale) @ key.transpose(-2, -1)).softmax(dim=-1)
    return _finish_block(block, tokens, block.attn.attn_drop(probabilities) @ value), probabilities


def block_with_fused_attention(block: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Run one pre-norm timm ``Block`` with fused attention (SDPA); no probabilities are returned."""
    query, key, value = _query_key_value(block, tokens)
    dropout = block.attn.attn_drop.p if block.attn.training else 0.0
    mixed = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, scale=block.attn.scale)
    return _finish_block(block, tokens, mixed)


class MultiTokenViT(nn.Module):
    """ViT blocks over ``[K class tokens ; h·w patch tokens]`` with explicit attention."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        if getattr(vit, "pos_embed", None) is None or not hasattr(vit, "blocks"):
            raise TypeError(f"MultiTokenViT needs a timm VisionTransformer, got {type(vit).__name__}")
        prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
        self.patch_embed = vit.patch_embed
        self.pos_drop = vit.pos_drop
        self.norm_pre = vit.norm_pre
        self.blocks = vit.blocks
        self.grid_size: tuple[int, int] = tuple(vit.patch_embed.grid_size)
        self.patch_pos_embed = nn.Parameter(vit.pos_embed.detach()[:, prefix:].clone())
        self.embed_dim: int = vit.embed_dim
        self.depth: int = len(vit.blocks)
        self.num_heads: int = vit.blocks[0].attn.num_heads
        self.patch_size: int = int(vit.patch_embed.patch_size[0])
        # The pretrained [CLS] token and its position embedding, for methods to initialise their tokens.
        cls_token = vit.cls_token if vit.cls_token is not None else torch.zeros(1, 1, vit.embed_dim)
        cls_pos = vit.pos_embed[:, :1] if prefix else torch.zeros(1, 1, vit.embed_dim)
        self.register_buffer("cls_token", cls_token.detach().clone(), persistent=False)
        self.register_buffer("cls_pos_embed", cls_pos.detach().clone(), persistent=False)

    def patch_position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """The patch position embedding ``[1, h·w, D]`` resized bicubically to ``grid`` exactly."""
        if grid == self.grid_size:
            return self.patch_pos_embed
        table = self.patch_pos_embed.reshape(1, *self.grid_size, -1).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=grid, mode="bicubic", align_corners=False)
        return table.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)

    def forward(
        self,
        images: torch.Tensor,
        class_tokens: torch.Tensor,
        block_hooks: Mapping[int, ClassTokenHook] | None = None,
        need_attentions: bool = True,
    ) -> ViTOutput:
        """Encode ``images [B,3,H,W]`` with ``class_tokens [B|1, K, D]`` (position embedding included).

        ``block_hooks[l]`` replaces the class tokens right before block ``l`` (0-based). With
        ``need_attentions=False`` the blocks use fused attention and ``attentions`` is ``()``.
        """
        batch = images.shape[0]
        patches = self.patch_embed.proj(images)  # [B, D, h, w]; remainder rows/columns dropped
        grid = (patches.shape[-2], patches.shape[-1])
        patches = self.patch_embed.norm(patches.flatten(2).transpose(1, 2))
        patches = patches + self.patch_position_embedding(grid)
        num_tokens = class_tokens.shape[1]
        tokens = torch.cat([class_tokens.expand(batch, -1, -1), patches], dim=1)
        tokens = self.norm_pre(self.pos_drop(tokens))
        hooks = block_hooks or {}
        unknown = [index for index in hooks if not 0 <= index < self.depth]
        if unknown:
            raise ValueError(f"block hooks {unknown} outside the {self.depth} blocks")
        attentions: list[torch.Tensor] = []
        per_block: list[torch.Tensor] = []
        for index, block in enumerate(self.blocks):
            if index in hooks:
                replaced = hooks[index](tokens[:, :num_tokens])
                tokens = torch.cat([replaced, tokens[:, num_tokens:]], dim=1)
            if need_attentions:
                tokens, probabilities = block_with_attention(block, tokens)
                attentions.append(probabilities)
            else:
                tokens = block_with_fused_attention(block, tokens)
            per_block.append(tokens[:, :num_tokens])
        patch_tokens = tokens[:, num_tokens:].transpose(1, 2).reshape(batch, -1, *grid)
        return ViTOutput(tokens[:, :num_tokens], patch_tokens, tuple(attentions), tuple(per_block))


def _summed_block_attention(attentions: Sequence[torch.Tensor], blocks: Sequence[int] | None) -> torch.Tensor:
    """Σ over ``blocks`` (None = all; negative indices count from the end) of the head-mean attention."""
    chosen = range(len(attentions)) if blocks is None else blocks
    indices = sorted({index % len(attentions) for index in chosen})
    if not indices or any(not -len(attentions) <= index < len(attentions) for index in chosen):
        raise ValueError(f"attention blocks {list(chosen)} do not fit {len(attentions)} blocks")
    return torch.stack([attentions[index].mean(dim=1) for index in indices]).sum(dim=0)


def class_to_patch_attention(
    attentions: Sequence[torch.Tensor], num_tokens: int, blocks: Sequence[int] | None
) -> torch.Tensor:
    """A_cp ``[B, K, h·w]``: attention of the K class tokens to the patches, mean over heads, SUM over
    ``blocks`` (None = all blocks; negative indices count from the end)."""
    return _summed_block_attention(attentions, blocks)[:, :num_tokens, num_tokens:]


def patch_to_patch_attention(
    attentions: Sequence[torch.Tensor], num_tokens: int, blocks: Sequence[int] | None
) -> torch.Tensor:
    """A_pp ``[B, h·w, h·w]`` (row i: the attention query patch i pays to each key patch), mean over
    heads, SUM over ``blocks`` (unnormalised, as in MCTformer and CTI)."""
    return _summed_block_attention(attentions, blocks)[:, num_tokens:, num_tokens:]


def refine_with_patch_attention(cams: torch.Tensor, patch_attention: torch.Tensor) -> torch.Tensor:
    """R_k = A_pp · vec(cam_k) for every channel: ``cams [B,K,h,w]``, ``patch_attention [B,hw,hw]``."""
    batch, channels, height, width = cams.shape
    flat = cams.reshape(batch, channels, height * width)
    return (flat @ patch_attention.transpose(1, 2)).reshape(batch, channels, height, width)
