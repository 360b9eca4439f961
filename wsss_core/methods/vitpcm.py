"""ViT-PCM: patch-class mapping on ViT-B/16 patch tokens, trained by max pooling (ECCV 2022).

Follows the authors' TensorFlow code (deepplants/ViT-PCM ``model.py``, ``utils.py``, ``configs/``) and
the supplement (``seeds/004``); the main paper was not available. Registered as ``vitpcm``.

* Network: ViT patch tokens after the final LayerNorm, [cls] dropped, as a ``G×G`` grid (timm
  ``dynamic_img_size`` interpolates the position embedding for any input size), HV-BiLSTM, bias-free
  linear map to K+1 classes, softmax per patch (Z), global max pooling (y)
  (``wsss_core.models.patch_class_mapping``). Inputs are normalised with mean = std = 0.5.
* Losses (all weights 1, each switchable under ``losses``):
  ``L_MCE`` = BCE(t, y) over the K+1 classes with Keras' clipping to [1e-7, 1 − 1e-7]; the authors take
  t from the segmentation mask (so background is 1 on nearly every image); here t₀ = 1 always and
  t₁..K are the image labels. ``L_REG`` = ``losses.reg_weight`` · Σ W² (Keras L2 regulariser on the PC layer).
  ``L_ET`` (equivariant transformation): the current network's view-1 prediction, without dropout or
  gradient, is mapped in patch space into view-2's frame (undo view-1's flip-LR/flip-UD/transpose,
  crop view-2's patch-aligned box, bilinear resize with aligned corners, apply view-2's flips and
  transpose), sharpened by ``merge_class_labels`` and compared by categorical cross-entropy with the
  predictions of a 2×2 mosaic of four view-2 images (the batch must be a multiple of 4). When the encoder
  has no dropout, drop-path or batch statistics, its eval-mode pass equals the training pass, so the
  teacher reuses the training pass's patch grid and only the head runs again (same values, one encoder
  pass less per step).
* Augmentation: every image is resized to a square ``image_size`` (aspect not kept, as coded). View 1:
  colour jitter + flips/transpose; view 2: new jitter, with probability ``crop_probability`` a
  ``crop_size`` crop on the patch grid (start drawn from {0, p, 2p, …, S} and clipped, as coded),
  resized to ``view2_size``, + flips/transpose. TF's ``random_brightness(0.2)`` acts on 0–255 values
  in the authors' pipeline (a no-op) and is left out.
* Schedule: ``warmup_epochs`` with the ViT frozen and Adam at ``warmup_lr`` on the head; then the last
  ``unfreeze_blocks`` blocks and the final norm train too, all at ``lr`` (constant). Keras builds a new
  Adam at the switch; here one Adam keeps its moments (the encoder's start at the switch).
  The authors select the checkpoint on VOC val GT; here the last one is used.
* Seeds (baseline pseudo-masks, BPM): one forward pass on the image resized to a square
  ``seeds.image_size`` (960 → 60×60 patches), ``merge_class_labels`` with the image labels, bilinear
  resize (aligned corners) to the image: the merged per-class probabilities of the background (key 0)
  and the present classes. Their CRF is the shared CRF refine stage; the store's normalisation is
  ``"probability"`` (channels sum to 1 at every pixel).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from timm.scheduler.scheduler import Scheduler
from torch import nn

from wsss_core.settings import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Probability, Settings
from wsss_core.data.transforms import adjust_contrast, adjust_hue, adjust_saturation, normalize_to_tensor
from wsss_core.errors import ConfigError
from wsss_core.losses.vitpcm import KERAS_EPSILON, equivariance_loss, multilabel_bce
from wsss_core.methods.base import METHODS, Method
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.training.progress import TrainingProgress
from wsss_core.models.backbones import create_backbone
from wsss_core.models.patch_class_mapping import PatchClassMapping, PatchClassOutput
from wsss_core.models.weights import WeightsCatalog

# ------------------------------------------------------------------------------------------- maps
def merge_class_labels(probabilities: torch.Tensor, labels_with_background: torch.Tensor) -> torch.Tensor:
    """The authors' ``merge_class_labels``: zero absent classes, scale each class map to a spatial max
    of 1, renormalise over classes (0/0 → 0). ``[B, K+1, h, w]`` and ``[B, K+1]``."""
    merged = probabilities * labels_with_background[..., None, None]
    peak = merged.flatten(2).amax(dim=2)[..., None, None]
    merged = torch.where(peak > 0, merged / peak.clamp_min(torch.finfo(merged.dtype).tiny), torch.zeros_like(merged))
    total = merged.sum(dim=1, keepdim=True)
    return torch.where(total > 0, merged / total.clamp_min(torch.finfo(merged.dtype).tiny), torch.zeros_like(merged))


def apply_flips(grid: torch.Tensor, flip_lr: bool, flip_ud: bool, transpose: bool) -> torch.Tensor:
    """The authors' invertible view transform on ``[..., h, w]``: flip-LR, then flip-UD, then transpose."""
    if flip_lr:
        grid = grid.flip(-1)
    if flip_ud:
        grid = grid.flip(-2)
    if transpose:
        grid = grid.transpose(-1, -2)
    return grid


def revert_flips(grid: torch.Tensor, flip_lr: bool, flip_ud: bool, transpose: bool) -> torch.Tensor:
    """Inverse of ``apply_flips``."""
    if transpose:
        grid = grid.transpose(-1, -2)
    if flip_ud:
        grid = grid.flip(-2)
    if flip_lr:
        grid = grid.flip(-1)
    return grid


def map_to_second_view(
    first_view: torch.Tensor, first_flips: torch.Tensor, second_affine: torch.Tensor, patch_size: int, grid_size: int
) -> torch.Tensor:
    """View-1 patch maps ``[K+1, G, G]`` in view-2's frame ``[K+1, g, g]``.

    ``first_flips``: (flip_lr, flip_ud, transpose) of view 1; ``second_affine``: view 2's flips and
    its crop box (top, left, bottom, right) in view-1 pixels. Order as coded: undo view-1 flips →
    crop (box ÷ patch) → bilinear resize with aligned corners → view-2 flips.
    """
    grid = revert_flips(first_view, *(bool(v) for v in first_flips.tolist()))
    top, left, bottom, right = (int(v) // patch_size for v in second_affine[3:7].tolist())
    grid = grid[:, top:bottom, left:right]
    grid = F.interpolate(grid.unsqueeze(0), size=(grid_size, grid_size), mode="bilinear", align_corners=True)[0]
    return apply_flips(grid, *(bool(v) for v in second_affine[:3].tolist()))


def tile_mosaic(images: torch.Tensor) -> torch.Tensor:
    """Four images per mosaic, 2×2 in the order top-left, top-right, bottom-left, bottom-right:
    ``[4n, C, s, s] → [n, C, 2s, 2s]``."""
    count, channels, height, width = images.shape
    tiles = images.reshape(count // 4, 2, 2, channels, height, width)
    return tiles.permute(0, 3, 1, 4, 2, 5).reshape(count // 4, channels, 2 * height, 2 * width)


def split_mosaic(maps: torch.Tensor) -> torch.Tensor:
    """Inverse of ``tile_mosaic``: ``[n, C, 2h, 2w] → [4n, C, h, w]``."""
    count, channels, height, width = maps.shape
    tiles = maps.reshape(count, channels, 2, height // 2, 2, width // 2)
    return tiles.permute(0, 2, 4, 1, 3, 5).reshape(4 * count, channels, height // 2, width // 2)


# ------------------------------------------------------------------------------------------ data
def color_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The authors' ``color_transform`` ranges without its no-op brightness, with the shared
    (torchvision-style) operators: contrast ×[0.5, 2], saturation ×[0.5, 1.5], hue ±0.1 turn, then
    grayscale with p = 0.1. uint8 in, uint8 out."""
    image = adjust_contrast(image, rng.uniform(0.5, 2.0))
    image = adjust_saturation(image, rng.uniform(0.5, 1.5))
    image = adjust_hue(image, rng.uniform(-0.1, 0.1))
    if rng.random() < 0.1:
        image = adjust_saturation(image, 0.0)  # saturation 0 is the grey image
    return image


def flip_image(image: np.ndarray, flip_lr: bool, flip_ud: bool, transpose: bool) -> np.ndarray:
    """``apply_flips`` on an ``[H, W, C]`` array."""
    if flip_lr:
        image = image[:, ::-1]
    if flip_ud:
        image = image[::-1]
    if transpose:
        image = image.transpose(1, 0, 2)
    return np.ascontiguousarray(image)


def patch_aligned_box(
    image_size: int, crop_size: int, patch_size: int, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a ``crop_size`` square whose corner is drawn from
    {0, p, …, S} and clipped to S − crop_size (the authors' ``bbox_for_crop``)."""
    starts = np.arange(0, image_size + 1, patch_size)
    top, left = (min(int(rng.choice(starts)), image_size - crop_size) for _ in range(2))
    return top, left, top + crop_size, left + crop_size


# --------------------------------------------------------------------------------------- network
class ViTPCMNet(nn.Module):
    """ViT encoder (patch tokens as a grid) + patch-class mapping head."""

    def __init__(
        self, encoder: nn.Module, num_classes_with_background: int, head: Mapping[str, Any], unfreeze_blocks: int
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = PatchClassMapping(int(encoder.embed_dim), num_classes_with_background, **head)
        patch = encoder.patch_embed.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        self.freeze_encoder(unfreeze_blocks)

    def freeze_encoder(self, unfreeze_blocks: int) -> None:
        """Only the last ``unfreeze_blocks`` blocks and the final norm of the encoder are trainable."""
        depth = len(self.encoder.blocks)
        trainable = {f"blocks.{i}." for i in range(depth - unfreeze_blocks, depth)}
        for name, parameter in self.encoder.named_parameters():
            parameter.requires_grad = name.startswith(tuple(trainable)) or name.startswith("norm.")

    def patch_grid(self, images: torch.Tensor) -> torch.Tensor:
        """Final-norm patch tokens ``[B, H/p, W/p, D]``."""
        tokens = self.encoder.forward_features(images)[:, self.encoder.num_prefix_tokens :]
        height, width = images.shape[2] // self.patch_size, images.shape[3] // self.patch_size
        return tokens.reshape(images.shape[0], height, width, -1)

    def encode(self, images: torch.Tensor, encoder_grad: bool = True) -> torch.Tensor:
        """``patch_grid`` with the encoder's gradient on only when ``encoder_grad`` (the warm-up freezes it)."""
        with torch.set_grad_enabled(encoder_grad and torch.is_grad_enabled()):
            return self.patch_grid(images)

    def forward(self, images: torch.Tensor, encoder_grad: bool = True) -> PatchClassOutput:
        return self.head(self.encode(images, encoder_grad))

    def encoder_is_deterministic(self) -> bool:
        """True when the encoder computes the same in training as in eval mode: no active dropout, drop-path
        or patch dropout, no batch statistics. The ET teacher (an eval-mode pass) can then reuse the
        training pass's patch grid instead of running the encoder a second time."""
        for module in self.encoder.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                return False
            if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
                return False
            if float(getattr(module, "drop_prob", 0.0) or 0.0) > 0 or float(getattr(module, "prob", 0.0) or 0.0) > 0:
                return False  # timm DropPath (drop_prob), PatchDropout (prob)
        return True


class PhaseLRScheduler(Scheduler):
    """Per-step constant lr in two phases: the head group at ``warmup_lr`` for ``warmup_steps`` steps,
    then every group at its initial lr (the authors' warm-up then main Adam)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, warmup_lr: float) -> None:
        self.warmup_steps = int(warmup_steps)
        self.warmup_lr = float(warmup_lr)
        super().__init__(optimizer, param_group_field="lr", t_in_epochs=False)
        self.update_groups(self._get_lr(0))

    def _get_lr(self, t: int) -> list[float]:
        if t < self.warmup_steps:
            return [self.warmup_lr if group.get("phase") == "head" else base
                    for group, base in zip(self.optimizer.param_groups, self.base_values)]
        return list(self.base_values)


# ---------------------------------------------------------------------------------------- method
# ------------------------------------------------------------------------------------ settings
class ViTPCMHead(Settings):
    hidden_dim: PositiveInt = 192
    dropout: Probability = 0.2
    init_std: PositiveFloat = 0.05
    use_lstm: bool = True


class ViTPCMModel(Settings):
    """``methods.vitpcm.params.model``: the ViT and the patch-class mapping head."""

    backbone: str
    weights: str | None = None
    backbone_args: dict[str, Any] = {}
    patch_size: PositiveInt
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = (0.5, 0.5, 0.5)
    head: ViTPCMHead = ViTPCMHead()


class ViTPCMLosses(Settings):
    """``methods.vitpcm.params.losses``: each loss on or off, and the weight of L_REG."""

    mce: bool = True
    reg: bool = True
    et: bool = True
    reg_weight: NonNegativeFloat = 0.01


class ViTPCMTrain(Settings):
    batch_size: PositiveInt
    epochs: PositiveInt
    warmup_epochs: NonNegativeFloat = 1
    warmup_lr: NonNegativeFloat = 1e-3
    lr: PositiveFloat
    adam_eps: PositiveFloat = KERAS_EPSILON
    unfreeze_blocks: NonNegativeInt = 5
    image_size: PositiveInt
    view2_size: PositiveInt | None = None
    crop_size: NonNegativeInt = 0
    crop_probability: Probability = 0.3
    flip_lr_probability: Probability = 0.5
    flip_ud_probability: Probability = 0.5
    transpose_probability: Probability = 0.5
    color_jitter: bool = True


class ViTPCMSeeds(Settings):
    """``methods.vitpcm.params.seeds``: the size the image is resized to for the seed export."""

    image_size: PositiveInt


class ViTPCMSettings(Settings):
    """``methods.vitpcm.params``."""

    model: ViTPCMModel
    train: ViTPCMTrain
    losses: ViTPCMLosses = ViTPCMLosses()
    seeds: ViTPCMSeeds


@METHODS.register("vitpcm")
class ViTPCM(Method):
    """ViT-PCM: softmax over K+1 classes per patch, GMP, multilabel BCE (+ regulariser, ET)."""

    settings_type = ViTPCMSettings

    name = "vitpcm"
    seed_normalization = "probability"
    seed_background = True

    def __init__(self, config: Mapping[str, Any], num_classes: int) -> None:
        super().__init__(config, num_classes)
        settings = self.settings
        self.mean = settings.model.image_mean
        self.std = settings.model.image_std
        self.use_mce = settings.losses.mce
        self.use_reg = settings.losses.reg
        self.use_et = settings.losses.et
        self.reg_weight = settings.losses.reg_weight

    # ----------------------------------------------------------------------------------- network
    def build_model(self, weights: WeightsCatalog) -> nn.Module:
        settings = self.settings.model
        overrides = dict(settings.backbone_args)
        overrides.setdefault("dynamic_img_size", True)  # 384 training, 960 BPM, 192-px views
        encoder = create_backbone(settings.backbone, weights.get(settings.weights), **overrides)
        head = settings.head.model_dump()
        unfreeze = self.settings.train.unfreeze_blocks
        if not 0 <= unfreeze <= len(encoder.blocks):
            raise ConfigError(
                f"method.train.unfreeze_blocks={unfreeze} is outside 0..{len(encoder.blocks)} (encoder depth)"
            )
        model = ViTPCMNet(encoder, self.num_classes + 1, head, unfreeze)
        if model.patch_size != settings.patch_size:
            raise ConfigError(
                f"method.model.patch_size={settings.patch_size} does not match the patch size "
                f"{model.patch_size} of backbone '{settings.backbone}': set it to {model.patch_size}"
            )
        return model

    # -------------------------------------------------------------------------------------- data
    def _sizes(self) -> tuple[int, int, int, int]:
        train = self.settings.train
        patch = self.settings.model.patch_size
        size = train.image_size
        view2 = train.view2_size if train.view2_size is not None else size // 2
        crop = train.crop_size
        for key, value in (("train.image_size", size), ("train.view2_size", view2), ("train.crop_size", crop)):
            if value % patch:
                raise ConfigError(f"method.{key}={value} is not a multiple of method.model.patch_size={patch}")
        return patch, size, view2, crop

    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        return normalize_to_tensor(image, self.mean, self.std)

    def _random_flips(self, rng: np.random.Generator) -> tuple[bool, bool, bool]:
        train = self.settings.train
        return (
            bool(rng.random() < train.flip_lr_probability),
            bool(rng.random() < train.flip_ud_probability),
            bool(rng.random() < train.transpose_probability),
        )

    def training_sample(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
        patch, size, view2_size, crop = self._sizes()
        jitter = self.settings.train.color_jitter
        square = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        first = color_jitter(square, rng) if jitter else square
        first_flips = self._random_flips(rng)
        second = color_jitter(square, rng) if jitter else square
        box = (0, 0, size, size)
        if crop > 0 and rng.random() < self.settings.train.crop_probability:
            box = patch_aligned_box(size, crop, patch, rng)
        second = second[box[0] : box[2], box[1] : box[3]]
        second = cv2.resize(second, (view2_size, view2_size), interpolation=cv2.INTER_LINEAR)
        second_flips = self._random_flips(rng)
        return {
            "image": self._tensor(flip_image(first, *first_flips)),
            "image_et": self._tensor(flip_image(second, *second_flips)),
            "flips": torch.tensor(first_flips, dtype=torch.float32),
            "affine_et": torch.tensor(second_flips + box, dtype=torch.float32),
            "labels": torch.from_numpy(np.asarray(labels, np.float32)),
        }

    # ------------------------------------------------------------------------------ optimisation
    def _warmup_steps(self, steps_per_epoch: int) -> int:
        return int(round(self.settings.train.warmup_epochs * steps_per_epoch))

    def build_optimizer(self, model: nn.Module, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, Any]:
        train = self.settings.train
        lr = train.lr
        groups = [
            {"params": [p for p in model.head.parameters() if p.requires_grad], "lr": lr, "phase": "head"},
            {"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": lr, "phase": "encoder"},
        ]
        groups = [group for group in groups if group["params"]]
        optimizer = torch.optim.Adam(groups, lr=lr, eps=train.adam_eps)
        warmup_lr = train.warmup_lr
        scheduler = PhaseLRScheduler(optimizer, self._warmup_steps(steps_per_epoch), warmup_lr)
        return optimizer, scheduler

    def training_step(
        self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]:
        encoder_grad = progress.step >= self._warmup_steps(progress.steps_per_epoch)
        images, labels = batch["image"], batch["labels"]
        targets = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1)
        losses: dict[str, torch.Tensor] = {}
        if self.use_et:
            if images.shape[0] % 4:
                raise ConfigError(
                    f"ViT-PCM's equivariance loss tiles 4 views per mosaic: the training batch size "
                    f"({images.shape[0]}) must be a multiple of 4, or set method.losses.et: false"
                )
        if self.use_et and model.encoder_is_deterministic():
            # The eval-mode teacher differs from the training pass only in the head's dropout: one encoder pass.
            grid = model.encode(images, encoder_grad)
            model.head.eval()
            with torch.no_grad():
                teacher = model.head(grid.detach()).probabilities
            model.head.train()
            output = model.head(grid)
        else:
            if self.use_et:
                model.eval()
                with torch.no_grad():
                    teacher = model(images).probabilities
                model.train()
            output = model(images, encoder_grad=encoder_grad)
        if self.use_mce:
            losses["mce"] = multilabel_bce(output.pooled, targets)
        if self.use_reg:
            losses["reg"] = self.reg_weight * model.head.weight_penalty()
        if self.use_et:
            student = split_mosaic(model(tile_mosaic(batch["image_et"]), encoder_grad=encoder_grad).probabilities)
            patch = model.patch_size
            mapped = torch.stack([
                map_to_second_view(teacher[i], batch["flips"][i], batch["affine_et"][i], patch, student.shape[-1])
                for i in range(images.shape[0])
            ])
            losses["et"] = equivariance_loss(student, merge_class_labels(mapped, targets))
        if not losses:
            raise ConfigError("method.losses disables every ViT-PCM loss: enable at least mce")
        total = sum(losses.values())
        return {"loss": total, **{name: value.detach() for name, value in losses.items()}}

    # --------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def class_probabilities(self, model: nn.Module, image: np.ndarray) -> torch.Tensor:
        """Z ``[K+1, G, G]`` of the image resized to the square ``seeds.image_size``."""
        model.eval()
        size = self.settings.seeds.image_size
        square = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        device = next(model.parameters()).device
        return model(self._tensor(square).unsqueeze(0).to(device)).probabilities[0]

    @torch.no_grad()
    def class_scores(self, model: nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
        """The max-pooled class probabilities of the foreground classes (the ``mce`` loss), on the image
        resized as the seeds see it."""
        model.eval()
        size = self.settings.seeds.image_size
        square = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        output = model(self._tensor(square).unsqueeze(0).to(next(model.parameters()).device))
        return {"pcm": output.pooled[0, 1:].float().cpu().numpy()}

    @torch.no_grad()
    def infer_seeds(self, model: nn.Module, image: np.ndarray, labels: np.ndarray) -> SeedMaps:
        """Baseline pseudo-mask probabilities: merged with the image labels, resized to the image;
        background (key 0) and present classes."""
        probabilities = self.class_probabilities(model, image)
        present = np.flatnonzero(np.asarray(labels) > 0.5)
        keys = np.concatenate([[0], present + 1]).astype(np.int64)
        labels_with_background = torch.zeros(self.num_classes + 1, device=probabilities.device)
        labels_with_background[torch.from_numpy(keys).to(probabilities.device)] = 1.0
        merged = merge_class_labels(probabilities.unsqueeze(0), labels_with_background.unsqueeze(0))
        merged = merged[:, torch.from_numpy(keys).to(probabilities.device)]
        height, width = image.shape[:2]
        resized = F.interpolate(merged, size=(height, width), mode="bilinear", align_corners=True)[0]
        return SeedMaps(resized.clamp(0.0, 1.0).cpu().numpy().astype(np.float32), keys)
