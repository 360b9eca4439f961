"""ToCo (Ru et al., CVPR 2023): single-stage WSSS with token contrast — the baseline of the MCC family.

One network trained end to end (``ToCoNetwork``): a ViT encoder (DeiT-B in the papers), a GMP classifier
on the final patch tokens and an auxiliary one on the tokens of an intermediate block (VOC
``aux_layer = -3``), a LargeFOV segmentation decoder, and a DINO-style projector with an EMA teacher.
A training step (authors' ``dist_train_voc_seg_neg.py``):

1. multi-scale + flip CAMs of the crop (final and aux, no grad, ``single_stage.cams``);
2. L_cls + L_cls_aux: multilabel soft-margin on the two GMP classifiers;
3. L_seg: balanced CE of the decoder against PAR-refined dual-threshold labels of the final CAM
   (``single_stage.pseudo_labels``), switched on once ``step > segmentation_after``;
4. L_aff: patch-token affinity of the final tokens against labels of the aux CAM on the token grid;
5. L_contrast (ToCo CTC): class tokens of 2 global views (teacher: EMA projector, detached) against the
   class tokens of the global views and of ``num_local`` local crops (student projector); a crop is
   negative when its mean ROI score (0 bg / 1 uncertain / 2 fg, from the aux CAM) is ≤ 0.2. Crops are
   ``local_crop_size`` px, centred on interior pixels of ROI ≤ 1 (anywhere if too few). MCC
   (``methods/mcc.py``) replaces the crops by key-masked views.

Loss = w_cls·L_cls + w_cls_aux·L_cls_aux + w_aff·L_aff + w_contrast·L_contrast + w_seg·L_seg.

Code vs paper, and the defaults chosen (the code, which produced the published numbers):
* w_seg = 0.1 (MCC paper Eq. 7: 1); the DenseEnergy "reg" loss (w 0.05 in the scripts) is **not**
  implemented (``losses.weights.reg`` must be 0): it needs the compiled permutohedral ``bilateralfilter``
  extension, and the AFA README reports it brings only a subtle gain.
* warm-up lr is a ratio (1e-6 × lr) with poly decay counted from step 0 (``PolyLRScheduler``).
* The affinity labels mask the token grid with the pixel crop box (``affinity_box_units: pixels``,
  the authors' bug kept by default; ``tokens`` fixes it), see ``single_stage.pseudo_labels``.
* The encoder runs once per global view: the main forward's class token serves view 0 and the teacher
  gets detached tokens (the authors re-encode the same views 2-3 times with identical results).
* ⚠ Deviation: the authors flip the main view after the crop without mirroring its valid box; here the
  box is mirrored with the image (their local view's independent flip is kept, as coded).

Configuration (``method`` block; defaults = the authors' VOC values):
``model`` {``backbone``, ``weights`` (key of ``weights.files``; null = random init), ``backbone_args`` (timm
overrides), ``aux_layer`` (-3), ``freeze_pos_embed`` (true), ``projector`` {out_dim 1024, hidden_dim 2048,
bottleneck_dim 256, num_layers 3}, ``decoder`` {channels 512, dilation 5}}; ``train`` {iterations,
batch_size, lr 6e-5, head_lr_multiplier 10, weight_decay 0.01, betas, power 0.9, warmup_steps 1500,
warmup_ratio 1e-6, crop_size 448, rescale_range [0.5, 2.0]}; ``losses`` {``weights`` {cls 1, cls_aux 1,
affinity 0.2, contrast 0.5, segmentation 0.1, reg 0}, ``schedule`` {segmentation_after 2000,
token_losses_after -1, segmentation_aux_cam_until -1}, ``thresholds`` {low 0.25, high 0.7, background 0.5},
``par`` {dilations [1, 2, 4, 8, 12, 24], iterations 10, downscale 2}, ``affinity_box_units`` (pixels),
``contrast`` {num_local 8, local_crop_size 96, temperature 0.5, momentum 0.9, positive_ratio 0.2,
negative_term true}}; ``seeds`` {scales [1.0, 0.5, 1.5], resize 448}; ``inference`` {resize null, scales
[1.0, 1.5, 1.25], flip true, flip_fuse sum, scale_fuse max}. A ``losses.schedule`` bound X means "on (or
switched) once the 0-based step is > X", as the authors' ``n_iter <= X`` tests.

Inference: ``infer_seeds`` = multi-scale (``seeds.scales`` 1.0, 0.5, 1.5) + flip CAM of the image resized to
``seeds.resize`` (448), upsampled to the image, label-masked, min-max normalised; ``segment`` = decoder
logits at ``inference.scales`` with flip, fused like the authors' VOC script (flip sum, scales max) or
COCO script (``resize`` 448, flip max, scales sum), then softmax. Both reuse ``single_stage.cams``
(the shared ``segmentation.inference.predict_probabilities`` fuses all views with one rule and cannot
express either of the authors' fusions).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import nn

from wsss_core.settings import NonNegativeFloat, PositiveFloat, PositiveInt, Probability, Scales, Settings, Step
from wsss_core.single_stage.settings import Fusion, OrderedThresholds, PARSettings, SingleStageTrain
from wsss_core.data.transforms import (
    denormalize,
    normalize,
    photometric_view,
    random_crop_with_box,
    random_rescale_image,
    random_resized_crop_bicubic,
    to_tensor,
)
from wsss_core.errors import ConfigError
from wsss_core.methods.base import METHODS, Method
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.training.progress import TrainingProgress
from wsss_core.models.backbones import create_backbone
from wsss_core.models.masked_vit import EncoderOutput, MaskedViT
from wsss_core.models.weights import WeightsCatalog
from wsss_core.single_stage.cams import multi_scale_cams, multi_scale_logits
from wsss_core.single_stage.decoders import GMPClassifier, LargeFOV, Projector, ema_update, make_teacher
from wsss_core.losses.single_stage import affinity_loss, balanced_segmentation_loss, class_token_contrast_loss
from wsss_core.single_stage.par import PixelAdaptiveRefinement
from wsss_core.single_stage.pseudo_labels import (
    affinity_labels,
    par_pseudo_mask,
    par_refined_labels,
    roi_map,
    token_labels,
)
from wsss_core.training.schedulers import PolyLRScheduler

# ------------------------------------------------------------------------------------------- network
class ToCoNetwork(nn.Module):
    """Encoder + GMP classifiers (final, aux) + LargeFOV decoder + projector with EMA teacher."""

    def __init__(
        self,
        encoder: MaskedViT,
        num_classes: int,
        decoder_channels: int = 512,
        decoder_dilation: int = 5,
        projector: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        dim = encoder.embed_dim
        self.encoder = encoder
        self.classifier = GMPClassifier(dim, num_classes)
        self.aux_classifier = GMPClassifier(dim, num_classes)
        self.decoder = LargeFOV(dim, num_classes + 1, decoder_channels, decoder_dilation)
        self.projector = Projector(dim, **dict(projector or {}))
        self.projector_teacher = make_teacher(self.projector)

    def forward(self, images: torch.Tensor, key_mask: torch.Tensor | None = None) -> EncoderOutput:
        return self.encoder(images, key_mask)

    @torch.no_grad()
    def cam_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw final and aux CAMs ``[B, C, h, w]`` (the authors' ``cam_only`` forward)."""
        out = self.encoder(images)
        return self.classifier.cam(out.patch_tokens), self.aux_classifier.cam(out.aux_tokens)

    @torch.no_grad()
    def segmentation_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Decoder logits ``[B, C+1, h, w]`` at token resolution."""
        return self.decoder(self.encoder(images).patch_tokens)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The authors' four optimiser groups: encoder (no norm), encoder norms, heads, decoder."""
        groups: dict[str, list[nn.Parameter]] = {"encoder": [], "encoder_norm": [], "heads": [], "decoder": []}
        for name, parameter in self.encoder.named_parameters():
            if parameter.requires_grad:
                groups["encoder_norm" if "norm" in name else "encoder"].append(parameter)
        for head in (self.classifier, self.aux_classifier, self.projector):
            groups["heads"].extend(p for p in head.parameters() if p.requires_grad)
        groups["decoder"].extend(self.decoder.parameters())
        return groups


# ------------------------------------------------------------------------------------ settings
class LabelThresholdSettings(OrderedThresholds):
    """Background scores: ``low``/``high`` make the training pseudo labels (VOC 0.25 / 0.7, COCO
    0.25 / 0.65); ``background`` is the authors' single evaluation threshold (VOC 0.5, COCO 0.45): the
    background of the exported PAR pseudo-masks (``infer_pseudo_labels``). Seeds are exported as maps and
    the evaluate_seeds stage sweeps their threshold."""

    low: Probability = 0.25
    high: Probability = 0.7
    background: Probability = 0.5


class ToCoLossWeights(Settings):
    cls: NonNegativeFloat = 1.0
    cls_aux: NonNegativeFloat = 1.0
    affinity: NonNegativeFloat = 0.2
    contrast: NonNegativeFloat = 0.5
    segmentation: NonNegativeFloat = 0.1
    reg: NonNegativeFloat = 0.0

    @model_validator(mode="after")
    def _no_reg_loss(self) -> "ToCoLossWeights":
        if self.reg:
            raise ValueError(
                "losses.weights.reg must be 0: the DenseEnergy (reg) loss needs the compiled permutohedral "
                "bilateralfilter extension, which this project does not ship (AFA README: subtle gain)"
            )
        return self


class ToCoSchedule(Settings):
    segmentation_after: Step = 2000
    token_losses_after: Step = -1
    segmentation_aux_cam_until: Step = -1


class ToCoContrast(Settings):
    num_local: PositiveInt = 8
    local_crop_size: PositiveInt = 96
    temperature: PositiveFloat = 0.5
    momentum: Probability = 0.9
    positive_ratio: Probability = 0.2
    negative_term: bool = True


class ToCoProjector(Settings):
    out_dim: PositiveInt = 1024
    hidden_dim: PositiveInt = 2048
    bottleneck_dim: PositiveInt = 256
    num_layers: PositiveInt = 3


class ToCoDecoder(Settings):
    channels: PositiveInt = 512
    dilation: PositiveInt = 5


class ToCoModel(Settings):
    """``methods.toco.params.model``: the ViT, its auxiliary layer, the projector and the decoder."""

    backbone: str
    weights: str | None = None
    backbone_args: dict[str, Any] = {}
    aux_layer: int = -3
    freeze_pos_embed: bool = True
    projector: ToCoProjector = ToCoProjector()
    decoder: ToCoDecoder = ToCoDecoder()


class ToCoLosses(Settings):
    """``methods.toco.params.losses`` (MCC's type extends it): the weights and schedule of the losses and
    the parameters of their labels (PAR pseudo-labels, token-contrast crops)."""

    weights: ToCoLossWeights = ToCoLossWeights()
    schedule: ToCoSchedule = ToCoSchedule()
    thresholds: LabelThresholdSettings = LabelThresholdSettings()
    par: PARSettings = PARSettings()
    affinity_box_units: Literal["pixels", "tokens"] = "pixels"  # the authors' img_box bug kept; tokens = fixed
    contrast: ToCoContrast = ToCoContrast()


class ToCoSeeds(Settings):
    """``methods.toco.params.seeds``: the multi-scale CAM (also the training CAM) and the seeds' input size."""

    scales: Scales = [1.0, 0.5, 1.5]
    resize: PositiveInt | None = 448


class ToCoInference(Settings):
    """``methods.toco.params.inference``: the decoder's multi-scale + flip inference."""

    resize: PositiveInt | None = None
    scales: Scales = [1.0, 1.5, 1.25]
    flip: bool = True
    flip_fuse: Fusion = "sum"
    scale_fuse: Fusion = "max"


class ToCoSettings(Settings):
    """``methods.toco.params`` (MCC's type extends it)."""

    model: ToCoModel
    train: SingleStageTrain
    losses: ToCoLosses = ToCoLosses()
    seeds: ToCoSeeds = ToCoSeeds()
    inference: ToCoInference = ToCoInference()


@METHODS.register("toco")
class ToCo(Method):
    """ToCo: CAM pseudo labels refined by PAR train a LargeFOV decoder, with token contrast."""

    settings_type = ToCoSettings

    pseudo_labels = "par"

    name = "toco"
    end_to_end = True
    seed_normalization = "minmax"

    def __init__(self, config: Mapping[str, Any], num_classes: int) -> None:
        super().__init__(config, num_classes)
        settings = self.settings
        losses = settings.losses
        self.thresholds = losses.thresholds
        self.crop_size = settings.train.crop_size
        self.rescale_range = settings.train.rescale_range
        self.cam_scales = tuple(settings.seeds.scales)
        self.par = PixelAdaptiveRefinement(dilations=losses.par.dilations, num_iterations=losses.par.iterations)
        self.par_downscale = losses.par.downscale
        self.affinity_box_units = losses.affinity_box_units
        self.loss_weights = losses.weights.model_dump()
        schedule = losses.schedule
        self.segmentation_after = schedule.segmentation_after
        self.token_losses_after = schedule.token_losses_after
        self.segmentation_aux_cam_until = schedule.segmentation_aux_cam_until
        contrast = losses.contrast
        self.num_local = contrast.num_local
        self.temperature = contrast.temperature
        self.momentum = contrast.momentum
        self.positive_ratio = contrast.positive_ratio
        self.negative_term = contrast.negative_term
        self.local_crop_size = contrast.local_crop_size

    # ------------------------------------------------------------------------------- network
    def build_model(self, weights: WeightsCatalog) -> nn.Module:
        settings = self.settings.model
        vit = create_backbone(settings.backbone, weights.get(settings.weights), **dict(settings.backbone_args))
        return self.network_from_vit(vit)

    def network_from_vit(self, vit: nn.Module) -> ToCoNetwork:
        """The network around an already built timm ViT (used by ``build_model`` and the tests)."""
        settings = self.settings.model
        encoder = MaskedViT(vit, aux_layer=settings.aux_layer, freeze_pos_embed=settings.freeze_pos_embed)
        return ToCoNetwork(
            encoder, self.num_classes, decoder_channels=settings.decoder.channels,
            decoder_dilation=settings.decoder.dilation, projector=settings.projector.model_dump(),
        )

    # ---------------------------------------------------------------------------------- data
    def training_sample(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
        """The crop (``image``, view 0), a second global view and the local view, labels and the crop's
        valid box, following the authors' VOC12ClsDataset."""
        rescaled = random_rescale_image(image, self.rescale_range, rng)
        if rng.random() < 0.5:
            rescaled = rescaled[:, ::-1]
        crop, box = random_crop_with_box(rescaled, self.crop_size, rng)
        main, flipped = photometric_view(crop, rng, blur_probability=1.0)
        if flipped:  # mirror the valid box with the image (the authors do not; see module docstring)
            box = np.array([box[0], box[1], self.crop_size - box[3], self.crop_size - box[2]], dtype=np.int64)
        second = random_resized_crop_bicubic(image, self.crop_size, (0.4, 1.0), rng)
        global_view, _ = photometric_view(second, rng, blur_probability=0.1, solarize_probability=0.2)
        local_view, _ = photometric_view(crop, rng, blur_probability=0.5)
        return {
            "image": main,
            "global_view": global_view,
            "local_view": local_view,
            "labels": torch.from_numpy(np.asarray(labels, dtype=np.float32)),
            "image_box": torch.from_numpy(box),
        }

    # -------------------------------------------------------------------------- optimisation
    def build_optimizer(self, model: nn.Module, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, Any]:
        train = self.settings.train
        lr = train.lr
        head_lr = lr * train.head_lr_multiplier
        weight_decay = train.weight_decay
        groups = model.parameter_groups()
        optimizer = torch.optim.AdamW(
            [
                {"params": groups["encoder"], "lr": lr},
                {"params": groups["encoder_norm"], "lr": lr},
                {"params": groups["heads"], "lr": head_lr},
                {"params": groups["decoder"], "lr": head_lr},
            ],
            lr=lr, weight_decay=weight_decay, betas=train.betas, eps=1e-8,
        )
        total = self.total_steps(steps_per_epoch)
        scheduler = PolyLRScheduler(
            optimizer, total, power=train.power,
            warmup_steps=min(train.warmup_steps, total - 1),
            warmup_ratio=train.warmup_ratio,
        )
        return optimizer, scheduler

    def training_step(
        self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]:
        images, labels, box = batch["image"], batch["labels"].float(), batch["image_box"]
        ema_update(model.projector_teacher, model.projector, self.momentum)
        cam, aux_cam = multi_scale_cams(model.cam_maps, images, self.cam_scales)
        out = model(images)
        class_logits = model.classifier(out.patch_tokens)
        aux_logits = model.aux_classifier(out.aux_tokens)
        losses = {
            "cls": F.multilabel_soft_margin_loss(class_logits, labels),
            "cls_aux": F.multilabel_soft_margin_loss(aux_logits, labels),
        }
        # Segmentation: PAR-refined dual-threshold labels of the final (or, early, the aux) CAM.
        seg_cam = aux_cam if progress.step <= self.segmentation_aux_cam_until else cam
        with torch.no_grad():
            seg_target = par_refined_labels(
                self.par.to(images.device), denormalize(images), seg_cam, labels, self.thresholds.low,
                self.thresholds.high, box, self.par_downscale,
            )
        seg_logits = F.interpolate(
            model.decoder(out.patch_tokens), size=seg_target.shape[-2:], mode="bilinear", align_corners=False
        )
        losses["segmentation"] = balanced_segmentation_loss(seg_logits, seg_target)
        # Patch-token affinity from the aux CAM on the token grid.
        grid = tuple(out.patch_tokens.shape[-2:])
        tokens_label = token_labels(
            aux_cam, labels, grid, self.thresholds.low, self.thresholds.high, box,
            model.encoder.patch_size, self.affinity_box_units,
        )
        losses["affinity"] = affinity_loss(out.patch_tokens, affinity_labels(tokens_label))
        # Class-token contrast.
        student, teacher, positive = self.contrast_views(model, batch, out, cam, aux_cam, progress)
        losses["contrast"] = class_token_contrast_loss(
            student, teacher, positive, self.temperature, self.negative_term
        )
        weights = self.active_loss_weights(progress.step)
        losses["loss"] = sum(weights[name] * losses[name] for name in weights)
        return losses

    def active_loss_weights(self, step: int) -> dict[str, float]:
        """Loss weights at ``step`` (0-based): segmentation once ``step > segmentation_after``,
        affinity and contrast once ``step > token_losses_after`` (ToCo COCO: 12000)."""
        names = ("cls", "cls_aux", "affinity", "contrast", "segmentation")
        weights = {name: float(self.loss_weights[name]) for name in names}
        if step <= self.segmentation_after:
            weights["segmentation"] = 0.0
        if step <= self.token_losses_after:
            weights["affinity"] = weights["contrast"] = 0.0
        return weights

    def global_tokens(
        self, model: ToCoNetwork, batch: Mapping[str, Any], out: EncoderOutput
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Student ``[B, 2, E]`` and teacher ``[B, 2, E]`` outputs of the two global views; view 0 is the
        main forward's class token (encode once), the teacher sees detached tokens."""
        second = model(batch["global_view"]).class_token
        tokens = torch.stack([out.class_token, second], dim=1)
        return model.projector(tokens), model.projector_teacher(tokens.detach())

    def contrast_views(
        self,
        model: ToCoNetwork,
        batch: Mapping[str, Any],
        out: EncoderOutput,
        cam: torch.Tensor,
        aux_cam: torch.Tensor,
        progress: TrainingProgress,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Student outputs ``[B, 2 + L, E]``, teacher outputs ``[B, 2, E]`` and positive flags
        ``[B, 2 + L]`` for the contrast; ToCo's local views are crops of the local view."""
        global_student, teacher = self.global_tokens(model, batch, out)
        roi = roi_map(aux_cam, batch["labels"].float(), self.thresholds.low, self.thresholds.high)
        crops, local_positive = local_crops(
            batch["local_view"], roi, self.num_local, self.local_crop_size, self.positive_ratio
        )
        batch_size = crops.shape[0]
        local_tokens = model(crops.flatten(0, 1)).class_token.view(batch_size, self.num_local, -1)
        student = torch.cat([global_student, model.projector(local_tokens)], dim=1)
        positive = torch.cat([torch.ones_like(local_positive[:, :2]), local_positive], dim=1)
        return student, teacher, positive

    # ------------------------------------------------------------------------------ inference
    def _image_tensor(self, model: nn.Module, image: np.ndarray) -> torch.Tensor:
        device = next(model.parameters()).device
        return normalize(to_tensor(image)).unsqueeze(0).to(device)

    def _seed_input(self, model: nn.Module, image: np.ndarray) -> torch.Tensor:
        """The normalised image as the seeds see it: resized to ``seeds.resize`` (the crop size)."""
        x = self._image_tensor(model, image)
        resize = self.settings.seeds.resize
        if resize:
            x = F.interpolate(x, size=(int(resize), int(resize)), mode="bilinear", align_corners=False)
        return x

    @torch.no_grad()
    def class_scores(self, model: nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
        """The final and the auxiliary classifier's logits (``cls``, ``cls_aux`` losses), on the image as
        the seeds see it (``seeds.resize``)."""
        model.eval()
        out = model(self._seed_input(model, image))
        return {"cls": model.classifier(out.patch_tokens)[0].float().cpu().numpy(),
                "aux": model.aux_classifier(out.aux_tokens)[0].float().cpu().numpy()}

    @torch.no_grad()
    def infer_seeds(self, model: nn.Module, image: np.ndarray, labels: np.ndarray) -> SeedMaps:
        """Multi-scale + flip final CAM of the present classes at the image's resolution."""
        height, width = image.shape[:2]
        cam, _ = multi_scale_cams(model.cam_maps, self._seed_input(model, image), self.cam_scales)
        cam = F.interpolate(cam, size=(height, width), mode="bilinear", align_corners=False)[0]
        present = np.flatnonzero(np.asarray(labels) > 0)
        maps = cam[torch.as_tensor(present, dtype=torch.long, device=cam.device)].clamp(0.0, 1.0)
        return SeedMaps(maps=maps.float().cpu().numpy(), keys=(present + 1).astype(np.int64))

    @torch.no_grad()
    def infer_pseudo_labels(self, model: nn.Module, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """PAR pseudo-mask: the seed CAM (as ``infer_seeds``), background at ``losses.thresholds.background``,
        refined by PAR on the image (the evaluation rule of the decoder's training label)."""
        return par_pseudo_mask(
            self.par, model, image, self.infer_seeds(model, image, labels), self.num_classes,
            self.thresholds.background, self.par_downscale,
        )

    @torch.no_grad()
    def segment(self, model: nn.Module, image: np.ndarray) -> np.ndarray:
        """Decoder probabilities ``float32 [C+1, H, W]`` with the authors' multi-scale + flip fusion."""
        inference = self.settings.inference
        height, width = image.shape[:2]
        x = self._image_tensor(model, image)
        resize = inference.resize
        if resize:
            x = F.interpolate(x, size=(int(resize), int(resize)), mode="bilinear", align_corners=False)
        logits = multi_scale_logits(
            model.segmentation_logits, x, tuple(inference.scales), (height, width),
            flip=inference.flip, flip_fuse=inference.flip_fuse, scale_fuse=inference.scale_fuse,
        )
        return logits[0].softmax(dim=0).float().cpu().numpy()


def local_crops(
    views: torch.Tensor, roi: torch.Tensor, num_crops: int, crop_size: int, positive_ratio: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """ToCo's local crops: ``num_crops`` squares of ``crop_size`` per image of ``views`` ``[B, 3, H, W]``,
    centred on interior pixels whose ROI is ≤ 1 (uncertain or background; any interior pixel when fewer
    than ``num_crops`` qualify), drawn with torch's generator. A crop is positive when its mean ROI
    exceeds ``positive_ratio``. Returns crops ``[B, L, 3, s, s]`` and flags ``[B, L]``."""
    batch, _, height, width = views.shape
    half = crop_size // 2
    if height <= 2 * half or width <= 2 * half:
        raise ConfigError(
            f"method.losses.contrast.local_crop_size={crop_size} must be smaller than the {height}x{width} training "
            "crop (method.train.crop_size)"
        )
    crops, flags = [], []
    for index in range(batch):
        interior = roi[index, half : height - half, half : width - half]
        corners = torch.nonzero(interior <= 1)
        if corners.shape[0] < num_crops:
            corners = torch.nonzero(interior >= 0)
        if corners.shape[0] >= num_crops:
            order = torch.randperm(corners.shape[0])[:num_crops]
        else:  # a training crop barely larger than the local crop: draw with replacement
            order = torch.randint(corners.shape[0], (num_crops,))
        chosen = corners[order.to(corners.device)]
        # an interior index (r, c) is the centre (r + half, c + half), i.e. the crop's top-left corner (r, c)
        image_crops, image_flags = [], []
        for top, left in chosen.tolist():
            image_crops.append(views[index, :, top : top + crop_size, left : left + crop_size])
            window = roi[index, top : top + crop_size, left : left + crop_size]
            image_flags.append(window.sum() / float(crop_size * crop_size) > positive_ratio)
        crops.append(torch.stack(image_crops))
        flags.append(torch.stack(image_flags))
    return torch.stack(crops), torch.stack(flags).float()
