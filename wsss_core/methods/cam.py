"""The classic CAM baseline (Zhou et al. 2016) as IRN trains and exports it (Ahn, Cho & Kwak, CVPR 2019).

Registered as ``cam``: the floor every WSSS paper compares against and IRN's native seed. Follows the
authors' code (jiwoon-ahn/irn: ``net/resnet50_cam.py``, ``step/train_cam.py``, ``step/make_cam.py``,
``misc/torchutils.py``, ``voc12/dataloader.py``); every default is the code's (the paper's text was not
checked line by line against it), and each other reading below is a switch.

* **Network** (:class:`CAMNet`): a timm ResNet (``resnet50`` with the configured weights) at strides
  (2, 2, 2, 1), output stride 16 without dilation, and a 1×1 convolution without bias to C class maps.
  Scores = classifier(GAP(features)) (``torchutils.gap2d``), equal to GAP of the class maps.
* **Frozen parts**: IRN's ``train()`` override only sets ``requires_grad = False`` on conv1/bn1, but its
  forward detaches the output of stage 2, so the stem, layer1 and layer2 never receive a gradient:
  ``model.frozen_stages: 2`` (default, the code) freezes IRN's stages 1 (stem + layer1) and 2 (layer2);
  ``model.frozen_stages: 1`` is the reading "conv1/bn1 and stage 1 frozen"; 0 trains everything.
* **BatchNorm** (``model.batch_norm``): ``fixed`` (default, IRN's ``FixedBatchNorm``: running statistics in
  training too, the affine scale and shift still trained in the unfrozen stages), ``frozen`` (statistics
  and affine fixed), ``train`` (ordinary BN, for a random-init backbone, whose running statistics are
  meaningless; the BN of frozen stages stays in eval). ``model.train()`` keeps fixed BN in eval mode.
* **Training**: multilabel soft-margin loss; SGD with IRN's ``PolyOptimizer``: backbone lr ``train.lr``
  (0.1), classifier ``classifier_lr_multiplier`` × (10), weight decay 1e-4 on every group, lr × (1 −
  t/T)^0.9 per step (:class:`PolyLRScheduler`). IRN passes its weight decay positionally into SGD's
  momentum slot (momentum 1e-4, i.e. none; G19), hence ``momentum: 0``. Batch 16, 5 epochs.
* **Augmentation** (``VOC12ClassificationDataset``): long side resized to a random length in
  ``resize_long`` (320, 640) (bicubic, IRN's skimage order 3), ImageNet normalisation, horizontal flip,
  random ``crop_size`` (512) crop with zero (mean colour) fill.
* **Seeds** (``make_cam``): for each scale in (1.0, 0.5, 1.5, 2.0), the image resized bicubically to
  ``round(s·H) × round(s·W)`` and its mirror image; ReLU(class maps) of the image plus the re-flipped
  map of the mirror; each scale upsampled bilinearly to the image size rounded up to the stride
  (``strided_up_size``), summed over scales, cropped to H × W; present classes only, each divided by its
  max + 1e-5 (``seed_normalization = "max"``). No background map: the background is the evaluation's
  threshold (IRN's ``cam_eval_thres`` 0.15 on VOC; the seed evaluation sweeps it). skimage's
  anti-aliasing before the 0.5 downscale is not reproduced (cv2 bicubic).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field
import torch
import torch.nn.functional as F
from torch import nn

from wsss_core.settings import IntPair, NonNegativeFloat, PositiveFloat, PositiveInt, Scales, Settings
from wsss_core.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATIONS,
    irn_training_crop,
    normalize_to_tensor,
    resize,
)
from wsss_core.errors import ConfigError
from wsss_core.methods.base import METHODS, Method
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.training.progress import TrainingProgress
from wsss_core.models.backbones import create_backbone, set_last_stage_stride_one
from wsss_core.models.cam_normalization import max_normalize
from wsss_core.models.weights import WeightsCatalog
from wsss_core.training.schedulers import PolyLRScheduler

LOG = logging.getLogger(__name__)

# batch_norm mode -> (running statistics fixed in training, affine parameters fixed)
BATCH_NORM_MODES: dict[str, tuple[bool, bool]] = {"fixed": (True, False), "frozen": (True, True), "train": (False, False)}
NUM_STAGES = 4


# --------------------------------------------------------------------------------------- network
def strided_up_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """The image size rounded up to a multiple of ``stride`` (IRN's ``get_strided_up_size``)."""
    return (height + stride - 1) // stride * stride, (width + stride - 1) // stride * stride


class CAMNet(nn.Module):
    """ResNet at output stride 16 + a 1×1 bias-free classifier; IRN's four stages, the first
    ``frozen_stages`` without gradient."""

    def __init__(self, backbone: nn.Module, num_classes: int, frozen_stages: int = 2, batch_norm: str = "fixed") -> None:
        super().__init__()
        if not 0 <= frozen_stages <= NUM_STAGES:
            raise ConfigError(f"method.model.frozen_stages is {frozen_stages}; use 0..{NUM_STAGES} (IRN: 2)")
        if batch_norm not in BATCH_NORM_MODES:
            raise ConfigError(f"method.model.batch_norm '{batch_norm}' is unknown: use one of {sorted(BATCH_NORM_MODES)}")
        set_last_stage_stride_one(backbone)
        self.backbone = backbone
        self.classifier = nn.Conv2d(int(backbone.feature_info[-1]["num_chs"]), num_classes, 1, bias=False)
        self.stride = int(backbone.feature_info[-1]["reduction"]) // 2
        self.frozen_stages = frozen_stages
        self.fixed_statistics, fixed_affine = BATCH_NORM_MODES[batch_norm]
        for stage in self.stages()[:frozen_stages]:
            for module in stage:
                module.requires_grad_(False)
        if fixed_affine:
            for module in self._batch_norms([self.backbone]):
                module.requires_grad_(False)

    def stages(self) -> list[list[nn.Module]]:
        """IRN's four stages (stem + layer1, layer2, layer3, layer4), looked up on every call so that a
        module replaced inside the backbone (SyncBatchNorm under DDP) is the one that runs."""
        net = self.backbone
        return [[net.conv1, net.bn1, net.act1, net.maxpool, net.layer1], [net.layer2], [net.layer3], [net.layer4]]

    @staticmethod
    def _batch_norms(modules: list[nn.Module]) -> list[nn.Module]:
        return [m for module in modules for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True) -> "CAMNet":
        """Train mode, with fixed BatchNorm (and every BN of a frozen stage) left in eval mode."""
        super().train(mode)
        if mode:
            stages = self.stages()
            for stage in stages if self.fixed_statistics else stages[: self.frozen_stages]:
                for module in self._batch_norms(stage):
                    module.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Last-stage features ``[B, D, h, w]`` at stride 16. The frozen stages' parameters do not require
        gradients, so no graph is built through them (what IRN's ``detach()`` after stage 2 achieves)."""
        x = images
        for stage in self.stages():
            for module in stage:
                x = module(x)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, C]``: the classifier on the globally average-pooled features."""
        pooled = self.features(images).mean(dim=(2, 3), keepdim=True)
        return self.classifier(pooled).flatten(1)

    def class_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Class activation maps ``[B, C, h, w]`` (before ReLU): the classifier at every position."""
        return self.classifier(self.features(images))

    def trainable_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters that train, classifier parameters)."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return backbone, list(self.classifier.parameters())


# ------------------------------------------------------------------------------------ settings
Interpolation = Literal[tuple(INTERPOLATIONS)]  # type: ignore[misc]  # nearest | bilinear | bicubic


class CAMTrain(Settings):
    """``methods.cam.params.train``."""

    batch_size: PositiveInt
    epochs: PositiveInt
    crop_size: PositiveInt = 512
    resize_long: IntPair = (320, 640)
    interpolation: Interpolation = "bicubic"
    lr: PositiveFloat = 0.1
    classifier_lr_multiplier: PositiveFloat = 10.0
    weight_decay: NonNegativeFloat = 1e-4
    momentum: NonNegativeFloat = 0.0
    poly_power: NonNegativeFloat = 0.9


class CAMModel(Settings):
    """``methods.cam.params.model``: the network."""

    backbone: str
    weights: str | None = None
    backbone_args: dict[str, Any] = {}
    frozen_stages: Annotated[int, Field(ge=0, le=NUM_STAGES)] = 2  # IRN's code: stem, layer1, layer2 without gradient; 1 = stem + layer1
    batch_norm: Literal[tuple(BATCH_NORM_MODES)] = "fixed"  # type: ignore[misc]  # fixed (IRN: running stats, affine trained) | frozen | train
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = IMAGENET_STD


class CAMSeeds(Settings):
    """``methods.cam.params.seeds``: multi-scale + flip CAMs."""

    scales: Scales = [1.0, 0.5, 1.5, 2.0]
    interpolation: Interpolation = "bicubic"


class CAMSettings(Settings):
    """``methods.cam.params``: the only copy of each default of the CAM baseline (config.yaml's block
    overrides them; IRN's values)."""

    model: CAMModel
    train: CAMTrain
    seeds: CAMSeeds = CAMSeeds()


@METHODS.register("cam")
class CAM(Method):
    """ResNet-50 GAP CAM (IRN's ``train_cam`` / ``make_cam``); seeds without background."""

    settings_type = CAMSettings

    name = "cam"
    seed_normalization = "max"

    settings: CAMSettings

    def __init__(self, config: Mapping[str, Any], num_classes: int) -> None:
        super().__init__(config, num_classes)  # checks config against CAMSettings: self.settings
        self.mean = tuple(self.settings.model.image_mean)
        self.std = tuple(self.settings.model.image_std)

    # ----------------------------------------------------------------------------------- network
    def build_model(self, weights: WeightsCatalog) -> nn.Module:
        settings = self.settings.model
        pretrained = weights.get(settings.weights)
        batch_norm = settings.batch_norm
        if pretrained is None and batch_norm != "train":
            LOG.warning("method.model.batch_norm is %s on a random-init backbone: its running statistics are 0/1; "
                        "use batch_norm: train when method.model.weights is null", batch_norm)
        backbone = create_backbone(settings.backbone, pretrained, **dict(settings.backbone_args))
        return CAMNet(backbone, self.num_classes, settings.frozen_stages, batch_norm)

    # -------------------------------------------------------------------------------------- data
    def training_sample(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
        train = self.settings.train
        crop, _ = irn_training_crop(image, train.resize_long, train.crop_size, self.mean, self.std, rng,
                                    train.interpolation)
        return {"image": crop, "labels": torch.from_numpy(np.asarray(labels, np.float32))}

    # ------------------------------------------------------------------------------ optimisation
    def build_optimizer(self, model: nn.Module, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, Any]:
        train = self.settings.train
        lr = train.lr
        backbone, classifier = model.trainable_groups()
        groups = [{"params": classifier, "lr": lr * train.classifier_lr_multiplier}]
        if backbone:  # every stage frozen leaves the classifier alone
            groups.insert(0, {"params": backbone, "lr": lr})
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=train.momentum, weight_decay=train.weight_decay)
        scheduler = PolyLRScheduler(optimizer, self.total_steps(steps_per_epoch), power=train.poly_power)
        return optimizer, scheduler

    def training_step(
        self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]:
        loss = F.multilabel_soft_margin_loss(model(batch["image"]), batch["labels"])
        return {"loss": loss, "cls": loss.detach()}

    # --------------------------------------------------------------------------------- inference
    def _views(self, image: np.ndarray, scale: float, device: torch.device) -> torch.Tensor:
        """The image at ``scale`` (IRN: ``round(s·H) × round(s·W)``) and its mirror, normalised: ``[2, 3, h, w]``."""
        if scale != 1.0:
            height, width = image.shape[:2]
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            image, _ = resize(image, size, interpolation=self.settings.seeds.interpolation)
        tensor = normalize_to_tensor(image, self.mean, self.std).to(device)
        return torch.stack([tensor, tensor.flip(-1)])

    @torch.no_grad()
    def multi_scale_cams(self, model: CAMNet, image: np.ndarray) -> torch.Tensor:
        """Summed multi-scale + flip CAMs ``[C, H, W]`` of every class, before normalisation."""
        device = next(model.parameters()).device
        height, width = image.shape[:2]
        up_size = strided_up_size(height, width, model.stride)
        total = torch.zeros((self.num_classes, *up_size), device=device)
        for scale in self.settings.seeds.scales:
            maps = F.relu(model.class_maps(self._views(image, scale, device)))
            merged = maps[0] + maps[1].flip(-1)
            total += F.interpolate(merged[None], size=up_size, mode="bilinear", align_corners=False)[0]
        return total[:, :height, :width]

    @torch.no_grad()
    def class_scores(self, model: nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
        """The GAP classifier's logits (the training loss), at scale 1 without the flip."""
        model.eval()
        return {"cls": model(self._views(image, 1.0, next(model.parameters()).device)[:1])[0].float().cpu().numpy()}

    @torch.no_grad()
    def infer_seeds(self, model: nn.Module, image: np.ndarray, labels: np.ndarray) -> SeedMaps:
        """IRN's ``high_res`` CAMs: present classes, each divided by its max + 1e-5."""
        model.eval()
        present = np.flatnonzero(np.asarray(labels) > 0.5)
        cams = self.multi_scale_cams(model, image)
        maps = max_normalize(cams[torch.from_numpy(present).to(cams.device)]).clamp(0.0, 1.0)
        return SeedMaps(maps.cpu().numpy().astype(np.float32), (present + 1).astype(np.int64))

