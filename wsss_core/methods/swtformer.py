"""SWTformer-V1 and -V2 (Swin-T patch-token CAMs; V2 adds HFF and SIPE-style prototypes).

SWTformer has no public code, so this follows the paper (``seeds/003``) and, where it adapts SIPE
(chenqi1126/SIPE), SIPE's code. Registered as ``swtformer_v1`` and ``swtformer`` (= V2).

**V1** (paper §3-2/3-3): the last Swin stage's tokens ``T_out`` (after the final LayerNorm) go through a
3×3 conv head (MCTformer-V2's patch head, with bias) to ``F_out [C, P, P]``; class scores are its global
average; ``L_CLS`` is the multilabel soft-margin loss (Eq. 2 lacks its minus sign, a typo).
CAM = ReLU(F_out) ÷ (spatial max + 1e-5) ("Norm" is undefined in the paper; SIPE's max-norm is used).

**V2** (§3-4/3-5):

* ``M = [1 − max_c CAM_c ; CAM]`` (Eq. 3, background first), masked as SIPE does in training (crop box
  for every channel, image labels for the foreground channels);
* structure-aware seed locating on ``T_out`` at the P×P grid: affinity ``|cos(T_i, T_j)|`` (Eq. 4;
  ``seeds.similarity: relu_cosine`` gives SIPE's ``ReLU(cos)``), soft IoU of each affinity row with each
  channel of M, background score × ``seeds.background_factor`` (SIPE's hard-coded 0.5, not in either paper),
  one-hot argmax, × label mask. SIPE itself uses the last backbone map in training but the fused
  feature at inference; the paper's ``T_out`` is used for both;
* prototypes = spatial mean of ``seeds ⊙ F_hie`` (SIPE's ``adaptive_avg_pool2d``: proportional to the
  region centroid, identical after cosine), R-CAM = ReLU(cos(F_hie, P_c)) at the HFF grid (stride 16);
* ``L_GSC`` = mean |CAM − R-CAM / max| over all elements (SIPE's code; Eq. 5's literal sum ÷ (C+1)
  would be ~h·w times larger), CAM bilinear-upsampled to the HFF grid;
* ``L_CCL`` = Eq. 6 as printed, ½[(⅔ s)² + (1 − s)²] with s the cosine between CAM_c and R-CAM_c,
  averaged over the background and present classes (``losses.ccl.mode: literal``, default). Its minimum is at
  s = 9/13 ≈ 0.69: above that it pushes CAM and R-CAM apart, against GSC. ``losses.ccl.mode: contrastive``
  is a Hadsell-style reading (positives ½(1 − s_cc)², negatives ½·max(0, s_cc' − margin)²);
  ``off`` drops the term;
* seeds exported = R-CAM with an explicit background channel (key 0), multi-scale + flip as SIPE's
  ``make_cam``: per scale, logits, tokens and F_hie are summed over the flip pair, R-CAM is computed,
  resized to the image and summed over scales, then divided by its per-channel max.

Training recipe (not given by the paper beyond AdamW, batch 16, crop 224, 30 epochs): IRN/AdvCAM-style
augmentation (random long side, flip, crop with a valid-region mask), AdamW with no decay on norms,
biases and position tables, head/HFF at ``head_lr_multiplier`` × the backbone lr, linear warm-up + cosine.
Inputs at seed export are resized to multiples of the network stride (32) so every Swin grid is exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from timm.scheduler import CosineLRScheduler
from torch import nn

from wsss_core.settings import IntPair, NonNegativeFloat, Pair, PositiveFloat, PositiveInt, Scales, Settings
from wsss_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD, irn_training_crop, normalize_to_tensor
from wsss_core.errors import ConfigError
from wsss_core.losses.swtformer import ccl_loss, gsc_loss
from wsss_core.methods.base import METHODS, Method
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.training.progress import TrainingProgress
from wsss_core.models.backbones import create_backbone
from wsss_core.models.cam_normalization import max_normalize
from wsss_core.models.hierarchical_fusion import HierarchicalFeatureFusion
from wsss_core.models.weights import WeightsCatalog

SEED_SIMILARITIES = ("abs_cosine", "relu_cosine")


# ------------------------------------------------------------------------------------------ maps
def foreground_cams(logits_map: torch.Tensor) -> torch.Tensor:
    """CAM = ReLU(F_out) ÷ spatial max (SWTformer Eq. 1 with SIPE's normalisation)."""
    return max_normalize(F.relu(logits_map))


def with_background(cams: torch.Tensor) -> torch.Tensor:
    """Prepend ``M_B = 1 − max_c M_c`` (Eq. 3): ``[B, C, h, w] → [B, C+1, h, w]``."""
    return torch.cat([1.0 - cams.amax(dim=1, keepdim=True), cams], dim=1)


def token_affinity(features: torch.Tensor, similarity: str = "abs_cosine", eps: float = 1e-5) -> torch.Tensor:
    """Pairwise token affinity ``[B, hw, hw]`` from features ``[B, D, h, w]``: ``|cos|`` (SWTformer
    Eq. 4) or ``ReLU(cos)`` (SIPE), with SIPE's ``f / (‖f‖ + eps)`` normalisation."""
    flat = features.flatten(2)
    flat = flat / (torch.linalg.vector_norm(flat, dim=1, keepdim=True) + eps)
    cosine = flat.transpose(1, 2) @ flat
    if similarity == "abs_cosine":
        return cosine.abs()
    if similarity == "relu_cosine":
        return F.relu(cosine)
    raise ConfigError(f"method.seeds.similarity '{similarity}' is unknown: use one of {SEED_SIMILARITIES}")


def structure_aware_seeds(
    cams: torch.Tensor,
    features: torch.Tensor,
    label_mask: torch.Tensor,
    similarity: str = "abs_cosine",
    background_factor: float = 0.5,
) -> torch.Tensor:
    """SIPE's structure-aware seed locating: one-hot seeds ``[B, K+1, h, w]``.

    ``cams [B, K+1, h, w]`` (background first), ``features [B, D, h, w]`` on the same grid,
    ``label_mask`` broadcastable to the seeds (background always 1). For pixel i and channel c the
    score is the soft IoU ``Σ_j A_ij M_c(j) / (Σ_j A_ij + Σ_j M_c(j) − Σ_j A_ij M_c(j))``.
    """
    batch, channels, height, width = cams.shape
    affinity = token_affinity(features, similarity)  # [B, hw, hw]
    flat_cams = cams.flatten(2)  # [B, K+1, hw]
    intersection = torch.einsum("bij,bcj->bci", affinity, flat_cams)
    union = affinity.sum(dim=2).unsqueeze(1) + flat_cams.sum(dim=2, keepdim=True) - intersection
    scores = intersection / union
    scores[:, 0] = scores[:, 0] * background_factor
    winner = scores.argmax(dim=1)  # [B, hw]
    seeds = F.one_hot(winner, channels).permute(0, 2, 1).reshape(batch, channels, height, width)
    return seeds.to(cams.dtype) * label_mask


def class_prototypes(seeds: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Prototypes ``[B, K+1, D]``: spatial mean of ``seeds_c ⊙ F`` (seeds nearest-resized to F's grid)."""
    seeds = F.interpolate(seeds, size=features.shape[-2:], mode="nearest")
    return torch.einsum("bchw,bdhw->bcd", seeds, features) / (features.shape[-2] * features.shape[-1])


def reactivate(prototypes: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """R-CAM ``[B, K+1, h, w]`` = ReLU(cos(F(i), P_c)); zero prototypes (absent classes) give 0."""
    return F.relu(torch.cosine_similarity(features.unsqueeze(1), prototypes[..., None, None], dim=2))


# --------------------------------------------------------------------------------------- network
@dataclass
class SWTformerOutput:
    logits_map: torch.Tensor  # F_out [B, C, P, P]
    scores: torch.Tensor  # GAP of F_out [B, C]
    tokens: torch.Tensor  # T_out [B, D, P, P] (final LayerNorm applied)
    fused: torch.Tensor | None  # F_hie [B, E, 2P, 2P] (V2 only)


class SWTformerNet(nn.Module):
    """Swin backbone + 3×3 conv CAM head (+ HFF for V2)."""

    def __init__(self, backbone: nn.Module, num_classes: int, fusion: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        widths = [int(info["num_chs"]) for info in backbone.feature_info]
        self.head = nn.Conv2d(widths[-1], num_classes, kernel_size=3, padding=1)
        self.fusion = HierarchicalFeatureFusion(widths, **fusion) if fusion is not None else None
        patch = backbone.patch_embed.patch_size
        self.stride = int(patch[0] if isinstance(patch, (tuple, list)) else patch) * 2 ** (len(widths) - 1)

    def new_modules(self) -> list[nn.Module]:
        """Modules not in the pretrained backbone (trained at a higher lr)."""
        return [self.head] + ([self.fusion] if self.fusion is not None else [])

    def forward(self, images: torch.Tensor) -> SWTformerOutput:
        _, stages = self.backbone.forward_intermediates(images, norm=True)
        tokens = stages[-1]
        logits_map = self.head(tokens)
        fused = self.fusion(stages) if self.fusion is not None else None
        return SWTformerOutput(logits_map, logits_map.mean(dim=(2, 3)), tokens, fused)


# ------------------------------------------------------------------------------------------ data
def resize_to_stride(image: np.ndarray, scale: float, stride: int) -> np.ndarray:
    """Resize by ``scale`` with each side rounded to a multiple of ``stride`` (at least one stride)."""
    height, width = image.shape[:2]
    size = (max(stride, round(width * scale / stride) * stride), max(stride, round(height * scale / stride) * stride))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


# ---------------------------------------------------------------------------------------- method
# ------------------------------------------------------------------------------------ settings
class SWTformerTrain(Settings):
    batch_size: PositiveInt
    epochs: PositiveInt
    crop_size: PositiveInt
    resize_long: IntPair
    lr: PositiveFloat
    head_lr_multiplier: PositiveFloat = 10.0
    weight_decay: NonNegativeFloat = 0.05
    betas: Pair = (0.9, 0.999)
    warmup_epochs: NonNegativeFloat = 0
    warmup_lr: NonNegativeFloat = 1e-6
    min_lr: NonNegativeFloat = 1e-6
    clip_grad_norm: PositiveFloat | None = None


class SWTformerV1Model(Settings):
    """``methods.swtformer_v1.params.model``: the network."""

    backbone: str
    weights: str | None = None
    backbone_args: dict[str, Any] = {}
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = IMAGENET_STD


class SWTformerV1Seeds(Settings):
    """``methods.swtformer_v1.params.seeds``: the scales of the multi-scale + flip seed export."""

    scales: Scales = [1.0, 0.5, 1.5, 2.0]


class SWTformerV1Settings(Settings):
    """``methods.swtformer_v1.params``."""

    model: SWTformerV1Model
    train: SWTformerTrain
    seeds: SWTformerV1Seeds = SWTformerV1Seeds()


class HFFSettings(Settings):
    local_channels: PositiveInt = 128
    fused_channels: PositiveInt = 256
    detach_inputs: bool = True


class SWTformerV2Model(SWTformerV1Model):
    """``methods.swtformer.params.model``: V1's network + hierarchical feature fusion."""

    hff: HFFSettings = HFFSettings()


class SWTformerV2Seeds(SWTformerV1Seeds):
    """``methods.swtformer.params.seeds``: + the SIPE-style seed affinity and the background score factor."""

    similarity: Literal["abs_cosine", "relu_cosine"] = "abs_cosine"  # relu_cosine = SIPE
    background_factor: NonNegativeFloat = 0.5


class SWTformerLossWeights(Settings):
    cls: NonNegativeFloat = 1.0
    gsc: NonNegativeFloat = 1.0
    ccl: NonNegativeFloat = 1.0


class SWTformerCCL(Settings):
    mode: Literal["literal", "contrastive", "off"] = "literal"  # literal = Eq. 6 as printed
    margin: float = 2.0 / 3.0


class SWTformerLosses(Settings):
    """``methods.swtformer.params.losses``."""

    weights: SWTformerLossWeights = SWTformerLossWeights()
    ccl: SWTformerCCL = SWTformerCCL()


class SWTformerV2Settings(SWTformerV1Settings):
    """``methods.swtformer.params``: V1's sections with the fusion, seed and loss keys."""

    model: SWTformerV2Model
    losses: SWTformerLosses = SWTformerLosses()
    seeds: SWTformerV2Seeds = SWTformerV2Seeds()


@METHODS.register("swtformer_v1")
class SWTformerV1(Method):
    """Swin-T patch-token CAMs trained with the multilabel soft-margin loss; seeds without background."""

    settings_type = SWTformerV1Settings

    name = "swtformer_v1"
    seed_normalization = "max"
    uses_fusion = False

    def __init__(self, config: Mapping[str, Any], num_classes: int) -> None:
        super().__init__(config, num_classes)
        self.mean = self.settings.model.image_mean
        self.std = self.settings.model.image_std

    # ----------------------------------------------------------------------------------- network
    def build_model(self, weights: WeightsCatalog) -> nn.Module:
        settings = self.settings.model
        overrides = dict(settings.backbone_args)
        overrides.setdefault("strict_img_size", False)  # any input size (seed export, multi-scale)
        backbone = create_backbone(settings.backbone, weights.get(settings.weights), **overrides)
        fusion = settings.hff.model_dump() if self.uses_fusion else None
        return SWTformerNet(backbone, self.num_classes, fusion)

    # -------------------------------------------------------------------------------------- data
    def training_sample(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
        train = self.settings.train
        crop, valid = irn_training_crop(image, train.resize_long, train.crop_size, self.mean, self.std, rng)
        return {"image": crop, "labels": torch.from_numpy(np.asarray(labels, np.float32)), "valid": valid}

    # ------------------------------------------------------------------------------ optimisation
    def build_optimizer(self, model: nn.Module, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, Any]:
        train = self.settings.train
        lr = train.lr
        head_lr = lr * train.head_lr_multiplier
        weight_decay = train.weight_decay
        skip = set(getattr(model.backbone, "no_weight_decay", lambda: set())())
        groups: dict[str, list[nn.Parameter]] = {"decay": [], "no_decay": [], "head_decay": [], "head_no_decay": []}
        new_ids = {id(p) for module in model.new_modules() for p in module.parameters()}
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            no_decay = parameter.ndim <= 1 or any(key in name for key in skip)
            prefix = "head_" if id(parameter) in new_ids else ""
            groups[prefix + ("no_decay" if no_decay else "decay")].append(parameter)
        param_groups = [
            {"params": params, "lr": head_lr if name.startswith("head") else lr,
             "weight_decay": 0.0 if name.endswith("no_decay") else weight_decay}
            for name, params in groups.items()
            if params
        ]
        optimizer = torch.optim.AdamW(param_groups, lr=lr, betas=train.betas)
        total = self.total_steps(steps_per_epoch)
        warmup = int(round(train.warmup_epochs * steps_per_epoch))
        scheduler = CosineLRScheduler(
            optimizer,
            t_initial=total,
            lr_min=train.min_lr,
            warmup_t=min(warmup, max(total - 1, 0)),
            warmup_lr_init=train.warmup_lr,
            t_in_epochs=False,
        )
        return optimizer, scheduler

    def classification_loss(self, output: SWTformerOutput, labels: torch.Tensor) -> torch.Tensor:
        return F.multilabel_soft_margin_loss(output.scores, labels)

    def training_step(
        self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]:
        output = model(batch["image"])
        loss = self.classification_loss(output, batch["labels"])
        return {"loss": loss, "cls": loss.detach()}

    # --------------------------------------------------------------------------------- inference
    def _scaled_views(self, image: np.ndarray, scale: float, stride: int, device: torch.device) -> torch.Tensor:
        """The image at ``scale`` and its horizontal flip, normalised: ``[2, 3, h, w]``."""
        tensor = normalize_to_tensor(resize_to_stride(image, scale, stride), self.mean, self.std).to(device)
        return torch.stack([tensor, tensor.flip(-1)])

    @staticmethod
    def _merge_flip(pair: torch.Tensor) -> torch.Tensor:
        """Sum the map of a view and the un-flipped map of its flip: ``[2, ...] → [1, ...]``."""
        return (pair[0] + pair[1].flip(-1)).unsqueeze(0)

    def _scales(self) -> list[float]:
        return list(self.settings.seeds.scales)

    @torch.no_grad()
    def class_scores(self, model: nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
        """The GAP scores of F_out (the classification loss), at scale 1 without the flip."""
        model.eval()
        device = next(model.parameters()).device
        output = model(self._scaled_views(image, 1.0, model.stride, device)[:1])
        return {"cls": output.scores[0].float().cpu().numpy()}

    @torch.no_grad()
    def infer_seeds(self, model: nn.Module, image: np.ndarray, labels: np.ndarray) -> SeedMaps:
        """MCTformer-style export: ReLU'd flip-summed CAMs resized to the image, summed over scales,
        max-normalised; present classes only (no background channel)."""
        model.eval()
        device = next(model.parameters()).device
        height, width = image.shape[:2]
        present = np.flatnonzero(np.asarray(labels) > 0.5)
        total = torch.zeros((self.num_classes, height, width), device=device)
        for scale in self._scales():
            output = model(self._scaled_views(image, scale, model.stride, device))
            cams = F.relu(self._merge_flip(output.logits_map))
            total += F.interpolate(cams, size=(height, width), mode="bilinear", align_corners=False)[0]
        maps = max_normalize(total[present]).clamp(0.0, 1.0)
        return SeedMaps(maps.cpu().numpy().astype(np.float32), (present + 1).astype(np.int64))


@METHODS.register("swtformer")
class SWTformerV2(SWTformerV1):
    """SWTformer-V2: V1 + HFF + background-aware prototypes (R-CAM), trained with CLS + GSC + CCL."""

    settings_type = SWTformerV2Settings

    name = "swtformer"
    uses_fusion = True
    seed_background = True

    def __init__(self, config: Mapping[str, Any], num_classes: int) -> None:
        super().__init__(config, num_classes)
        settings = self.settings
        self.similarity = settings.seeds.similarity
        self.background_factor = settings.seeds.background_factor
        self.ccl_mode = settings.losses.ccl.mode
        self.ccl_margin = settings.losses.ccl.margin
        self.loss_weights = settings.losses.weights.model_dump()

    def refined_cams(self, output: SWTformerOutput, label_mask: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
        """R-CAM at the HFF grid from M (``cams``, background first, at the token grid)."""
        seeds = structure_aware_seeds(
            cams.detach(), output.tokens.detach(), label_mask, self.similarity, self.background_factor
        )
        return reactivate(class_prototypes(seeds, output.fused), output.fused)

    def training_step(
        self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]:
        output = model(batch["image"])
        labels = batch["labels"]
        channel_mask = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1)  # [B, K+1]
        token_grid, fused_grid = output.tokens.shape[-2:], output.fused.shape[-2:]
        valid = batch["valid"].unsqueeze(1)
        token_mask = channel_mask[..., None, None] * F.interpolate(valid, size=token_grid, mode="nearest")
        fused_mask = channel_mask[..., None, None] * F.interpolate(valid, size=fused_grid, mode="nearest")
        cams = with_background(foreground_cams(output.logits_map))
        rcams = self.refined_cams(output, token_mask, cams * token_mask)
        cams_fused = F.interpolate(cams, size=fused_grid, mode="bilinear", align_corners=False) * fused_mask
        cls = self.classification_loss(output, labels)
        gsc = gsc_loss(cams_fused, rcams)
        ccl = ccl_loss(cams_fused, rcams, channel_mask, self.ccl_mode, self.ccl_margin)
        w = self.loss_weights
        loss = w["cls"] * cls + w["gsc"] * gsc + w["ccl"] * ccl
        return {"loss": loss, "cls": cls.detach(), "gsc": gsc.detach(), "ccl": ccl.detach()}

    @torch.no_grad()
    def infer_seeds(self, model: nn.Module, image: np.ndarray, labels: np.ndarray) -> SeedMaps:
        """R-CAM seeds (SIPE ``make_cam``): background (key 0) + present classes, max-normalised."""
        model.eval()
        device = next(model.parameters()).device
        height, width = image.shape[:2]
        present = np.flatnonzero(np.asarray(labels) > 0.5)
        keys = np.concatenate([[0], present + 1]).astype(np.int64)
        label_mask = torch.zeros((1, self.num_classes + 1, 1, 1), device=device)
        label_mask[0, torch.from_numpy(keys).to(device)] = 1.0
        total = torch.zeros((self.num_classes + 1, height, width), device=device)
        for scale in self._scales():
            output = model(self._scaled_views(image, scale, model.stride, device))
            merged = SWTformerOutput(
                logits_map=self._merge_flip(output.logits_map),
                scores=output.scores,
                tokens=self._merge_flip(output.tokens),
                fused=self._merge_flip(output.fused),
            )
            cams = with_background(foreground_cams(merged.logits_map))
            rcams = self.refined_cams(merged, label_mask, cams)
            total += F.interpolate(rcams, size=(height, width), mode="bilinear", align_corners=False)[0]
        maps = max_normalize(total[torch.from_numpy(keys).to(device)]).clamp(0.0, 1.0)
        return SeedMaps(maps.cpu().numpy().astype(np.float32), keys)
