"""AFA (Ru et al., CVPR 2022, "Learning Affinity from Attention"): single-stage WSSS on a MiT-B1 encoder —
the base network of ECA.

Network (``AFANetwork``, authors' ``wetr/model_attn_aff.py``): MiT-B1 with stage-4 stride 1
(``models/mix_transformer.py``, output stride 16), a GMP classifier on stage 4 whose 1×1 conv gives
the CAM, the SegFormer MLP decoder on the four stages (``single_stage/segformer_head.py``), and the
affinity-from-attention head: the pre-softmax q·kᵀ logits of the last 2 stage-4 blocks (2 × 8 heads)
are symmetrised (A + Aᵀ), mixed by a 1×1 conv with bias (Kaiming-normal, a = √5, fan-out) and passed
through a sigmoid → predicted affinity â ``[B, N, N]``.

A training step (authors' ``scripts/dist_train_voc.py``):

1. multi-scale (1.0, 0.5, 1.5) + flip CAMs of the crop, no grad (``single_stage.cams``);
2. L_cls: multilabel soft-margin of the GMP logits;
3. after ``losses.schedule.cam_iters`` (VOC 2000, COCO 5000) also
   * the CAM label: PAR-refined dual-threshold label (``single_stage.pseudo_labels.par_refined_labels``,
     high 0.55 / low 0.35, PAR at half resolution, outside the crop's box 255);
   * L_aff (``attention_affinity_loss``) against pair labels of that label nearest-downsampled to the
     stage-4 grid: 1 same label, 0 different, ignored when either token is 255 or the pair lies outside
     the ``losses.affinity.radius`` (8) Chebyshev window; the diagonal counts as positive, as coded;
   * L_seg: bg/fg-balanced CE of the decoder (upsampled to the crop) against the CAM label; from step
     ``losses.propagation.after`` (6000) against the **affinity-propagated** label instead: â of the largest
     CAM scale, zeroed outside the window, raised to ``losses.propagation.power`` (2), columns normalised
     (sum + 0.1), one random-walk step of the softmaxed [bg, present CAMs] (bg 0.55 / 0.35), PAR, and
     the same high/low combination.

Loss = L_cls + w_seg·L_seg + w_aff·L_aff (0.1, 0.1) after the warm-up, L_cls during it.

Code vs paper, and the defaults chosen:
* the DenseEnergy ("reg") loss is commented out in the published script; it is not implemented.
* optimiser: AdamW lr 6e-5, heads (classifier, affinity head) and decoder 10×, **norm layers frozen**
  (lr 0, wd 0: ``train.norm_lr_multiplier: 0``), wd 0.01, 1500-step warm-up (ratio 1e-6), poly power 1.
* SyncBN in the decoder is plain BatchNorm (single process).
* the crop is zero-padded (ToCo's ``data.transforms.random_crop_with_box``); there is no colour jitter, as coded.
* inference: the author's answer in rulixiang/afa#6 ("the paper used scales 0.5-1.5"): long side
  resized to 512, scales (0.5, 0.75, 1.0, 1.25, 1.5), flip averaged, scales fused by max, softmax;
  the published ``test_msc_flip.py`` uses (1, 0.5, 0.75) — set ``inference.scales`` for it.
* the propagated label's PAR (``losses.propagation.par``): ``box`` (default) follows the published code
  (``dist_train_voc.py`` + ``refine_cams_with_cls_label``): the random-walk scores are upsampled to the
  full crop first, then PAR runs per image on the image box only (its pixels at half size), the result is
  upsampled back to the box and everything outside it is 255 — the zero padding never enters PAR. ``crop``
  keeps this project's earlier reading of the paper (scores resized from the token grid straight to PAR's
  half size, PAR over the whole crop, padding included, then the box set to 255); the two differ in a few
  pixels along object and box edges. The default is the code's, since the published numbers came from it.

``infer_seeds`` exports the multi-scale + flip CAM of the present classes at the image resolution
(``seeds.scales``; ``seeds.resize`` resizes the input first, none by default).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wsss_core.settings import NonNegativeFloat, NonNegativeInt, PositiveInt, Probability, Scales, Settings, Step
from wsss_core.single_stage.settings import Fusion, OrderedThresholds, PARSettings, SingleStageTrain
from wsss_core.data.transforms import denormalize, normalize, random_crop_with_box, random_rescale_image, to_tensor
from wsss_core.errors import ConfigError
from wsss_core.losses.afa import attention_affinity_loss
from wsss_core.methods.base import METHODS, Method
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.training.progress import TrainingProgress
from wsss_core.models.mix_transformer import MiTOutput, MixTransformer
from wsss_core.models.weights import WeightsCatalog
from wsss_core.single_stage.cams import multi_scale_cams, multi_scale_logits
from wsss_core.single_stage.decoders import GMPClassifier
from wsss_core.losses.single_stage import balanced_segmentation_loss
from wsss_core.single_stage.par import PixelAdaptiveRefinement
from wsss_core.single_stage.pseudo_labels import (
    IGNORE_INDEX,
    box_mask,
    label_masked_cams,
    par_pseudo_mask,
    par_refined_labels,
)
from wsss_core.single_stage.segformer_head import SegFormerHead


# ------------------------------------------------------------------------------ affinity head, loss
class AttentionAffinityHead(nn.Module):
    """Affinity ``[B, N, N]`` in (0, 1) from attention logits: symmetrise, 1×1 conv over heads, sigmoid."""

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(num_channels, 1, kernel_size=1, bias=True)
        nn.init.kaiming_normal_(self.proj.weight, a=math.sqrt(5), mode="fan_out")

    def forward(self, attentions: Sequence[torch.Tensor]) -> torch.Tensor:
        stacked = torch.cat(list(attentions), dim=1)  # [B, blocks·heads, N, N]
        stacked = stacked + stacked.transpose(-2, -1)
        return torch.sigmoid(self.proj(stacked))[:, 0]


def bilinear(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``[B, C, h, w]`` to ``size`` (align_corners=False, as the authors)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


PROPAGATION_PAR = ("box", "crop")


def refine_propagated_scores(
    par: PixelAdaptiveRefinement,
    image: torch.Tensor,
    scores: torch.Tensor,
    keys: torch.Tensor,
    box: torch.Tensor,
    downscale: int,
    mode: str = "box",
) -> torch.Tensor:
    """Label ``[H, W]`` (class ids ``keys``, 255 outside ``box``) of one image's random-walk ``scores``
    ``[1, K, h, w]`` (token grid) refined by PAR against ``image`` ``[1, 3, H, W]`` (RGB in [0, 1]).

    ``box`` (top, bottom, left, right) is the image inside the zero-padded crop. ``mode`` ``box``: the
    authors' code — scores upsampled to the crop, PAR on the box only (image at 1/``downscale``), back to
    the box's size; ``crop``: scores straight to 1/``downscale`` of the crop, PAR on the whole crop."""
    height, width = image.shape[-2:]
    if mode == "crop":
        size = (height // downscale, width // downscale)
        small_image = bilinear(image, size)
        refined = bilinear(par(small_image, bilinear(scores, size)), (height, width))
        label = keys[refined.argmax(dim=1)[0]]
        label[~box_mask(box[None], height, width)[0]] = IGNORE_INDEX
        return label
    top, bottom, left, right = (int(value) for value in box)
    region = image[..., top:bottom, left:right]
    box_height, box_width = region.shape[-2:]
    full = bilinear(scores, (height, width))[..., top:bottom, left:right]
    small_region = bilinear(region, (max(box_height // downscale, 1), max(box_width // downscale, 1)))
    refined = bilinear(par(small_region, full), (box_height, box_width))
    label = torch.full((height, width), IGNORE_INDEX, dtype=keys.dtype, device=keys.device)
    label[top:bottom, left:right] = keys[refined.argmax(dim=1)[0]]
    return label


def window_mask(grid: tuple[int, int], radius: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean ``[N, N]``: token pairs of an ``h×w`` grid within Chebyshev distance ``radius``."""
    rows = torch.arange(grid[0], device=device).repeat_interleave(grid[1])
    cols = torch.arange(grid[1], device=device).repeat(grid[0])
    near_rows = (rows[:, None] - rows[None, :]).abs() <= radius
    near_cols = (cols[:, None] - cols[None, :]).abs() <= radius
    return near_rows & near_cols


def attention_affinity_labels(
    label: torch.Tensor, grid: tuple[int, int], radius: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """AFA's pair labels ``[B, N, N]`` from a pixel label ``[B, H, W]``: nearest-downsampled to ``grid``;
    1 same label, 0 different, ``ignore_index`` when either token is ignored or outside the window."""
    small = F.interpolate(label[:, None].float(), size=grid, mode="nearest")[:, 0].long().flatten(1)
    pairs = (small[:, :, None] == small[:, None, :]).long()
    ignored = small == ignore_index
    pairs[ignored[:, :, None] | ignored[:, None, :]] = ignore_index
    pairs[:, ~window_mask(grid, radius, label.device)] = ignore_index
    return pairs


def random_walk_transition(affinity: torch.Tensor, window: torch.Tensor, power: float = 2.0) -> torch.Tensor:
    """AFA's propagation matrix: â zeroed outside ``window``, raised to ``power``, each column divided
    by (its sum + 0.1)."""
    transition = affinity.masked_fill(~window, 0.0) ** power
    return transition / (transition.sum(dim=-2, keepdim=True) + 0.1)


# ----------------------------------------------------------------------------------- network
class AFANetwork(nn.Module):
    """MiT encoder + GMP classifier (CAM) + SegFormer decoder + affinity-from-attention head."""

    def __init__(
        self, encoder: MixTransformer, num_classes: int, embedding_dim: int = 256, dropout: float = 0.1,
        affinity_blocks: int = 2,
    ) -> None:
        super().__init__()
        if affinity_blocks > len(encoder.block4):
            raise ConfigError(
                f"method.losses.affinity.blocks = {affinity_blocks} exceeds the {len(encoder.block4)} stage-4 blocks "
                "of the encoder"
            )
        self.encoder = encoder
        self.affinity_blocks = affinity_blocks
        self.classifier = GMPClassifier(encoder.embed_dims[-1], num_classes)
        self.decoder = SegFormerHead(encoder.embed_dims, num_classes + 1, embedding_dim, dropout)
        self.affinity_head = AttentionAffinityHead(affinity_blocks * encoder.num_heads[-1])

    def forward(self, images: torch.Tensor) -> MiTOutput:
        return self.encoder(images)

    def affinity(self, out: MiTOutput) -> torch.Tensor:
        """Predicted affinity ``[B, N4, N4]`` from the last ``affinity_blocks`` stage-4 attentions."""
        return self.affinity_head(out.last_stage_attentions[-self.affinity_blocks :])

    @torch.no_grad()
    def cam_maps(self, images: torch.Tensor) -> tuple[torch.Tensor]:
        """Raw CAM ``[B, C, h, w]`` of stage 4 (the authors' ``cam_only`` forward)."""
        return (self.classifier.cam(self.encoder(images).features[-1]),)

    @torch.no_grad()
    def segmentation_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Decoder logits ``[B, C+1, H/4, W/4]``."""
        return self.decoder(self.encoder(images).features)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The authors' groups: encoder (no norm), encoder norms, heads (classifier, affinity), decoder."""
        groups: dict[str, list[nn.Parameter]] = {"encoder": [], "encoder_norm": [], "heads": [], "decoder": []}
        for name, parameter in self.encoder.named_parameters():
            if parameter.requires_grad:
                groups["encoder_norm" if "norm" in name else "encoder"].append(parameter)
        groups["heads"].extend(self.classifier.parameters())
        groups["heads"].extend(self.affinity_head.parameters())
        groups["decoder"].extend(self.decoder.parameters())
        return groups


# ------------------------------------------------------------------------------------ settings
class AFAThresholds(OrderedThresholds):
    """Background scores of the PAR dual-threshold label (AFA: high 0.55, low 0.35) and the single hard
    background threshold α (ECA's ``cam_label.rule: background_threshold``, and the background of the exported
    PAR pseudo-masks, ``infer_pseudo_labels``; the evaluate_seeds stage sweeps the seeds' threshold instead)."""

    low: Probability = 0.35
    high: Probability = 0.55
    background: Probability = 0.5


class AFAAffinity(Settings):
    radius: PositiveInt = 8
    blocks: PositiveInt = 2


class AFAPropagation(Settings):
    after: Step | None = 6000  # null = off
    power: NonNegativeFloat = 2.0
    par: Literal[PROPAGATION_PAR] = "box"  # type: ignore[valid-type]


class AFASchedule(Settings):
    cam_iters: NonNegativeInt = 2000


class AFADecoder(Settings):
    embedding_dim: PositiveInt = 256
    dropout: Probability = 0.1


class AFALossWeights(Settings):
    cls: NonNegativeFloat = 1.0
    segmentation: NonNegativeFloat = 0.1
    affinity: NonNegativeFloat = 0.1


class AFATrain(SingleStageTrain):
    norm_lr_multiplier: NonNegativeFloat = 0.0
    power: NonNegativeFloat = 1.0
    crop_size: PositiveInt = 512


class AFAModel(Settings):
    """``methods.afa.params.model`` (ECA's type extends it): the MiT encoder and the SegFormer decoder."""

    backbone: str = "mit_b1"
    weights: str | None = "mit_b1"
    backbone_args: dict[str, Any] = {}
    decoder: AFADecoder = AFADecoder()


class AFALosses(Settings):
    """``methods.afa.params.losses`` (ECA's type extends it): the weights and schedule of the losses and
    the parameters of their labels (PAR dual-threshold labels, pair labels, propagated labels)."""

    weights: AFALossWeights = AFALossWeights()
    schedule: AFASchedule = AFASchedule()
    thresholds: AFAThresholds = AFAThresholds()
    par: PARSettings = PARSettings()
    affinity: AFAAffinity = AFAAffinity()
    propagation: AFAPropagation = AFAPropagation()


class AFASeeds(Settings):
    """``methods.afa.params.seeds``: the multi-scale CAM (also the training CAM) and the seeds' input size."""

    scales: Scales = [1.0, 0.5, 1.5]
    resize: PositiveInt | None = None


class AFAInference(Settings):
    """``methods.afa.params.inference``: the decoder's multi-scale + flip inference."""

    long_side: PositiveInt | None = 512
    scales: Scales = [0.5, 0.75, 1.0, 1.25, 1.5]
    flip: bool = True
    flip_fuse: Fusion = "mean"
    scale_fuse: Fusion = "max"


class AFASettings(Settings):
    """``methods.afa.params`` (ECA's type extends it)."""

    model: AFAModel = AFAModel()
    train: AFATrain
    losses: AFALosses = AFALosses()
    seeds: AFASeeds = AFASeeds()
    inference: AFAInference = AFAInference()


# ------------------------------------------------------------------------------------ method
@METHODS.register("afa")
class AFA(Method):
    """AFA: PAR-refined CAM labels train the SegFormer decoder; attention learns the label affinity."""

    settings_type = AFASettings

    name = "afa"
    end_to_end = True
    pseudo_labels = "par"
    seed_normalization = "minmax"
    # the loss terms in the order they are summed (their weights: ``settings.losses.weights``)
    loss_names: ClassVar[tuple[str, ...]] = ("cls", "segmentation", "affinity")

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
        self.affinity_radius = losses.affinity.radius
        self.affinity_blocks = losses.affinity.blocks
        after = losses.propagation.after
        self.propagation_after = None if after is None or after < 0 else after
        self.propagation_power = losses.propagation.power
        self.propagation_par = losses.propagation.par
        weights = losses.weights.model_dump()
        self.loss_weights = {name: float(weights[name]) for name in self.loss_names}
        self.cam_iters = losses.schedule.cam_iters

    # ------------------------------------------------------------------------------- network
    def build_encoder(self, weights: WeightsCatalog) -> MixTransformer:
        from wsss_core.models.backbones import create_backbone

        model = self.settings.model
        name = model.backbone
        encoder = create_backbone(name, weights.get(model.weights), **dict(model.backbone_args))
        if not isinstance(encoder, MixTransformer):
            raise ConfigError(f"method.model.backbone '{name}' is not a Mix Transformer; use mit_b1 or mit_synth")
        return encoder

    def build_model(self, weights: WeightsCatalog) -> nn.Module:
        return self.network_from_encoder(self.build_encoder(weights))

    def network_from_encoder(self, encoder: MixTransformer) -> AFANetwork:
        """The network around an already built MiT (used by ``build_model`` and the tests)."""
        decoder = self.settings.model.decoder
        return AFANetwork(
            encoder, self.num_classes, decoder.embedding_dim, decoder.dropout,
            self.affinity_blocks,
        )

    # ---------------------------------------------------------------------------------- data
    def crop(self, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Random rescale, flip and zero-padded crop (``uint8``) with its valid box."""
        rescaled = random_rescale_image(image, self.rescale_range, rng)
        if rng.random() < 0.5:
            rescaled = rescaled[:, ::-1]
        return random_crop_with_box(rescaled, self.crop_size, rng)

    def training_sample(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
        """The normalised crop, its labels and valid box (top, bottom, left, right)."""
        crop, box = self.crop(image, rng)
        return {
            "image": normalize(to_tensor(crop)),
            "labels": torch.from_numpy(np.asarray(labels, dtype=np.float32)),
            "image_box": torch.from_numpy(box),
        }

    # -------------------------------------------------------------------------- optimisation
    def build_optimizer(self, model: nn.Module, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, Any]:
        from wsss_core.training.schedulers import PolyLRScheduler

        train = self.settings.train
        lr = train.lr
        head_lr = lr * train.head_lr_multiplier
        norm_lr = lr * train.norm_lr_multiplier
        weight_decay = train.weight_decay
        groups = model.parameter_groups()
        optimizer = torch.optim.AdamW(
            [
                {"params": groups["encoder"], "lr": lr},
                {"params": groups["encoder_norm"], "lr": norm_lr, "weight_decay": weight_decay if norm_lr else 0.0},
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

    # ------------------------------------------------------------------------------ training
    def active_loss_weights(self, step: int) -> dict[str, float]:
        """Only L_cls up to ``losses.schedule.cam_iters`` (inclusive), all terms afterwards."""
        if step <= self.cam_iters:
            return {name: (weight if name == "cls" else 0.0) for name, weight in self.loss_weights.items()}
        return dict(self.loss_weights)

    def cam_label(
        self, images: torch.Tensor, cams: torch.Tensor, labels: torch.Tensor, box: torch.Tensor
    ) -> torch.Tensor:
        """PAR-refined dual-threshold label ``[B, H, W]`` of the crop's CAM."""
        return par_refined_labels(
            self.par.to(images.device), denormalize(images), cams, labels, self.thresholds.low,
            self.thresholds.high, box, self.par_downscale,
        )

    def training_step(
        self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]:
        images, labels, box = batch["image"], batch["labels"].float(), batch["image_box"]
        weights = self.active_loss_weights(progress.step)
        out = model(images)
        losses = {"cls": F.multilabel_soft_margin_loss(model.classifier(out.features[-1]), labels)}
        zero = losses["cls"].detach() * 0.0
        if progress.step <= self.cam_iters:
            losses.update(segmentation=zero, affinity=zero)
        else:
            (cams,) = multi_scale_cams(model.cam_maps, images, self.cam_scales)
            with torch.no_grad():
                label = self.cam_label(images, cams, labels, box)
                seg_target = label
                if self.propagation_after is not None and progress.step > self.propagation_after:
                    seg_target = self.propagated_label(model, images, cams, labels, box)
            grid = tuple(out.features[-1].shape[-2:])
            pairs = attention_affinity_labels(label, grid, self.affinity_radius)
            losses["affinity"] = attention_affinity_loss(model.affinity(out), pairs)
            seg_logits = bilinear(model.decoder(out.features), images.shape[-2:])
            losses["segmentation"] = balanced_segmentation_loss(seg_logits, seg_target)
        losses["loss"] = sum(weights[name] * losses[name] for name in weights)
        return losses

    @torch.no_grad()
    def propagated_label(
        self, model: AFANetwork, images: torch.Tensor, cams: torch.Tensor, labels: torch.Tensor, box: torch.Tensor
    ) -> torch.Tensor:
        """AFA's affinity-propagated, PAR-refined label ``[B, H, W]`` (high/low background combination)."""
        largest = max(self.cam_scales)
        height, width = images.shape[-2:]
        scaled = bilinear(images, (int(largest * height), int(largest * width)))
        out = model(scaled)
        grid = tuple(out.features[-1].shape[-2:])
        transition = random_walk_transition(
            model.affinity(out), window_mask(grid, self.affinity_radius, images.device), self.propagation_power
        )
        small_cams = F.interpolate(label_masked_cams(cams, labels), size=grid, mode="bilinear", align_corners=False)
        present = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1) > 0
        rgb = denormalize(images)
        par = self.par.to(images.device)
        results = []
        for background in (self.thresholds.high, self.thresholds.low):
            stack = torch.cat([torch.full_like(small_cams[:, :1], background), small_cams], dim=1)
            per_image = []
            for index in range(images.shape[0]):
                keys = torch.nonzero(present[index])[:, 0]
                scores = stack[index, keys].flatten(1).softmax(dim=0) @ transition[index]
                per_image.append(refine_propagated_scores(
                    par, rgb[index : index + 1], scores.view(1, -1, *grid), keys, box[index], self.par_downscale,
                    self.propagation_par,
                ))
            results.append(torch.stack(per_image))
        with_high, with_low = results
        label = with_high.clone()
        label[with_high == 0] = IGNORE_INDEX
        label[(with_high == 0) & (with_low == 0)] = 0
        label[~box_mask(box, height, width)] = IGNORE_INDEX
        return label

    # ----------------------------------------------------------------------------- inference
    def _image_tensor(self, model: nn.Module, image: np.ndarray) -> torch.Tensor:
        device = next(model.parameters()).device
        return normalize(to_tensor(image)).unsqueeze(0).to(device)

    def _seed_input(self, model: nn.Module, image: np.ndarray) -> torch.Tensor:
        """The normalised image as the seeds see it: resized to ``seeds.resize`` when set."""
        x = self._image_tensor(model, image)
        resize = self.settings.seeds.resize
        if resize:
            x = F.interpolate(x, size=(int(resize), int(resize)), mode="bilinear", align_corners=False)
        return x

    @torch.no_grad()
    def class_scores(self, model: nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
        """The stage-4 classifier's logits (``cls`` loss), on the image as the seeds see it."""
        model.eval()
        return {"cls": model.classifier(model(self._seed_input(model, image)).features[-1])[0].float().cpu().numpy()}

    @torch.no_grad()
    def infer_seeds(self, model: nn.Module, image: np.ndarray, labels: np.ndarray) -> SeedMaps:
        """Multi-scale + flip CAM of the present classes at the image's resolution, min-max normalised."""
        height, width = image.shape[:2]
        (cam,) = multi_scale_cams(model.cam_maps, self._seed_input(model, image), self.cam_scales)
        cam = F.interpolate(cam, size=(height, width), mode="bilinear", align_corners=False)[0]
        present = np.flatnonzero(np.asarray(labels) > 0)
        maps = cam[torch.as_tensor(present, dtype=torch.long, device=cam.device)].clamp(0.0, 1.0)
        return SeedMaps(maps=maps.float().cpu().numpy(), keys=(present + 1).astype(np.int64))

    @torch.no_grad()
    def infer_pseudo_labels(self, model: nn.Module, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """PAR pseudo-mask: the seed CAM, background at ``losses.thresholds.background``, refined by PAR."""
        return par_pseudo_mask(
            self.par, model, image, self.infer_seeds(model, image, labels), self.num_classes,
            self.thresholds.background, self.par_downscale,
        )

    @torch.no_grad()
    def segment(self, model: nn.Module, image: np.ndarray) -> np.ndarray:
        """Decoder probabilities ``float32 [C+1, H, W]``: long side resized, multi-scale + flip."""
        inference = self.settings.inference
        height, width = image.shape[:2]
        x = self._image_tensor(model, image)
        long_side = inference.long_side
        if long_side:
            factor = float(long_side) / max(height, width)
            x = bilinear(x, (max(1, round(height * factor)), max(1, round(width * factor))))
        logits = multi_scale_logits(
            model.segmentation_logits, x, tuple(inference.scales),
            tuple(x.shape[-2:]), flip=inference.flip, flip_fuse=inference.flip_fuse, scale_fuse=inference.scale_fuse,
        )
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        return logits[0].softmax(dim=0).float().cpu().numpy()
