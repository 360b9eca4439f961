"""How a ViT stand-in is initialised before pretraining (``pretraining.backbones.<name>.init``).

An ImageNet DeiT's patches attend to their neighbours and to their own object; a ViT trained from
timm's default initialisation on a few thousand images keeps its patch-to-patch attention nearly flat
(README, "Where the seed maps point"), and every method that refines its maps with that attention
(MCTformer-V2 and CTI: ``A_pp``) averages them flat. Two published initialisations give a small-data ViT
the structure the big one learns, without changing its architecture or its checkpoint's keys:

* ``mimetic_attention`` (Trockman & Kolter, "Mimetic Initialization of Self-Attention Layers", ICML 2023):
  each head's ``W_q^T W_k ≈ α₁Z₁ + β₁I`` and the block's ``W_v^T W_o^T ≈ α₂Z₂ − β₂I`` (``Z`` random with
  variance ``1/d``, the rank of a head taken by truncated SVD), the products that trained ViTs show; a
  token then attends most to the tokens most like itself.
* ``sincos_position_embedding``: the fixed 2-D sin-cos embedding of MoCo v3 / MAE written into the
  (still learnable) position embedding, so that tokens of neighbouring patches are alike and the
  mimetic heads start local.

Each is registered in :data:`INITIALISERS` with its typed arguments; the recipe lists the ones it uses
(``init: {mimetic_attention: {}, sincos_position_embedding: {}}``), applied in that order right after
the backbone is built, from the stage's seeded random state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from pydantic import Field
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from wsss_core.errors import ConfigError
from wsss_core.registry import Registry
from wsss_core.settings import Settings


@dataclass(frozen=True)
class Initialiser:
    """Writes a structure into a freshly built backbone; ``settings_type`` types its arguments."""

    apply: Callable[[nn.Module, Any], None]
    settings_type: type[Settings]


INITIALISERS: Registry[Initialiser] = Registry("backbone initialisation")


class MimeticSettings(Settings):
    """The products' random and identity weights (the paper's values for ViTs)."""

    alpha_qk: Annotated[float, Field(ge=0.0, le=10.0)] = 0.7
    beta_qk: Annotated[float, Field(ge=0.0, le=10.0)] = 0.7
    alpha_vo: Annotated[float, Field(ge=0.0, le=10.0)] = 0.4
    beta_vo: Annotated[float, Field(ge=0.0, le=10.0)] = 0.4


class NoSettings(Settings):
    """An initialiser without arguments."""


def factor(product: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(left, right)`` of shapes ``[d, rank]`` and ``[rank, d]`` whose product is the best rank-``rank``
    approximation of ``product`` (SVD, the singular values split evenly between the two)."""
    u, s, vh = torch.linalg.svd(product)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def _noisy_identity(dim: int, alpha: float, beta: float) -> torch.Tensor:
    return alpha * torch.randn(dim, dim) / dim ** 0.5 + beta * torch.eye(dim)


def mimetic_attention(backbone: nn.Module, settings: MimeticSettings) -> None:
    """Trockman & Kolter's mimetic initialisation of every attention block of a timm ViT."""
    with torch.no_grad():
        for block in backbone.blocks:
            attention = block.attn
            dim, heads, width = attention.qkv.in_features, attention.num_heads, attention.head_dim
            query, key, value = attention.qkv.weight.view(3, heads, width, dim)  # views: writes reach the weight
            for head in range(heads):
                left, right = factor(_noisy_identity(dim, settings.alpha_qk, settings.beta_qk), width)
                query[head], key[head] = left.T, right  # W_q^hᵀ W_k^h = left · right
            left, right = factor(_noisy_identity(dim, settings.alpha_vo, -settings.beta_vo), heads * width)
            value.copy_(left.T.reshape(heads, width, dim))  # W_vᵀ W_oᵀ = left · right
            attention.proj.weight.copy_(right.T)


def sincos_position_embedding(backbone: nn.Module, settings: NoSettings) -> None:
    """MoCo v3's 2-D sin-cos embedding in the patch positions; the class token's position gets zeros."""
    del settings
    grid = tuple(backbone.patch_embed.grid_size)
    table = build_sincos2d_pos_embed(list(grid), backbone.embed_dim)
    with torch.no_grad():
        embedding = backbone.pos_embed
        prefix = embedding.shape[1] - table.shape[0]  # class/register tokens with a position of their own
        embedding[0, prefix:] = table.to(embedding.dtype)
        embedding[0, :prefix] = 0.0


INITIALISERS.register("mimetic_attention")(Initialiser(mimetic_attention, MimeticSettings))
INITIALISERS.register("sincos_position_embedding")(Initialiser(sincos_position_embedding, NoSettings))


def apply_init(backbone: nn.Module, init: Mapping[str, Any], where: str) -> nn.Module:
    """``backbone`` with the recipe's initialisers applied in order. An unknown initialiser, a bad argument
    or a backbone that is not a ViT with a learnable position embedding is a ConfigError naming the key,
    raised before any weight is written."""
    typed = []
    for name, arguments in init.items():
        initialiser = _initialiser(name, where)
        typed.append((initialiser, initialiser.settings_type.load(arguments, f"{where}.{name}")))
    if typed and not (isinstance(backbone, VisionTransformer) and isinstance(backbone.pos_embed, nn.Parameter)):
        raise ConfigError(f"{where}: {', '.join(init)} need a timm VisionTransformer with a learnable position "
                          f"embedding, and this backbone is a {type(backbone).__name__}: remove the key")
    for initialiser, settings in typed:
        initialiser.apply(backbone, settings)
    return backbone


def _initialiser(name: str, where: str) -> Initialiser:
    try:
        return INITIALISERS.get(name)
    except KeyError as error:
        raise ConfigError(f"{where}: {error.args[0]}") from None
