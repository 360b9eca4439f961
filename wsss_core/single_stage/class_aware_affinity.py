"""ECA's semantic affinity exploitation (SAE): CAM seeds → DINO affinity graph → class-aware affinity region
maps (CARM), calibrated by momentum prototypes, and the CARM pseudo label.

Paper: Wu et al., "DINO is Also a Semantic Guider: Exploiting Class-aware Affinity for WSSS" (ACM MM
2024), §3.1-§3.2; there is no public code, so every choice the paper leaves open is a parameter whose
default is listed here (and in ``methods/eca.py``).

All maps live on the frozen DINO's token grid (64×64 for ViT-S/8 at a 512 crop), flattened to N tokens.

* **Frozen DINO** (``FrozenDinoKeys``): a timm ViT kept in eval mode without gradients; a hook on the
  last block's ``attn.qkv`` gives the patch **keys** and the class-token **query** with the heads
  concatenated (384-d for ViT-S), after the block's q/k norms (identity for DINO).
* **Background CAM** (Eq. 2): M_0 = 1 − max_c M_c over the present classes.
* **Seeds** (Eq. 3, ``select_seeds``): I_cam = argmax over {background} ∪ present classes (absent classes
  never win); the candidates of channel c are the valid tokens with I_cam = c and M_c > 0; Q_c is the
  top ``fraction`` of them by M_c, ⌈fraction·#candidates⌉ tokens (k = 0.3 VOC / 0.15 COCO read as 30% /
  15% of the candidates, Table 6a). Default ``fallback_top1``: a present class with M_c > 0 somewhere
  that never wins the argmax gets its single best valid token.
* **Class-agnostic graph and foreground cue** (Eq. 4-5): G(i, j) = cos(k_i, k_j), I_fg(i) = cos(q_cls, k_i);
  I_fg is used as is (it can be negative; ``clamp_foreground_cue`` clamps it at 0).
* **CARM** (Eq. 6-7, ``class_aware_region_maps``): A = 1[G > γ] (γ = 0.15); 𝓜_c = Σ_{i∈Q_c} A(i, :) ⊙ I_fg for
  foreground classes, 𝓜_0 = Σ_{i∈Q_0} A(i, :) for background; then min-max per map (``minmax_maps``,
  over valid tokens; padded tokens 0; a constant map becomes 0).
* **Calibration** (Eq. 8-10, ``MomentumPrototypes``): one prototype per foreground class over the dataset,
  P_c ← τ·P_c + (1 − τ)·mean_{i∈Q_c} t_i with t_i the L2-normalised, detached MiT stage-4 tokens
  upsampled bilinearly to the DINO grid; τ = 0.99; the first observation initialises P_c. The current
  image is calibrated with the prototypes **before** its own update: 𝓜_c ← minmax(𝓜_c ⊙ S_c²),
  S_c = max(cos(P_c, F_i), 0), foreground classes only, and only classes whose prototype exists.
* **CARM pseudo label** (``carm_pseudo_labels``): [𝓜_0, 𝓜_c present] upsampled to half the crop, softmax
  over the channels, PAR, upsampled to the crop, argmax; outside the crop's box 255; optional
  ``uncertain_margin``: 255 where the best CARM value beats the second by less than the margin.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from wsss_core.single_stage.par import PixelAdaptiveRefinement
from wsss_core.single_stage.pseudo_labels import IGNORE_INDEX, box_mask


# ----------------------------------------------------------------------------------- frozen DINO
class FrozenDinoKeys(nn.Module):
    """Keys and class-token query of the last block of a frozen timm ViT (heads concatenated)."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit
        for parameter in self.vit.parameters():
            parameter.requires_grad_(False)
        self.vit.eval()
        self.patch_size = int(vit.patch_embed.patch_size[0])
        self.num_prefix_tokens = int(getattr(vit, "num_prefix_tokens", 1))

    def train(self, mode: bool = True) -> "FrozenDinoKeys":
        """Always in eval mode: DINO is an inference-only guide."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Patch keys ``[B, N, D]``, class-token query ``[B, D]`` and the token grid ``(h, w)``."""
        attention = self.vit.blocks[-1].attn
        captured: list[torch.Tensor] = []
        handle = attention.qkv.register_forward_hook(lambda module, inputs, output: captured.append(output))
        try:
            self.vit.forward_features(images)
        finally:
            handle.remove()
        qkv = captured[0]
        batch, tokens, _ = qkv.shape
        heads = attention.num_heads
        q, k, _ = qkv.reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)  # [B, heads, T, d]
        q, k = attention.q_norm(q), attention.k_norm(k)
        q = q.transpose(1, 2).flatten(2)  # [B, T, heads·d]
        k = k.transpose(1, 2).flatten(2)
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        return k[:, self.num_prefix_tokens :], q[:, 0], grid


# ------------------------------------------------------------------------------------ seeds
def background_cam(cams: torch.Tensor) -> torch.Tensor:
    """Eq. 2: M_0 = 1 − max_c M_c of label-masked CAMs ``[B, C, ...]`` → ``[B, 1, ...]``."""
    return 1.0 - cams.amax(dim=1, keepdim=True)


def select_seeds(
    scores: torch.Tensor,
    present: torch.Tensor,
    fraction: float,
    valid: torch.Tensor | None = None,
    fallback_top1: bool = True,
) -> torch.Tensor:
    """Eq. 3 seed sets ``[B, K, N]`` (bool) from ``scores`` ``[B, K, N]`` (channel 0 = background CAM),
    ``present`` ``[B, K]`` (background always present) and optional ``valid`` tokens ``[B, N]``."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"seed fraction must be in (0, 1], got {fraction}")
    batch, channels, tokens = scores.shape
    valid = torch.ones(batch, tokens, dtype=torch.bool, device=scores.device) if valid is None else valid.bool()
    present = present.bool()
    winner = scores.masked_fill(~present[:, :, None], float("-inf")).argmax(dim=1)  # [B, N]
    seeds = torch.zeros_like(scores, dtype=torch.bool)
    for index in range(batch):
        for channel in torch.nonzero(present[index])[:, 0].tolist():
            values = scores[index, channel]
            candidates = (winner[index] == channel) & (values > 0) & valid[index]
            count = int(candidates.sum())
            if count:
                keep = max(1, math.ceil(fraction * count - 1e-9))
                chosen = values.masked_fill(~candidates, float("-inf")).topk(keep).indices
                seeds[index, channel, chosen] = True
            elif fallback_top1 and bool(((values > 0) & valid[index]).any()):
                seeds[index, channel, values.masked_fill(~valid[index], float("-inf")).argmax()] = True
    return seeds


# ----------------------------------------------------------------------------- graph and CARM
def key_affinity(keys: torch.Tensor) -> torch.Tensor:
    """Eq. 4: cosine similarity ``[B, N, N]`` between the patch keys ``[B, N, D]``."""
    unit = F.normalize(keys, dim=-1, eps=1e-8)
    return unit @ unit.transpose(1, 2)


def foreground_cue(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Eq. 5: cosine similarity ``[B, N]`` between the class-token query ``[B, D]`` and each key."""
    return torch.einsum("bd,bnd->bn", F.normalize(query, dim=-1, eps=1e-8), F.normalize(keys, dim=-1, eps=1e-8))


def class_aware_region_maps(
    affinity: torch.Tensor, seeds: torch.Tensor, cue: torch.Tensor, threshold: float = 0.15
) -> torch.Tensor:
    """Eq. 6-7 (before normalisation): ``[B, K, N]`` with 𝓜_c = Σ_{i∈Q_c} 1[G(i,:) > γ], times the
    foreground cue for the foreground channels 1..K−1 (channel 0 = background, no cue)."""
    adjacency = (affinity > threshold).to(cue.dtype)
    degree = seeds.to(cue.dtype) @ adjacency  # [B, K, N]: row sums of A over each seed set
    return torch.cat([degree[:, :1], degree[:, 1:] * cue[:, None, :]], dim=1)


def minmax_maps(maps: torch.Tensor, valid: torch.Tensor | None = None, epsilon: float = 1e-5) -> torch.Tensor:
    """Per-map min-max over the valid tokens of ``maps`` ``[B, K, N]``: (x − min) / (max − min + ε);
    invalid tokens and constant maps become 0."""
    if valid is None:
        valid = torch.ones(maps.shape[0], maps.shape[-1], dtype=torch.bool, device=maps.device)
    mask = valid[:, None, :].expand_as(maps)
    low = maps.masked_fill(~mask, float("inf")).amin(dim=-1, keepdim=True)
    high = maps.masked_fill(~mask, float("-inf")).amax(dim=-1, keepdim=True)
    spread = high - low
    normalised = (maps - low) / (spread + epsilon)
    normalised = torch.where(spread > 0, normalised, torch.zeros_like(normalised))
    return normalised.masked_fill(~mask, 0.0)


# --------------------------------------------------------------------------------- prototypes
class MomentumPrototypes(nn.Module):
    """One momentum prototype per foreground class (buffers, so checkpoints keep them)."""

    def __init__(self, num_classes: int, dim: int, momentum: float = 0.99) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"prototype momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.register_buffer("prototypes", torch.zeros(num_classes, dim))
        self.register_buffer("initialized", torch.zeros(num_classes, dtype=torch.bool))

    def similarity(self, features: torch.Tensor) -> torch.Tensor:
        """Eq. 9: S ``[B, C, N]`` = max(cos(P_c, F_i), 0) for tokens ``features`` ``[B, D, N]``."""
        prototypes = F.normalize(self.prototypes, dim=-1, eps=1e-8)
        return torch.einsum("cd,bdn->bcn", prototypes, F.normalize(features, dim=1, eps=1e-8)).clamp_min(0.0)

    def calibrate(self, carm: torch.Tensor, features: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 10 on the foreground channels of ``carm`` ``[B, C+1, N]``: minmax(𝓜_c ⊙ S_c²) where the
        prototype of c exists; background and uninitialised classes are returned unchanged."""
        calibrated = minmax_maps(carm[:, 1:] * self.similarity(features) ** 2, valid)
        use = self.initialized[None, :, None]
        return torch.cat([carm[:, :1], torch.where(use, calibrated, carm[:, 1:])], dim=1)

    @torch.no_grad()
    def update(self, features: torch.Tensor, seeds: torch.Tensor) -> None:
        """Eq. 8, image by image: P_c ← τ·P_c + (1 − τ)·mean of the L2-normalised tokens at the
        foreground seeds ``seeds[:, 1:]`` (``[B, C+1, N]``); the first mean initialises P_c."""
        tokens = F.normalize(features.detach(), dim=1, eps=1e-8)  # [B, D, N]
        for index in range(tokens.shape[0]):
            for cls in torch.nonzero(seeds[index, 1:].any(dim=-1))[:, 0].tolist():
                mean = tokens[index][:, seeds[index, cls + 1]].mean(dim=1)
                if bool(self.initialized[cls]):
                    self.prototypes[cls].mul_(self.momentum).add_(mean, alpha=1.0 - self.momentum)
                else:
                    self.prototypes[cls].copy_(mean)
                    self.initialized[cls] = True


# ------------------------------------------------------------------------------ pseudo label
@torch.no_grad()
def carm_pseudo_labels(
    par: PixelAdaptiveRefinement,
    image: torch.Tensor,
    carm: torch.Tensor,
    labels: torch.Tensor,
    image_box: torch.Tensor | None = None,
    downscale: int = 2,
    uncertain_margin: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """CARM label ``[B, H, W]`` (0 background, 1..C, 255) from ``carm`` ``[B, C+1, h, w]`` on the DINO
    grid, the RGB crop ``image`` ``[B, 3, H, W]`` in [0, 1] and multi-hot ``labels`` ``[B, C]``."""
    batch, _, height, width = image.shape
    size = (height // downscale, width // downscale)
    small_image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
    present = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1) > 0
    result = []
    for index in range(batch):
        keys = torch.nonzero(present[index])[:, 0]
        maps = F.interpolate(carm[index : index + 1, keys], size=size, mode="bilinear", align_corners=False)
        refined = par(small_image[index : index + 1], maps.softmax(dim=1))
        refined = F.interpolate(refined, size=(height, width), mode="bilinear", align_corners=False)
        label = keys[refined.argmax(dim=1)[0]]
        if uncertain_margin > 0 and len(keys) > 1:
            full = F.interpolate(carm[index : index + 1, keys], size=(height, width), mode="bilinear")[0]
            top = full.topk(2, dim=0).values
            label = torch.where(top[0] - top[1] < uncertain_margin, torch.full_like(label, ignore_index), label)
        result.append(label)
    label = torch.stack(result)
    if image_box is not None:
        label[~box_mask(image_box, height, width)] = ignore_index
    return label
