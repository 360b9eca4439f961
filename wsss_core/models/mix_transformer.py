"""Mix Transformer (MiT, the SegFormer encoder) as AFA and ECA use it: stage-4 stride 1, attention logits.

Architecture (Xie et al. 2021, SegFormer; AFA's ``wetr/mix_transformer.py``): four stages, each an
overlapping patch embedding (conv k7 s4, then k3 with the stage ``strides``; padding k//2; LayerNorm
eps 1e-5) followed by ``depths[i]`` blocks of efficient self-attention (keys/values spatially reduced by
a conv with kernel = stride = ``sr_ratios[i]`` + LayerNorm when the ratio is > 1) and a Mix-FFN
(fc1 → 3×3 depth-wise conv → GELU → fc2), blocks pre-norm with LayerNorm eps 1e-6, stochastic depth
growing linearly to ``drop_path_rate``. Each stage output is layer-normed and returned as a map.

AFA sets ``strides = (4, 2, 2, 1)``: stage 4 keeps stage 3's resolution, so the output stride is 16
and a 512 crop gives 32×32 stage-4 tokens. The attention of stage 4 (no spatial reduction) is returned
as **pre-softmax, unscaled** q·kᵀ logits ``[B, heads, N, N]`` per block, which is what AFA's
affinity-from-attention head reads.

Parameter names are the official ones (``patch_embed1..4``, ``block1..4``, ``norm1..4``,
``attn.q/kv/sr/norm/proj``, ``mlp.fc1/dwconv.dwconv/fc2``), which segmentation_models_pytorch's
``mit_b*`` encoders keep too, so both the official ImageNet ``mit_b1.pth`` and smp's state dicts load
(``head.*`` dropped; ``encoder.``/``module.``/``backbone.`` prefixes stripped). The stride changes no
tensor shape, so ImageNet weights trained at stride 2 load unchanged.

Registered backbones: ``mit_b1`` (dims 64/128/320/512, heads 1/2/5/8, depths 2/2/2/2, SR 8/4/2/1,
drop-path 0.1) and ``mit_synth`` (dims 16/32/48/64, heads 1/1/2/2, depths 1/1/1/2 — AFA reads the last 2
stage-4 blocks — SR 4/2/1/1, no drop-path), a from-scratch variant for the synthetic default and the tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import timm
import torch
from timm.layers import DropPath, trunc_normal_
from torch import nn

from wsss_core.models.backbones import BACKBONES, BackboneWeightsError, check_state_dict
from wsss_core.models.weights import PretrainedWeights

STRIP_PREFIXES = ("module.", "encoder.", "backbone.")


@dataclass(frozen=True)
class MiTOutput:
    """Stage maps ``features[i]`` ``[B, C_i, h_i, w_i]`` (layer-normed) and the stage-4 attention logits,
    one ``[B, heads, N4, N4]`` tensor per stage-4 block (pre-softmax, unscaled q·kᵀ)."""

    features: tuple[torch.Tensor, ...]
    last_stage_attentions: tuple[torch.Tensor, ...]


def _init_weights(module: nn.Module) -> None:
    """SegFormer's init: trunc-normal(0.02) linears, fan-out normal convs, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        module.weight.data.normal_(0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlapping windows, then LayerNorm; returns tokens and the grid size."""

    def __init__(self, in_channels: int, embed_dim: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size, stride, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class EfficientAttention(nn.Module):
    """Multi-head attention whose keys/values come from a spatially reduced map (ratio ``sr_ratio``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, sr_ratio: int = 1) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Output tokens ``[B, N, D]`` and the unscaled logits q·kᵀ ``[B, heads, N, M]``."""
        batch, tokens, dim = x.shape
        head_dim = dim // self.num_heads
        q = self.q(x).reshape(batch, tokens, self.num_heads, head_dim).transpose(1, 2)
        source = x
        if self.sr_ratio > 1:
            reduced = self.sr(x.transpose(1, 2).reshape(batch, dim, height, width))
            source = self.norm(reduced.flatten(2).transpose(1, 2))
        kv = self.kv(source).reshape(batch, -1, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        logits = q @ k.transpose(-2, -1)
        attention = (logits * self.scale).softmax(dim=-1)
        out = (attention @ v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out), logits


class DepthwiseConv(nn.Module):
    """3×3 depth-wise conv over the token grid (the 'Mix' of Mix-FFN)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, _, dim = x.shape
        grid = x.transpose(1, 2).reshape(batch, dim, height, width)
        return self.dwconv(grid).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """fc1 → depth-wise conv → GELU → fc2."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = DepthwiseConv(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), height, width)))


class MiTBlock(nn.Module):
    """Pre-norm transformer block with efficient attention and Mix-FFN."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, sr_ratio: int, drop_path: float
    ) -> None:
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.norm1 = norm(dim)
        self.attn = EfficientAttention(dim, num_heads, qkv_bias, sr_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm(dim)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        attended, logits = self.attn(self.norm1(x), height, width)
        x = x + self.drop_path(attended)
        x = x + self.drop_path(self.mlp(self.norm2(x), height, width))
        return x, logits


class MixTransformer(nn.Module):
    """Four-stage MiT encoder returning the stage maps and the stage-4 attention logits."""

    def __init__(
        self,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        depths: Sequence[int] = (2, 2, 2, 2),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        strides: Sequence[int] = (4, 2, 2, 1),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.1,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not len(embed_dims) == len(num_heads) == len(depths) == len(sr_ratios) == len(strides) == 4:
            raise ValueError("a Mix Transformer has 4 stages: give 4 embed_dims, num_heads, depths, sr_ratios, strides")
        self.embed_dims = tuple(int(d) for d in embed_dims)
        self.num_heads = tuple(int(h) for h in num_heads)
        self.strides = tuple(int(s) for s in strides)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        previous = in_channels
        start = 0
        for stage in range(4):
            kernel = 7 if stage == 0 else 3
            dim = self.embed_dims[stage]
            setattr(self, f"patch_embed{stage + 1}", OverlapPatchEmbed(previous, dim, kernel, self.strides[stage]))
            blocks = nn.ModuleList(
                MiTBlock(dim, self.num_heads[stage], mlp_ratio, qkv_bias, int(sr_ratios[stage]), rates[start + i])
                for i in range(int(depths[stage]))
            )
            setattr(self, f"block{stage + 1}", blocks)
            setattr(self, f"norm{stage + 1}", nn.LayerNorm(self.embed_dims[stage], eps=1e-6))
            start += int(depths[stage])
            previous = self.embed_dims[stage]
        self.apply(_init_weights)

    @property
    def output_stride(self) -> int:
        return math.prod(self.strides)

    def forward(self, images: torch.Tensor) -> MiTOutput:
        batch = images.shape[0]
        x = images
        features: list[torch.Tensor] = []
        attentions: list[torch.Tensor] = []
        for stage in range(1, 5):
            tokens, height, width = getattr(self, f"patch_embed{stage}")(x)
            for block in getattr(self, f"block{stage}"):
                tokens, logits = block(tokens, height, width)
                if stage == 4:
                    attentions.append(logits)
            tokens = getattr(self, f"norm{stage}")(tokens)
            x = tokens.reshape(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()
            features.append(x)
        return MiTOutput(tuple(features), tuple(attentions))


# ------------------------------------------------------------------------------------ weights
def mit_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """An official or smp MiT state dict from ``path`` with classifier dropped and prefixes stripped."""
    try:
        raw = timm.models.load_state_dict(str(path), use_ema=False)
    except Exception as error:  # unreadable or not a checkpoint
        raise BackboneWeightsError(f"weight file '{path}' cannot be read as a MiT checkpoint ({error})") from None
    state: dict[str, torch.Tensor] = {}
    for key, tensor in raw.items():
        for prefix in STRIP_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if not key.startswith("head."):
            state[key] = tensor
    return state


def load_mit_weights(model: MixTransformer, path: Path, key: str = "mit_b1") -> None:
    """Load ``path`` into ``model`` strictly: every model tensor must come from the file."""
    state = mit_state_dict(path)
    check = check_state_dict(model, state)
    if check.missing or check.resampled:
        failed = check.missing + check.resampled
        raise BackboneWeightsError(
            f"weight file '{path}' (weights.files.{key}) does not fit this MiT: {len(failed)} tensors missing "
            f"or of another shape (e.g. {', '.join(failed[:4])}); point it at the ImageNet MiT checkpoint "
            "of the configured size (official mit_b1.pth or smp's mit_b1)"
        )
    model.load_state_dict({name: state[name] for name in model.state_dict()})


def create_mit(weights: PretrainedWeights | None, defaults: Mapping[str, Any], **overrides: Any) -> MixTransformer:
    """A MiT with ``defaults`` updated by ``overrides``; weights from a local file only."""
    model = MixTransformer(**{**defaults, **overrides})
    if weights is None:
        return model
    if weights.path is None:
        raise BackboneWeightsError(
            f"MiT weights are not on timm's hub: set weights.files.{weights.key} to a local mit_b1.pth"
        )
    load_mit_weights(model, Path(weights.path), weights.key)
    return model


MIT_B1 = dict(embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), depths=(2, 2, 2, 2), sr_ratios=(8, 4, 2, 1),
              strides=(4, 2, 2, 1), mlp_ratio=4.0, drop_path_rate=0.1)
MIT_SYNTH = dict(embed_dims=(16, 32, 48, 64), num_heads=(1, 1, 2, 2), depths=(1, 1, 1, 2), sr_ratios=(4, 2, 1, 1),
                 strides=(4, 2, 2, 1), mlp_ratio=2.0, drop_path_rate=0.0)


@BACKBONES.register("mit_b1")
def mit_b1(weights: PretrainedWeights | None = None, **overrides: Any) -> MixTransformer:
    """MiT-B1 with AFA's stride-16 stage 4 (``strides`` overrides it)."""
    return create_mit(weights, MIT_B1, **overrides)


@BACKBONES.register("mit_synth")
def mit_synth(weights: PretrainedWeights | None = None, **overrides: Any) -> MixTransformer:
    """A tiny from-scratch MiT (same layout, output stride 16) for the synthetic default and tests."""
    return create_mit(weights, MIT_SYNTH, **overrides)
