"""IRN (Ahn, Cho & Kwak, CVPR 2019): inter-pixel relations from CAMs, an edge network, a random walk.

Three steps, each a stage (``affinity_labels``, ``train_affinity``, ``refine_random_walk``):

1. **Relation labels** (:func:`relation_labels`): ``fg = CRF(argmax[t_fg; maps])``,
   ``bg = CRF(argmax[t_bg; maps])`` with IRN's label CRF; the label is ``fg``'s class where ``fg`` is
   foreground, 0 where both are background, 255 (unsure) elsewhere. Presets: IRN ``t_fg 0.30 /
   t_bg 0.05``, RIB ``0.35 / 0.17``. SIPE (``background: seeds``, :func:`seed_background_relation_labels`)
   puts the seeds' own background map in place of ``t_fg`` and half of it in place of ``t_bg``.
2. **IRNet** (:class:`IRNet`): a ResNet at strides (2, 2, 2, 1) whose five stage outputs feed a boundary
   branch (1×1 → 32 ch, GroupNorm(4), ReLU per stage, upsampled to stride 4, concatenated, 1×1 → 1) and
   a displacement branch (GroupNorm 8/16); trained with :func:`wsss_core.losses.affinity.irn_loss` on
   the pairs within radius 10 of the stride-4 grid (labels downscaled by nearest neighbour), on IRN's
   source region. IRN freezes the ImageNet backbone entirely (stage outputs detached, BN in eval);
   ``freeze_backbone: false`` trains it instead, which a random-init backbone (the synthetic preset)
   needs, because frozen random features cannot delineate anything.
3. **Random walk** (:func:`semantic_mask`): boundary ``b`` = sigmoid of the mean edge logit of the image
   and its mirror; scores ``x = cam^p · (1 − b)`` at stride 4 (``p`` = 1 IRN, 1.3 RIB); affinity
   ``1 − path max b`` within radius 5; ``x · T^(2^exp_times)`` with ``T = A^β`` column-normalised
   (β 10, exp_times 8); bilinear ×4 upsampling, cropped to the image; divided by the global maximum;
   argmax over ``[t_sem; x]`` (IRN 0.25, RIB VOC 0.27 / COCO 0.22). SIPE (``background: seeds``) walks
   ``[background; maps]`` (resized to stride 4, not re-normalised; ``p`` = 1.5) and takes the argmax of
   the walked channels, with no ``t_sem``.

Deviations, on purpose: the mean-shift displacement post-processing (instance segmentation only) is
not computed; images are not padded to 512 before the edge network (RIB's ``coco=True`` behaviour, which
also lets 640-pixel COCO images through); the random walk is the sparse one of
:mod:`wsss_core.refine.random_walk` (same maths, no dense ``N × N`` matrix).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wsss_core.losses.affinity import irn_loss
from wsss_core.models.backbones import create_backbone, set_last_stage_stride_one
from wsss_core.models.weights import WeightsCatalog
from wsss_core.refine.affinity import (
    AFFINITY_REFINERS,
    IGNORE_LABEL,
    AffinityRefiner,
    affinity_from_boundary,
    pair_labels,
)
from wsss_core.refine.crf import LABEL_CRF_PARAMS, CRFParams, crf_labels
from wsss_core.refine.path_index import PathIndex
from wsss_core.refine.random_walk import random_walk
from wsss_core.refine.seed_adapter import RefinementSeeds
from wsss_core.refine.settings import IRNSettings
from wsss_core.training.progress import TrainingProgress

FEATURE_STRIDE = 4
LabelCRF = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (image, labels, num_labels) -> labels


# --------------------------------------------------------------------------------- relation labels
def confident_labels(image: np.ndarray, strict: np.ndarray, lenient: np.ndarray, label_ids: np.ndarray,
                     crf: LabelCRF) -> np.ndarray:
    """IRN's combination of two CRF-refined argmaxes of ``[background; maps]`` scores ``[K + 1, H, W]``:
    the class id where the ``strict`` scores (a strong background) say foreground, 0 where the
    ``lenient`` ones (a weak background) also say background, 255 in between."""
    num_labels = len(label_ids)
    foreground = label_ids[crf(image, np.argmax(strict, axis=0), num_labels)]
    background = label_ids[crf(image, np.argmax(lenient, axis=0), num_labels)]
    labels = foreground.astype(np.uint8)
    labels[foreground == 0] = IGNORE_LABEL
    labels[(foreground == 0) & (background == 0)] = 0
    return labels


def relation_labels(
    image: np.ndarray, seeds: RefinementSeeds, fg_threshold: float, bg_threshold: float, crf: LabelCRF
) -> np.ndarray:
    """IRN's ``uint8 [H, W]`` relation labels: class id where the CRF of ``argmax[fg_threshold; maps]``
    says foreground, 0 where that of ``argmax[bg_threshold; maps]`` also says background, 255 in between."""
    if len(seeds.keys) == 0:  # no foreground class: everything is confident background
        return np.zeros(seeds.maps.shape[1:], np.uint8)

    def with_plane(threshold: float) -> np.ndarray:
        return np.concatenate([np.full((1, *seeds.maps.shape[1:]), threshold, np.float32), seeds.maps])

    return confident_labels(image, with_plane(fg_threshold), with_plane(bg_threshold), seeds.label_ids, crf)


def seed_background_relation_labels(
    image: np.ndarray, seeds: RefinementSeeds, background_factor: float, crf: LabelCRF
) -> np.ndarray:
    """SIPE's relation labels (``cam2ir.py``): as :func:`relation_labels`, with the seeds' own background
    map in place of the thresholds — as it is for the confident foreground, × ``background_factor`` (0.5)
    for the confident background."""
    if len(seeds.keys) == 0:
        return np.zeros(seeds.maps.shape[1:], np.uint8)
    scores = seeds.with_background()
    lenient = scores.copy()
    lenient[0] *= background_factor
    return confident_labels(image, scores, lenient, seeds.label_ids, crf)


# ------------------------------------------------------------------------------------------ IRNet
def _reduce(in_channels: int, out_channels: int, groups: int, upsample: int = 1) -> nn.Sequential:
    """1×1 conv (no bias) → GroupNorm → (bilinear ×upsample) → ReLU, IRN's branch unit."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.GroupNorm(groups, out_channels)]
    if upsample > 1:
        layers.append(nn.Upsample(scale_factor=upsample, mode="bilinear", align_corners=False))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class IRNet(nn.Module):
    """Boundary and displacement branches on a ResNet's five stages (stride 4 outputs)."""

    def __init__(self, backbone: nn.Module, freeze_backbone: bool = True) -> None:
        super().__init__()
        set_last_stage_stride_one(backbone)
        self.backbone = backbone
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            backbone.requires_grad_(False)
        # timm's feature_info: stem (act1, = after maxpool), layer1..layer4
        c1, c2, c3, c4, c5 = (info["num_chs"] for info in backbone.feature_info)
        self.edge1 = _reduce(c1, 32, 4)
        self.edge2 = _reduce(c2, 32, 4)
        self.edge3 = _reduce(c3, 32, 4, upsample=2)
        self.edge4 = _reduce(c4, 32, 4, upsample=4)
        self.edge5 = _reduce(c5, 32, 4, upsample=4)
        self.edge_out = nn.Conv2d(160, 1, 1, bias=True)
        self.displacement1 = _reduce(c1, 64, 8)
        self.displacement2 = _reduce(c2, 128, 16)
        self.displacement3 = _reduce(c3, 256, 16)
        self.displacement4 = _reduce(c4, 256, 16, upsample=2)
        self.displacement5 = _reduce(c5, 256, 16, upsample=2)
        self.displacement6 = _reduce(768, 256, 16, upsample=2)
        self.displacement_out = nn.Sequential(
            nn.Conv2d(448, 256, 1, bias=False), nn.GroupNorm(16, 256), nn.ReLU(inplace=True),
            nn.Conv2d(256, 2, 1, bias=False),
        )

    def train(self, mode: bool = True) -> "IRNet":
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def stages(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The five stage outputs (strides 4, 4, 8, 16, 16), detached when the backbone is frozen."""
        net = self.backbone
        x = net.maxpool(net.act1(net.bn1(net.conv1(images))))
        outputs = [x]
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(net, name)(x)
            outputs.append(x)
        return [output.detach() for output in outputs] if self.freeze_backbone else outputs

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Edge logits ``[B, 1, h, w]`` and displacements ``[B, 2, h, w]`` at stride 4."""
        s1, s2, s3, s4, s5 = self.stages(images)
        height, width = s2.shape[-2:]

        def crop(x: torch.Tensor) -> torch.Tensor:
            return x[..., :height, :width]

        edges = [self.edge1(s1), self.edge2(s2), crop(self.edge3(s3)), crop(self.edge4(s4)), crop(self.edge5(s5))]
        edge = self.edge_out(torch.cat(edges, dim=1))
        d3 = self.displacement3(s3)
        d4 = self.displacement4(s4)[..., : d3.shape[-2], : d3.shape[-1]]
        d5 = self.displacement5(s5)[..., : d3.shape[-2], : d3.shape[-1]]
        up = crop(self.displacement6(torch.cat([d3, d4, d5], dim=1)))
        displacement = self.displacement_out(torch.cat([self.displacement1(s1), self.displacement2(s2), up], dim=1))
        return edge, displacement

    def branch_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """Parameters of the boundary branch and of the displacement branch."""
        edge = [p for name, p in self.named_parameters() if name.startswith("edge")]
        displacement = [p for name, p in self.named_parameters() if name.startswith("displacement")]
        return edge, displacement

    def parameter_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """IRN: boundary branch ×1, displacement branch ×10; a trained backbone ×1."""
        edge, displacement = self.branch_parameters()
        groups = [{"params": edge, "lr": base_lr, "name": "edge"},
                  {"params": displacement, "lr": 10 * base_lr, "name": "displacement"}]
        if not self.freeze_backbone:
            groups.append({"params": list(self.backbone.parameters()), "lr": base_lr, "name": "backbone"})
        return groups


def build_irnet(settings: IRNSettings, weights: WeightsCatalog) -> IRNet:
    """IRNet on the configured backbone (``create_backbone``: ``resnet50``, or ``resnet_synth``...)."""
    backbone = create_backbone(settings.backbone, weights.get(settings.weights), **dict(settings.backbone_args))
    return IRNet(backbone, freeze_backbone=settings.freeze_backbone)


class IRNTrainingTask:
    """The training step for the shared loop: IRN's loss on the radius-``train_radius`` pairs."""

    def __init__(self, settings: IRNSettings) -> None:
        self.path_index = PathIndex(settings.train_radius)
        self.irn_crop = settings.source_region == "irn_crop"

    def training_step(self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress) -> dict[str, torch.Tensor]:
        edge, displacement = model(batch["image"])
        labels = batch["labels"]
        height, width = labels.shape[-2:]
        edge, displacement = edge[..., :height, :width], displacement[..., :height, :width]
        source = self.path_index.irn_source_mask(height, width, labels.device) if self.irn_crop else None
        pairs = pair_labels(labels, self.path_index, source_mask=source)
        affinity = affinity_from_boundary(torch.sigmoid(edge[:, 0]), self.path_index)
        return irn_loss(affinity, displacement, pairs, self.path_index)


# ------------------------------------------------------------------------------------ random walk
@torch.no_grad()
def boundary_map(model: IRNet, image: torch.Tensor) -> torch.Tensor:
    """Boundary probability ``[h, w]`` (stride 4) of one normalised image ``[3, H, W]``: sigmoid of the
    mean of the edge logits of the image and of its mirror image."""
    edges, _ = model(torch.stack([image, image.flip(-1)]))
    return torch.sigmoid(edges[0, 0] / 2 + edges[1, 0].flip(-1) / 2)


def semantic_mask(
    boundary: torch.Tensor, seeds: RefinementSeeds, settings: IRNSettings, image_size: Sequence[int]
) -> np.ndarray:
    """IRN's pseudo-mask ``uint8 [H, W]`` (label ids) from a stride-4 boundary map and the seeds."""
    height, width = image_size
    if len(seeds.keys) == 0:
        return np.zeros((height, width), np.uint8)
    own_background = settings.background == "seeds"  # SIPE: the background channel is walked with the classes
    stride_maps = seeds.with_background(FEATURE_STRIDE) if own_background else seeds.downsampled(FEATURE_STRIDE)
    cams = torch.from_numpy(stride_maps).to(boundary.device)
    boundary = boundary[: cams.shape[1], : cams.shape[2]]
    scores = cams.pow(settings.cam_power) * (1 - boundary)
    path_index = PathIndex(settings.walk_radius)
    affinity = affinity_from_boundary(boundary[None], path_index)[0]
    walked = random_walk(scores, affinity, path_index, settings.beta, settings.exp_times)
    upsampled = F.interpolate(walked[None], scale_factor=FEATURE_STRIDE, mode="bilinear", align_corners=False)
    upsampled = upsampled[0, :, :height, :width]
    upsampled = upsampled / upsampled.max().clamp_min(1e-5)
    if not own_background:
        background = torch.full((1, height, width), settings.sem_seg_bg_threshold, device=upsampled.device)
        upsampled = torch.cat([background, upsampled])
    winner = upsampled.argmax(dim=0).cpu().numpy()
    return seeds.label_ids[winner].astype(np.uint8)


# -------------------------------------------------------------------------------- stage interface
@AFFINITY_REFINERS.register("irn")
class IRNRefiner(AffinityRefiner):
    """IRN for the affinity stages (``stage.refine: irn``, settings under ``stage.irn``)."""

    name = "irn"
    feature_stride = FEATURE_STRIDE
    default_crf = LABEL_CRF_PARAMS

    def settings(self, stage: Mapping[str, Any]) -> IRNSettings:
        return IRNSettings.load(stage.get("irn"), "stage.irn")

    def uses_seed_background(self, settings: IRNSettings) -> bool:
        return settings.background == "seeds"

    def relation_labels(self, image: np.ndarray, seeds: RefinementSeeds, settings: IRNSettings,
                        crf: CRFParams) -> np.ndarray:
        def label_crf(image: np.ndarray, labels: np.ndarray, num_labels: int) -> np.ndarray:
            return crf_labels(image, labels, num_labels, crf)

        if settings.background == "seeds":
            return seed_background_relation_labels(image, seeds, settings.background_factor, label_crf)
        return relation_labels(image, seeds, settings.conf_fg_threshold, settings.conf_bg_threshold, label_crf)

    def build_model(self, settings: IRNSettings, weights: WeightsCatalog) -> IRNet:
        return build_irnet(settings, weights)

    def training_task(self, settings: IRNSettings) -> IRNTrainingTask:
        return IRNTrainingTask(settings)

    def parameter_groups(self, model: nn.Module, base_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return model.parameter_groups(base_lr)  # type: ignore[operator]

    def pseudo_mask(self, model: nn.Module, image: torch.Tensor, seeds: RefinementSeeds,
                    settings: IRNSettings) -> np.ndarray:
        boundary = boundary_map(model, image)  # type: ignore[arg-type]
        return semantic_mask(boundary, seeds, settings, tuple(image.shape[-2:]))
