"""PSA / AffinityNet (Ahn & Kwak, CVPR 2018), the refinement of MCTformer's pipeline.

1. **Relation labels** (:func:`relation_labels`): the dense CRF on ``[(1 − max_c m_c)^α; maps]`` at a low
   and a high α. A low α keeps a strong background, so its foreground is confident; a high α weakens the
   background, so where it still wins the background is confident. Label = the low-α class where that is
   foreground, 0 where the high-α CRF says background, 255 elsewhere. Presets: PSA ``α 4 / 32``,
   MCTformer ``1 / 12``.
2. **AffinityNet** (:class:`AffinityNet`): ResNet-38 features ``conv4``/``conv5``/``conv6`` → 1×1 to
   64/128/256 + ELU → concatenated 448 → 1×1 + ELU; affinity ``exp(−mean|f_p − f_q|)`` for the pairs within
   radius 5 of the stride-8 grid; loss :func:`wsss_core.losses.affinity.psa_loss`.
3. **Random walk** (:func:`semantic_mask`): scores ``[bg; maps]`` at full resolution, bg either
   ``(1 − max)^α`` (PSA, α 16) or a constant (MCTformer, 0.39: ``background: constant``), zero-padded to
   a multiple of 8, 8×8 average-pooled, walked with ``T = A^β`` (β 8) ``2^logt`` times (PSA logt 8,
   MCTformer 6), bilinearly upsampled, argmax.

Deviations: the relation labels are stored as one full-resolution ``uint8`` map per image (PSA keeps
both CRF score stacks and takes the argmax after 8×8 average pooling of the scores); training
downsamples that map by nearest neighbour to the stride-8 grid. The random walk uses every pair whose
two ends lie in the image, as IRN's does (PSA's dense build only has pairs whose source lies in
``[0, h − 4) × [4, w − 4)``, an artefact of its fixed training crop) and is the sparse walk of
:mod:`wsss_core.refine.random_walk`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wsss_core.losses.affinity import psa_loss
from wsss_core.models.resnet38 import ResNet38, create_resnet38
from wsss_core.models.weights import WeightsCatalog
from wsss_core.refine.affinity import (
    AFFINITY_REFINERS,
    IGNORE_LABEL,
    AffinityRefiner,
    affinity_from_features,
    pair_labels,
)
from wsss_core.refine.crf import CRFParams, crf_probabilities
from wsss_core.refine.path_index import PathIndex
from wsss_core.refine.random_walk import random_walk
from wsss_core.refine.seed_adapter import RefinementSeeds, background_from_power
from wsss_core.refine.settings import PSASettings
from wsss_core.training.progress import TrainingProgress

FEATURE_STRIDE = 8
ProbabilityCRF = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (image, probabilities) -> probabilities


# --------------------------------------------------------------------------------- relation labels
def crf_class_map(image: np.ndarray, seeds: RefinementSeeds, alpha: float, crf: ProbabilityCRF) -> np.ndarray:
    """Label ids ``[H, W]`` of the argmax of the CRF on ``[(1 − max)^α; maps]`` (normalised per pixel)."""
    scores = np.concatenate([background_from_power(seeds.maps, alpha)[None], seeds.maps])
    probabilities = scores / np.maximum(scores.sum(axis=0, keepdims=True), 1e-5)
    return seeds.label_ids[np.argmax(crf(image, probabilities), axis=0)]


def relation_labels(
    image: np.ndarray, seeds: RefinementSeeds, low_alpha: float, high_alpha: float, crf: ProbabilityCRF
) -> np.ndarray:
    """PSA's ``uint8 [H, W]`` relation labels (class / 0 / 255) from the CRF at two α."""
    if len(seeds.keys) == 0:  # no foreground class: everything is confident background
        return np.zeros(seeds.maps.shape[1:], np.uint8)
    confident_foreground = crf_class_map(image, seeds, low_alpha, crf)
    confident_background = crf_class_map(image, seeds, high_alpha, crf)
    labels = confident_foreground.astype(np.uint8)
    labels[confident_foreground == 0] = IGNORE_LABEL
    labels[confident_background == 0] = 0
    return labels


# ------------------------------------------------------------------------------------- AffinityNet
class AffinityNet(nn.Module):
    """ResNet-38 with PSA's affinity head: features ``[B, 448, h, w]`` at stride 8."""

    def __init__(self, backbone: ResNet38) -> None:
        super().__init__()
        self.backbone = backbone
        channels = backbone.channels
        self.reduce_conv4 = nn.Conv2d(channels["conv4"], 64, 1, bias=False)
        self.reduce_conv5 = nn.Conv2d(channels["conv5"], 128, 1, bias=False)
        self.reduce_conv6 = nn.Conv2d(channels["conv6"], 256, 1, bias=False)
        self.fuse = nn.Conv2d(448, 448, 1, bias=False)
        nn.init.kaiming_normal_(self.reduce_conv4.weight)
        nn.init.kaiming_normal_(self.reduce_conv5.weight)
        nn.init.kaiming_normal_(self.reduce_conv6.weight)
        nn.init.xavier_uniform_(self.fuse.weight, gain=4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(images)
        reduced = [F.elu(self.reduce_conv4(features["conv4"])), F.elu(self.reduce_conv5(features["conv5"])),
                   F.elu(self.reduce_conv6(features["conv6"]))]
        return F.elu(self.fuse(torch.cat(reduced, dim=1)))

    def parameter_groups(self, base_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """PSA's four groups: backbone weights ×1, backbone biases ×2 (no decay), new weights ×10, new
        biases ×20 (no decay); frozen parameters and empty groups left out."""
        def split(parameters: list[tuple[str, nn.Parameter]]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
            trainable = [(name, p) for name, p in parameters if p.requires_grad]
            return ([p for name, p in trainable if p.ndim > 1], [p for name, p in trainable if p.ndim <= 1])

        backbone_weights, backbone_biases = split(list(self.backbone.named_parameters()))
        head = [(name, p) for name, p in self.named_parameters() if not name.startswith("backbone.")]
        head_weights, head_biases = split(head)
        groups = [
            {"params": backbone_weights, "lr": base_lr, "weight_decay": weight_decay, "name": "backbone_weights"},
            {"params": backbone_biases, "lr": 2 * base_lr, "weight_decay": 0.0, "name": "backbone_biases"},
            {"params": head_weights, "lr": 10 * base_lr, "weight_decay": weight_decay, "name": "head_weights"},
            {"params": head_biases, "lr": 20 * base_lr, "weight_decay": 0.0, "name": "head_biases"},
        ]
        return [group for group in groups if group["params"]]


def build_affinity_net(settings: PSASettings, weights: WeightsCatalog) -> AffinityNet:
    backbone = create_resnet38(weights.get(settings.weights), width=settings.width,
                               freeze_batch_norm=settings.freeze_batch_norm, frozen_stages=settings.frozen_stages)
    return AffinityNet(backbone)


class PSATrainingTask:
    """The training step for the shared loop: PSA's loss on the radius-5 pairs of the stride-8 grid."""

    def __init__(self, settings: PSASettings) -> None:
        self.path_index = PathIndex(settings.radius)
        self.irn_crop = settings.source_region == "irn_crop"

    def training_step(self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress) -> dict[str, torch.Tensor]:
        labels = batch["labels"]
        height, width = labels.shape[-2:]
        features = model(batch["image"])[..., :height, :width]
        source = self.path_index.irn_source_mask(height, width, labels.device) if self.irn_crop else None
        pairs = pair_labels(labels, self.path_index, source_mask=source)
        return psa_loss(affinity_from_features(features, self.path_index), pairs)


# ------------------------------------------------------------------------------------ random walk
@torch.no_grad()
def feature_affinity(model: AffinityNet, image: torch.Tensor, settings: PSASettings) -> torch.Tensor:
    """Pair affinities ``[D, h, w]`` (stride 8) of one normalised image ``[3, H, W]``."""
    features = model(image[None])
    return affinity_from_features(features, PathIndex(settings.radius))[0]


def seed_scores(seeds: RefinementSeeds, settings: PSASettings) -> np.ndarray:
    """``[bg; maps]`` ``float32 [K + 1, H, W]`` with the configured background."""
    if settings.background == "power":
        background = background_from_power(seeds.maps, settings.background_alpha)
    else:
        background = np.full(seeds.maps.shape[1:], settings.background_constant, np.float32)
    return np.concatenate([background[None], seeds.maps]).astype(np.float32)


def semantic_mask(affinity: torch.Tensor, seeds: RefinementSeeds, settings: PSASettings) -> np.ndarray:
    """PSA's pseudo-mask ``uint8 [H, W]`` (label ids) from stride-8 affinities and the seeds."""
    height, width = seeds.maps.shape[1:]
    grid_height, grid_width = affinity.shape[1:]
    scores = torch.from_numpy(seed_scores(seeds, settings)).to(affinity.device)
    padded = F.pad(scores, (0, grid_width * FEATURE_STRIDE - width, 0, grid_height * FEATURE_STRIDE - height))
    pooled = F.avg_pool2d(padded[None], FEATURE_STRIDE)[0]
    walked = random_walk(pooled, affinity, PathIndex(settings.radius), settings.beta, settings.logt)
    upsampled = F.interpolate(walked[None], size=padded.shape[1:], mode="bilinear", align_corners=False)[0]
    winner = upsampled[:, :height, :width].argmax(dim=0).cpu().numpy()
    return seeds.label_ids[winner].astype(np.uint8)


# -------------------------------------------------------------------------------- stage interface
@AFFINITY_REFINERS.register("psa")
class PSARefiner(AffinityRefiner):
    """PSA for the affinity stages (``stage.refine: psa``, settings under ``stage.psa``)."""

    name = "psa"
    feature_stride = FEATURE_STRIDE
    default_crf = CRFParams()

    def settings(self, stage: Mapping[str, Any]) -> PSASettings:
        return PSASettings.load(stage.get("psa"), "stage.psa")

    def relation_labels(self, image: np.ndarray, seeds: RefinementSeeds, settings: PSASettings,
                        crf: CRFParams) -> np.ndarray:
        def probability_crf(image: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
            return crf_probabilities(image, probabilities, crf)

        return relation_labels(image, seeds, settings.low_alpha, settings.high_alpha, probability_crf)

    def build_model(self, settings: PSASettings, weights: WeightsCatalog) -> AffinityNet:
        return build_affinity_net(settings, weights)

    def training_task(self, settings: PSASettings) -> PSATrainingTask:
        return PSATrainingTask(settings)

    def parameter_groups(self, model: nn.Module, base_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return model.parameter_groups(base_lr, weight_decay)  # type: ignore[operator]

    def pseudo_mask(self, model: nn.Module, image: torch.Tensor, seeds: RefinementSeeds,
                    settings: PSASettings) -> np.ndarray:
        affinity = feature_affinity(model, image, settings)  # type: ignore[arg-type]
        return semantic_mask(affinity, seeds, settings)
