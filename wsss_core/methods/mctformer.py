"""MCTformer-V2 (Xu et al., CVPR 2022): multi-class-token ViT with a patch-CAM head.

Follows the authors' code at commit 9606597 (xulianuwa/MCTformer; HEAD is MCTformer+, which differs)
and cti_multistage.md §3.2:

* Network: C class tokens, each initialised to the pretrained [CLS] token, with a learnable class
  position embedding initialised to the pretrained [CLS] position embedding (repeated C times); the
  patch position embedding is the pretrained one. A 3×3 convolution (C channels) on the patch tokens
  gives the patch CAM P.
* Logits: token logits are the mean over the embedding dims of each final class token (no final
  norm); patch logits are the global average of P. Loss = MLSM(token) + MLSM(patch).
* Optimisation: AdamW (timm filtering: no decay on 1-D parameters, tokens and position embeddings),
  timm cosine schedule with linear warm-up, stepped per epoch. The authors call ``step(epoch)`` at
  the end of epoch ``epoch``, so the schedule lags one epoch; ``train.scheduler_epoch_lag: true`` (default)
  reproduces that, ``false`` follows the paper's plain schedule. The learning rate in config is the
  absolute one (the authors scale 5e-4 · batch / 512 = 6.25e-5 for batch 64).
* Augmentation (DeiT recipe): RandomResizedCrop (bicubic), horizontal flip, RandAugment
  (``rand-m9-mstd0.5-inc1``) and random erasing (p 0.25, pixel mode), all drawn from the sample's own
  generator so that a resumed epoch sees the same crops. The authors train with AMP; this code runs fp32.
* Seeds: per scale (default 1.0) and flip, cam = A_pp(all blocks) · (A_cp(last 3 blocks) ⊙ ReLU(P)),
  bilinear upsampling to H×W, absent classes zeroed, sum over scales and flips, then per-class
  (x − min) / (max − min + 1e-8). Only the image's classes are stored (no background map).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import nn

from wsss_core.settings import NonNegativeFloat, NonNegativeInt, Pair, PositiveFloat, PositiveInt, Probability, Scales, Settings
from wsss_core.data.deit_augmentation import DeitAugmentation
from wsss_core.data.transforms import normalize_to_tensor
from wsss_core.losses.mctformer import mctformer_losses
from wsss_core.methods.base import METHODS, Method
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.training.progress import TrainingProgress
from wsss_core.models.backbones import create_backbone
from wsss_core.models.multi_token_vit import (
    MultiTokenViT,
    ViTOutput,
    class_to_patch_attention,
    patch_to_patch_attention,
    refine_with_patch_attention,
)
from wsss_core.models.weights import WeightsCatalog


# -------------------------------------------------------------------------------------- network
class MCTformerOutput(NamedTuple):
    token_logits: torch.Tensor  # [B, C] mean over dims of each final class token
    patch_logits: torch.Tensor  # [B, C] global average of the patch CAM
    patch_cams: torch.Tensor  # [B, C, h, w] raw output of the 3×3 head (P)
    encoder: ViTOutput


class MCTformerV2Network(nn.Module):
    """C class tokens over a ViT, plus a 3×3 convolutional patch-CAM head."""

    def __init__(self, vit: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.encoder = MultiTokenViT(vit)
        dim = self.encoder.embed_dim
        self.num_classes = num_classes
        self.class_tokens = nn.Parameter(self.encoder.cls_token.expand(1, num_classes, dim).clone())
        self.class_pos_embed = nn.Parameter(self.encoder.cls_pos_embed.expand(1, num_classes, dim).clone())
        self.head = nn.Conv2d(dim, num_classes, kernel_size=3, stride=1, padding=1)

    def no_weight_decay(self) -> set[str]:
        """Parameters kept out of weight decay, as the authors' ``cls_token``/``pos_embed``."""
        return {"class_tokens", "class_pos_embed", "encoder.patch_pos_embed"}

    def forward(self, images: torch.Tensor) -> MCTformerOutput:
        encoded = self.encoder(images, self.class_tokens + self.class_pos_embed)
        patch_cams = self.head(encoded.patch_tokens)
        return MCTformerOutput(
            token_logits=encoded.class_tokens.mean(dim=-1),
            patch_logits=patch_cams.mean(dim=(2, 3)),
            patch_cams=patch_cams,
            encoder=encoded,
        )


def fused_cams(
    output: MCTformerOutput,
    class_attention_blocks: Sequence[int] | None,
    patch_attention_blocks: Sequence[int] | None,
) -> torch.Tensor:
    """A_pp · (A_cp ⊙ ReLU(P)) at patch resolution, ``[B, C, h, w]`` (P detached, as the authors)."""
    patch_cams = F.relu(output.patch_cams.detach())
    batch, classes, height, width = patch_cams.shape
    attentions = output.encoder.attentions
    class_attention = class_to_patch_attention(attentions, classes, class_attention_blocks)
    cams = class_attention.reshape(batch, classes, height, width) * patch_cams
    if patch_attention_blocks is not None and len(patch_attention_blocks) == 0:
        return cams
    patch_attention = patch_to_patch_attention(attentions, classes, patch_attention_blocks)
    return refine_with_patch_attention(cams, patch_attention)


def minmax_normalize(maps: torch.Tensor, epsilon: float = 1e-8) -> torch.Tensor:
    """Per-channel ``(x - min) / (max - min + epsilon)`` of ``[K, H, W]``."""
    low = maps.flatten(1).min(dim=1).values.view(-1, 1, 1)
    high = maps.flatten(1).max(dim=1).values.view(-1, 1, 1)
    return (maps - low) / (high - low + epsilon)


# -------------------------------------------------------------------------------------- schedule
class EpochLagScheduler:
    """Wraps a timm scheduler so that ``step(epoch)`` uses ``epoch - lag`` (the authors' off-by-one)."""

    def __init__(self, scheduler: Any, lag: int) -> None:
        self.scheduler = scheduler
        self.lag = lag

    def step(self, epoch: int, metric: float | None = None) -> None:
        self.scheduler.step(max(epoch - self.lag, 0), metric)

    def step_update(self, num_updates: int, metric: float | None = None) -> None:
        self.scheduler.step_update(num_updates, metric)

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


def _blocks(value: Any) -> list[int] | None:
    """A block list from the settings: ``all`` (None), or a list of (possibly negative) block indices."""
    return None if value == "all" else list(value)


# --------------------------------------------------------------------------------------- method
# ------------------------------------------------------------------------------------ settings
BlockSpec = Literal["all"] | list[int]


class MCTformerModel(Settings):
    backbone: str
    weights: str | None = None
    drop_path: Probability = 0.1
    image_size: PositiveInt | None = None


class MCTformerTrain(Settings):
    batch_size: PositiveInt
    epochs: PositiveInt
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    warmup_epochs: NonNegativeInt
    warmup_lr: NonNegativeFloat = 1e-6
    min_lr: NonNegativeFloat
    scheduler_epoch_lag: bool = True  # the authors call step(epoch): a one-epoch lag
    crop_size: PositiveInt
    scale: Pair = (0.08, 1.0)
    ratio: Pair = (3 / 4, 4 / 3)
    flip: bool = True
    rand_augment: str | None = None
    random_erasing: Probability = 0.0
    clip_grad_norm: PositiveFloat | None = None


class MCTformerSeeds(Settings):
    class_attention_blocks: BlockSpec = [-3, -2, -1]  # A_cp over the last 3 blocks (--layer-index 3)
    patch_attention_blocks: BlockSpec = "all"  # A_pp over all blocks
    scales: Scales = [1.0]
    flip: bool = True


class MCTformerSettings(Settings):
    """``methods.mctformer.params`` (sections model, train, seeds)."""

    model: MCTformerModel
    train: MCTformerTrain
    seeds: MCTformerSeeds


@METHODS.register("mctformer")
class MCTformerV2(Method):
    """MCTformer-V2 classifier and its attention-refined CAM seeds."""

    settings_type = MCTformerSettings

    name = "mctformer"
    seed_normalization = "minmax"

    def __init__(self, config: Mapping[str, Any], num_classes: int) -> None:
        super().__init__(config, num_classes)
        train, seeds = self.settings.train, self.settings.seeds
        self.augmentation = DeitAugmentation(
            crop_size=train.crop_size,
            scale=train.scale,
            ratio=train.ratio,
            flip=train.flip,
            rand_augment=train.rand_augment or None,
            random_erasing=train.random_erasing,
        )
        self.class_attention_blocks = _blocks(seeds.class_attention_blocks)
        self.patch_attention_blocks = _blocks(seeds.patch_attention_blocks)

    # ----------------------------------------------------------------------------------- network
    def build_model(self, weights: WeightsCatalog) -> nn.Module:
        model = self.settings.model
        overrides: dict[str, Any] = {"drop_path_rate": model.drop_path}
        if model.image_size:
            overrides["img_size"] = model.image_size
        vit = create_backbone(model.backbone, weights.get(model.weights), **overrides)
        return MCTformerV2Network(vit, self.num_classes)

    # -------------------------------------------------------------------------------------- data
    def training_sample(
        self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> dict[str, Any]:
        labels_tensor = torch.as_tensor(labels, dtype=torch.float32)
        return {"image": self.augmentation(image, rng), "labels": labels_tensor}

    # ------------------------------------------------------------------------------ optimisation
    def build_optimizer(self, model: nn.Module, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, Any]:
        train = self.settings.train
        optimizer = create_optimizer_v2(model, opt="adamw", lr=train.lr, weight_decay=train.weight_decay, eps=1e-8)
        epochs = max(int(np.ceil(self.total_steps(steps_per_epoch) / steps_per_epoch)), 1)
        scheduler = CosineLRScheduler(
            optimizer,
            t_initial=epochs,
            lr_min=train.min_lr,
            warmup_t=train.warmup_epochs,
            warmup_lr_init=train.warmup_lr,
            t_in_epochs=True,
        )
        return optimizer, EpochLagScheduler(scheduler, 1 if train.scheduler_epoch_lag else 0)

    def training_step(
        self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]:
        return mctformer_losses(model(batch["image"]), batch["labels"])

    # --------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def class_scores(self, model: nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
        """The class-token and the patch-CAM logits (both trained by ``mctformer_losses``)."""
        model.eval()
        output = model(normalize_to_tensor(image).unsqueeze(0).to(next(model.parameters()).device))
        return {"token": output.token_logits[0].float().cpu().numpy(),
                "patch": output.patch_logits[0].float().cpu().numpy()}

    @torch.no_grad()
    def infer_seeds(self, model: nn.Module, image: np.ndarray, labels: np.ndarray) -> SeedMaps:
        height, width = image.shape[:2]
        present_mask = np.asarray(labels) > 0.5
        present = np.flatnonzero(present_mask)
        if present.size == 0:
            return SeedMaps(np.zeros((0, height, width), np.float32), np.zeros(0, np.int64))
        device = next(model.parameters()).device
        label_mask = torch.as_tensor(present_mask, dtype=torch.float32, device=device).view(-1, 1, 1)
        total = torch.zeros(self.num_classes, height, width, device=device)
        for scale in self.settings.seeds.scales:
            scaled = image
            if float(scale) != 1.0:
                size = (max(int(round(width * scale)), 1), max(int(round(height * scale)), 1))
                scaled = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
            batch = normalize_to_tensor(scaled).unsqueeze(0)
            if self.settings.seeds.flip:
                batch = torch.cat([batch, batch.flip(-1)])
            output = model(batch.to(device))
            cams = fused_cams(output, self.class_attention_blocks, self.patch_attention_blocks)
            cams = F.interpolate(cams, size=(height, width), mode="bilinear", align_corners=False)
            cams = cams * label_mask
            total += cams[0]
            if cams.shape[0] == 2:
                total += cams[1].flip(-1)
        maps = minmax_normalize(total[torch.as_tensor(present, device=device)])
        return SeedMaps(maps.float().cpu().numpy(), (present + 1).astype(np.int64))
