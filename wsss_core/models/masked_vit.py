"""ViT encoder with a boolean key mask in every block, for the single-stage ToCo family (ToCo, MCC).

Wraps a timm ``VisionTransformer`` (DeiT-B in the papers, ``vit_synth`` in tests) and returns what the
ToCo/MCC heads read: the final class token and the final patch-token map (both after the last LayerNorm),
and the patch-token map of an intermediate "aux" block (no LayerNorm; VOC ``aux_layer = -3`` = the 10th
of 12 blocks).

MCC's masked views hide a set of patch tokens as *keys* in every block: every query (the class token
included) gives them zero attention, while they still compute their own outputs. The authors subtract
1e12 from the pre-softmax logits of masked columns; here the same mask goes to
``F.scaled_dot_product_attention`` as a boolean ``attn_mask`` (True = may attend), which gives exactly zero
weight. The class token is never masked, so no query row is ever fully masked.

As coded by the authors (ToCo/MCC ``vit.py``): the positional table is re-interpolated to the token grid
on every forward with plain bicubic interpolation (``align_corners=False``, no antialias), the class
token's position entry is kept, and the table is frozen (``freeze_pos_embed``, default True as coded).
The patch embedding is applied as its stride-16 convolution, so sizes that are not multiples of 16 are
floored like the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wsss_core.errors import ConfigError


@dataclass
class EncoderOutput:
    """What one forward of :class:`MaskedViT` returns."""

    class_token: torch.Tensor  # [B, D] final class token after the last norm
    patch_tokens: torch.Tensor  # [B, D, h, w] final patch tokens after the last norm
    aux_tokens: torch.Tensor  # [B, D, h, w] patch tokens output by block ``aux_layer`` (no norm)


def key_attention_mask(key_mask: torch.Tensor | None, batch_size: int, device: torch.device) -> torch.Tensor | None:
    """SDPA boolean mask ``[B, 1, 1, 1 + N]`` (True = may be attended) from a patch key mask
    ``[B, N]`` (True = masked); the class-token column is always kept."""
    if key_mask is None:
        return None
    keep_class = torch.ones(batch_size, 1, dtype=torch.bool, device=device)
    keep = torch.cat([keep_class, ~key_mask.to(device=device, dtype=torch.bool)], dim=1)
    return keep[:, None, None, :]


def masked_attention(attention: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
    """A timm ``Attention`` module's forward with a boolean key mask through
    ``F.scaled_dot_product_attention`` (same parameters, same maths as timm's fused path)."""
    batch, tokens, _ = x.shape
    num_heads = attention.num_heads
    qkv = attention.qkv(x).reshape(batch, tokens, 3, num_heads, -1).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)
    query, key = attention.q_norm(query), attention.k_norm(key)
    dropout = attention.attn_drop.p if attention.training else 0.0
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout)
    out = out.transpose(1, 2).reshape(batch, tokens, -1)
    norm = getattr(attention, "norm", None)
    if norm is not None:
        out = norm(out)
    gate = getattr(attention, "gate", None)
    if gate is not None:
        out = out * gate(x).sigmoid()
    return attention.proj_drop(attention.proj(out))


def masked_block(block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
    """A timm pre-norm ``Block`` forward whose attention takes the key mask."""
    x = x + block.drop_path1(block.ls1(masked_attention(block.attn, block.norm1(x), attn_mask)))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def resample_position_table(pos_embed: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Patch position table ``[1, gh*gw, D]`` resampled bicubically to ``new_grid`` (no antialias)."""
    if tuple(grid) == tuple(new_grid):
        return pos_embed
    dim = pos_embed.shape[-1]
    table = pos_embed.reshape(1, grid[0], grid[1], dim).permute(0, 3, 1, 2)
    table = F.interpolate(table, size=new_grid, mode="bicubic", align_corners=False)
    return table.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim)


class MaskedViT(nn.Module):
    """A timm ViT with a per-view key mask in every block, aux-layer tokens and the final class token."""

    def __init__(self, vit: nn.Module, aux_layer: int = -3, freeze_pos_embed: bool = True) -> None:
        super().__init__()
        if getattr(vit, "cls_token", None) is None or getattr(vit, "num_prefix_tokens", 1) != 1:
            raise ConfigError(
                "method.model.backbone must be a ViT with exactly one class token and no register tokens "
                "(e.g. deit_base, vit_synth)"
            )
        self.vit = vit
        self.depth = len(vit.blocks)
        if not -self.depth <= aux_layer < self.depth:
            raise ConfigError(f"method.aux_layer={aux_layer} is outside the {self.depth} blocks of the backbone")
        self.aux_layer = aux_layer % self.depth
        self.embed_dim = int(vit.embed_dim)
        self.num_heads = int(vit.blocks[0].attn.num_heads)
        patch = vit.patch_embed.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        self.pos_grid = tuple(int(g) for g in vit.patch_embed.grid_size)
        if freeze_pos_embed:
            vit.pos_embed.requires_grad_(False)

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """Token grid of an input of ``height`` × ``width`` pixels (floored like the patch conv)."""
        return height // self.patch_size, width // self.patch_size

    def _embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        vit = self.vit
        patches = vit.patch_embed.proj(images)  # [B, D, h, w]
        grid = (patches.shape[-2], patches.shape[-1])
        patches = vit.patch_embed.norm(patches.flatten(2).transpose(1, 2))
        pos = vit.pos_embed
        if getattr(vit, "no_embed_class", False):
            class_pos, patch_pos = torch.zeros_like(pos[:, :1]), pos
        else:
            class_pos, patch_pos = pos[:, :1], pos[:, 1:]
        patch_pos = resample_position_table(patch_pos, self.pos_grid, grid)
        class_token = (vit.cls_token + class_pos).expand(images.shape[0], -1, -1)
        tokens = torch.cat([class_token, patches + patch_pos], dim=1)
        return vit.norm_pre(vit.pos_drop(tokens)), grid

    def forward(self, images: torch.Tensor, key_mask: torch.Tensor | None = None) -> EncoderOutput:
        """Encode ``images`` ``[B, 3, H, W]``; ``key_mask`` ``[B, h*w]`` (True = masked key) hides
        patch tokens from every query in every block."""
        tokens, (height, width) = self._embed(images)
        attn_mask = key_attention_mask(key_mask, images.shape[0], images.device)
        aux = None
        for index, block in enumerate(self.vit.blocks):
            tokens = masked_block(block, tokens, attn_mask)
            if index == self.aux_layer:
                aux = tokens[:, 1:]
        tokens = self.vit.norm(tokens)
        assert aux is not None
        return EncoderOutput(
            class_token=tokens[:, 0],
            patch_tokens=_to_map(tokens[:, 1:], height, width),
            aux_tokens=_to_map(aux, height, width),
        )


def _to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B, h*w, D]`` → ``[B, D, h, w]``."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)
