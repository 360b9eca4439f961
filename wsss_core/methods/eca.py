"""ECA (Wu et al., ACM MM 2024, "DINO is Also a Semantic Guider: Exploiting Class-aware Affinity for WSSS"):
AFA plus DINO-guided class-aware affinity (SAE) and CAM correspondence enhancement (CCE).

There is no public code: the paper is implemented as written and each detail it leaves open is a config
value whose default is listed below (see also ``single_stage/class_aware_affinity.py``).

Network (``ECANetwork``): AFA's (MiT-B1 stride-16 encoder, GMP classifier / CAM, SegFormer decoder,
affinity-from-attention head) plus a **frozen DINO** (timm ``vit_small_patch8_224.dino`` from a local
file; eval mode, no gradient, in the checkpoint so inference needs no extra file) and the momentum
prototypes (buffers). ``segment`` and ``infer_seeds`` are AFA's (MiT + heads); DINO and the
prototypes serve training and the exported CARM pseudo-labels (``infer_pseudo_labels``: the multi-scale
CAM of the whole image, resized to sides divisible by the DINO patch, its calibrated CARM with the
prototypes read but not updated, PAR, no ignore band — the store behind ``refine: own``).

Loss (Eq. 12) = L_cls + λ1·(L_seg + L̃_seg) + λ2·L_corr + λ3·L_aff, (λ1, λ2, λ3) = (0.1, 0.1, 0.1) VOC,
(0.1, 0.05, 0.1) COCO; only L_cls during the ``losses.schedule.cam_iters`` warm-up ("2k iterations warmed up
for the classifiers"; COCO 5000 as in AFA's COCO config, an assumption). After it, per step:

1. multi-scale (1.0, 0.5, 1.5) + flip CAMs of the crop (AFA), no grad;
2. the **CAM label** (``losses.cam_label.rule``): ``par_dual_threshold`` (default) = AFA's PAR-refined label with
   high 0.55 / low 0.35; ``background_threshold`` = the single hard threshold α = ``losses.thresholds.background``
   (0.5, the paper's α) without ignore band, the other reading of §3.1. L_seg = balanced CE against it;
3. SAE on the DINO grid (DINO sees the same normalised crop as the MiT; the CAM is resized bilinearly
   to its grid; tokens outside the crop's valid box are never seeds and are 0 in the CARM): seeds
   (k = ``losses.seed_selection.fraction`` 0.3 VOC / 0.15 COCO), graph (γ = ``losses.graph.threshold`` 0.15), CARM,
   calibration with the prototypes (τ = ``losses.prototypes.momentum`` 0.99; features = MiT stage 4 resized to
   the DINO grid; then updated), CARM label (PAR, ``losses.carm_label.uncertain_margin`` 0: no ignore band).
   L̃_seg = balanced CE against it, on the same decoder output as L_seg;
4. L_aff: AFA's affinity-from-attention loss with pair labels of the **CARM** label (Table 4 footnote;
   ``losses.affinity.label_source: cam`` for AFA's), radius 8;
5. CCE: ``losses.correspondence.num_views`` (2) local views of ``losses.correspondence.view_size`` (256) px cut from
   independently re-augmented copies of the crop (colour jitter 0.4/0.4/0.2/0.1 with p 0.8, hflip p 0.5),
   centred on a random foreground pixel of the CAM label (uniform if none). Their stage-4 CAM logits
   (with gradient) give p_i = softmax over the C classes; the CAM label cropped to the view, reduced to
   its token grid by majority vote ignoring 255 (``label_downsample: nearest`` for the plain variant)
   and flipped with the view, defines positive (same label) and negative pairs (255 and the diagonal
   ignored). D = JS(p_i ‖ p_j) / ln 2 ∈ [0, 1] and per view L = mean_{R+} D + mean_{R−} (1 − D),
   averaged over views and images.

⚠ Eq. 11 as printed puts (1 − D) on positive and D on negative pairs, which with a divergence D would
*separate* positive pairs, against the text ("maximising the similarity of positive pairs"). We treat it
as a typo (default ``losses.correspondence.sign: corrected``); ``sign: printed`` reproduces the printed formula.

Other defaults: AFA's affinity propagation is off (``losses.propagation.after: null``; the paper describes only
PAR); PAR, thresholds 0.55/0.35, radius 8, optimiser (AdamW 6e-5 poly, heads 10×, norms frozen, 1500-step
warm-up) follow AFA as the paper says; VOC 18k iterations, batch 8, crop 512.

Synthetic preset: a tiny from-scratch MiT (``mit_synth``) and a **random-init frozen** ViT (``vit_synth``)
in place of DINO. Random keys still carry the input's colour/position statistics but none of DINO's
learned grouping, so the CARM, and hence L̃_seg and L_aff, are much weaker there than with real DINO
weights (measured: even with the ground-truth masks as CAM, CARM labels from a random ``vit_synth`` reach
only ≈25% mIoU on synthetic train images): synthetic numbers test the plumbing, not ECA's gain over AFA.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator
import torch
import torch.nn.functional as F
from torch import nn

from wsss_core.settings import NonNegativeFloat, PositiveInt, Probability, Settings, Step
from wsss_core.data.transforms import color_jitter_tensor, denormalize, normalize, to_tensor
from wsss_core.errors import ConfigError
from wsss_core.losses.afa import attention_affinity_loss
from wsss_core.losses.eca import correspondence_loss
from wsss_core.methods.afa import (
    AFA,
    AFAAffinity,
    AFALosses,
    AFALossWeights,
    AFAModel,
    AFAPropagation,
    AFASettings,
    AFANetwork,
    attention_affinity_labels,
    bilinear,
)
from wsss_core.methods.base import METHODS
from wsss_core.training.progress import TrainingProgress
from wsss_core.models.mix_transformer import MixTransformer
from wsss_core.models.weights import WeightsCatalog
from wsss_core.single_stage.cams import multi_scale_cams
from wsss_core.single_stage.class_aware_affinity import (
    FrozenDinoKeys,
    MomentumPrototypes,
    background_cam,
    carm_pseudo_labels,
    class_aware_region_maps,
    foreground_cue,
    key_affinity,
    minmax_maps,
    select_seeds,
)
from wsss_core.losses.single_stage import balanced_segmentation_loss
from wsss_core.single_stage.pseudo_labels import (
    IGNORE_INDEX,
    affinity_labels,
    box_mask,
    cams_to_labels,
    label_masked_cams,
    token_box_mask,
)


# ---------------------------------------------------------------------------------------- CCE
def downsample_label(
    label: torch.Tensor, grid: tuple[int, int], num_labels: int, mode: str = "majority"
) -> torch.Tensor:
    """A pixel label ``[B, H, W]`` (0..num_labels−1, 255) on a token grid: ``majority`` vote per cell
    ignoring 255 (255 when a cell has no valid pixel), or ``nearest`` sampling."""
    if mode == "nearest":
        return F.interpolate(label[:, None].float(), size=grid, mode="nearest")[:, 0].long()
    if mode != "majority":
        raise ValueError(f"label_downsample must be 'majority' or 'nearest', not {mode!r}")
    valid = label != IGNORE_INDEX
    one_hot = F.one_hot(label.masked_fill(~valid, 0).long(), num_labels).permute(0, 3, 1, 2).float()
    one_hot = one_hot * valid[:, None].float()
    votes = F.adaptive_avg_pool2d(one_hot, grid)
    winner = votes.argmax(dim=1)
    return torch.where(votes.sum(dim=1) > 0, winner, torch.full_like(winner, IGNORE_INDEX))


def sample_view_corners(
    label: torch.Tensor, view_size: int, num_views: int, centre: str = "foreground"
) -> torch.Tensor:
    """Top-left corners ``[B, V, 2]`` of ``num_views`` square views per label ``[B, H, W]``, centred on
    a random foreground pixel (label 1..254; uniform when none or ``centre == "uniform"``), clipped
    to the crop. Uses torch's global generator (checkpointed by the training loop)."""
    batch, height, width = label.shape
    if view_size > min(height, width):
        raise ConfigError(
            f"method.losses.correspondence.view_size = {view_size} exceeds the {height}x{width} crop (method.train.crop_size)"
        )
    corners = torch.zeros(batch, num_views, 2, dtype=torch.long)
    for index in range(batch):
        foreground = torch.nonzero((label[index] > 0) & (label[index] != IGNORE_INDEX)).cpu()
        for view in range(num_views):
            if centre == "foreground" and foreground.shape[0]:
                cy, cx = foreground[int(torch.randint(foreground.shape[0], (1,)))].tolist()
            else:
                cy, cx = int(torch.randint(height, (1,))), int(torch.randint(width, (1,)))
            corners[index, view, 0] = min(max(cy - view_size // 2, 0), height - view_size)
            corners[index, view, 1] = min(max(cx - view_size // 2, 0), width - view_size)
    return corners


# ------------------------------------------------------------------------------------ network
class ECANetwork(AFANetwork):
    """AFA's network + a frozen DINO guide + momentum prototypes on the stage-4 width. DINO's parameters
    do not require gradients, so ``parameter_groups`` (AFA's) never hands them to the optimiser."""

    def __init__(
        self, encoder: MixTransformer, dino: nn.Module, num_classes: int, embedding_dim: int = 256,
        dropout: float = 0.1, affinity_blocks: int = 2, prototype_momentum: float = 0.99,
    ) -> None:
        super().__init__(encoder, num_classes, embedding_dim, dropout, affinity_blocks)
        self.dino = FrozenDinoKeys(dino)
        self.prototypes = MomentumPrototypes(num_classes, encoder.embed_dims[-1], prototype_momentum)


# ------------------------------------------------------------------------------------- method
# ------------------------------------------------------------------------------------ settings
class ECADino(Settings):
    backbone: str = "dino_vit_small8"
    weights: str | None = "dino_vit_small8"
    backbone_args: dict[str, Any] = {}


class ECAAffinity(AFAAffinity):
    label_source: Literal["carm", "cam"] = "carm"  # cam = AFA's


class ECAPropagation(AFAPropagation):
    after: Step | None = None


class ECASeedSelection(Settings):
    fraction: Annotated[float, Field(gt=0, le=1)] = 0.3
    fallback_top1: bool = True


class ECAGraph(Settings):
    threshold: float = 0.15
    clamp_foreground_cue: bool = False


class ECAPrototypes(Settings):
    momentum: Probability = 0.99
    calibrate: bool = True


class ECACarmLabel(Settings):
    uncertain_margin: NonNegativeFloat = 0.0


class ECACamLabel(Settings):
    rule: Literal["par_dual_threshold", "background_threshold"] = "par_dual_threshold"  # background_threshold: α = losses.thresholds.background


class ECACorrespondence(Settings):
    num_views: PositiveInt = 2
    view_size: PositiveInt = 256
    sign: Literal["corrected", "printed"] = "corrected"
    label_downsample: Literal["majority", "nearest"] = "majority"
    centre: Literal["foreground", "uniform"] = "foreground"
    jitter_probability: Probability = 0.8
    flip_probability: Probability = 0.5


class ECALossWeights(AFALossWeights):
    carm_segmentation: NonNegativeFloat = 0.1
    correspondence: NonNegativeFloat = 0.1


class ECAModel(AFAModel):
    """``methods.eca.params.model``: AFA's network + the frozen DINO guide."""

    dino: ECADino = ECADino()


class ECALosses(AFALosses):
    """``methods.eca.params.losses``: AFA's + the CAM and CARM labels (SAE: seeds, graph, prototypes)
    and the CAM correspondence (CCE)."""

    weights: ECALossWeights = ECALossWeights()
    cam_label: ECACamLabel = ECACamLabel()
    affinity: ECAAffinity = ECAAffinity()
    propagation: ECAPropagation = ECAPropagation()
    seed_selection: ECASeedSelection = ECASeedSelection()
    graph: ECAGraph = ECAGraph()
    prototypes: ECAPrototypes = ECAPrototypes()
    carm_label: ECACarmLabel = ECACarmLabel()
    correspondence: ECACorrespondence = ECACorrespondence()


class ECASettings(AFASettings):
    """``methods.eca.params``: AFA's sections with the DINO, CARM and correspondence keys."""

    model: ECAModel = ECAModel()
    losses: ECALosses = ECALosses()

    @model_validator(mode="after")
    def _views_fit_the_crop(self) -> "ECASettings":
        view_size, crop_size = self.losses.correspondence.view_size, self.train.crop_size
        if view_size > crop_size:
            raise ValueError(f"losses.correspondence.view_size ({view_size}) must not exceed "
                             f"train.crop_size ({crop_size}): the local views are cut from the crop")
        return self


@METHODS.register("eca")
class ECA(AFA):
    """ECA: AFA + class-aware affinity region maps from a frozen DINO + CAM correspondence."""

    settings_type = ECASettings

    name = "eca"
    pseudo_labels = "carm"
    loss_names = ("cls", "segmentation", "carm_segmentation", "correspondence", "affinity")

    def __init__(self, config: Mapping[str, Any], num_classes: int) -> None:
        super().__init__(config, num_classes)
        settings = self.settings
        losses = settings.losses
        self.dino_settings = settings.model.dino
        self.seed_fraction = losses.seed_selection.fraction
        self.seed_fallback = losses.seed_selection.fallback_top1
        self.graph_threshold = losses.graph.threshold
        self.clamp_cue = losses.graph.clamp_foreground_cue
        self.prototype_momentum = losses.prototypes.momentum
        self.calibrate = losses.prototypes.calibrate
        self.carm_margin = losses.carm_label.uncertain_margin
        self.cam_label_rule = losses.cam_label.rule
        self.affinity_source = losses.affinity.label_source
        cce = losses.correspondence
        self.num_views = cce.num_views
        self.view_size = cce.view_size
        self.correspondence_sign = cce.sign
        self.label_downsample = cce.label_downsample
        self.view_centre = cce.centre
        self.jitter_probability = cce.jitter_probability
        self.flip_probability = cce.flip_probability

    # ------------------------------------------------------------------------------- network
    def build_model(self, weights: WeightsCatalog) -> nn.Module:
        from wsss_core.models.backbones import create_backbone

        dino_settings = self.dino_settings
        args = {"dynamic_img_size": True, **dict(dino_settings.backbone_args)}
        dino = create_backbone(dino_settings.backbone, weights.get(dino_settings.weights), **args)
        return self.network_from_encoders(self.build_encoder(weights), dino)

    def network_from_encoders(self, encoder: MixTransformer, dino: nn.Module) -> ECANetwork:
        """The network around an already built MiT and ViT (used by ``build_model`` and the tests)."""
        patch = int(dino.patch_embed.patch_size[0])
        if self.crop_size % patch:
            raise ConfigError(f"method.train.crop_size = {self.crop_size} must be a multiple of the DINO patch size {patch}")
        decoder = self.settings.model.decoder
        return ECANetwork(
            encoder, dino, self.num_classes, decoder.embedding_dim, decoder.dropout,
            self.affinity_blocks, self.prototype_momentum,
        )

    # ---------------------------------------------------------------------------------- data
    def training_sample(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
        """AFA's sample plus ``num_views`` re-augmented copies of the crop (``local_views``
        ``[V, 3, S, S]``, colour-jittered) and whether each view is to be flipped (``local_flips``);
        the views are cut in ``training_step`` where the CAM label is known."""
        crop, box = self.crop(image, rng)
        views, flips = [], []
        for _ in range(self.num_views):
            view = to_tensor(crop)
            if rng.random() < self.jitter_probability:
                view = color_jitter_tensor(view, rng)
            flips.append(bool(rng.random() < self.flip_probability))
            views.append(normalize(view.clamp(0.0, 1.0)))
        return {
            "image": normalize(to_tensor(crop)),
            "labels": torch.from_numpy(np.asarray(labels, dtype=np.float32)),
            "image_box": torch.from_numpy(box),
            "local_views": torch.stack(views),
            "local_flips": torch.tensor(flips),
        }

    # ------------------------------------------------------------------------------ training
    def cam_label(
        self, images: torch.Tensor, cams: torch.Tensor, labels: torch.Tensor, box: torch.Tensor
    ) -> torch.Tensor:
        if self.cam_label_rule == "par_dual_threshold":
            return super().cam_label(images, cams, labels, box)
        label = cams_to_labels(cams, labels, self.thresholds.background)
        label[~box_mask(box, *label.shape[-2:])] = IGNORE_INDEX
        return label

    @torch.no_grad()
    def class_aware_maps(
        self, model: ECANetwork, images: torch.Tensor, cams: torch.Tensor, labels: torch.Tensor, box: torch.Tensor,
        stage4: torch.Tensor, update_prototypes: bool = True,
    ) -> torch.Tensor:
        """SAE: calibrated CARM ``[B, C+1, h, w]`` on the DINO grid (prototypes updated afterwards in
        training; inference passes ``update_prototypes=False``)."""
        keys, query, grid = model.dino(images)
        batch = images.shape[0]
        valid = token_box_mask(box, grid, model.dino.patch_size).flatten(1)
        small = bilinear(label_masked_cams(cams, labels), grid).flatten(2)
        scores = torch.cat([background_cam(small), small], dim=1)
        present = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1) > 0
        seeds = select_seeds(scores, present, self.seed_fraction, valid, self.seed_fallback)
        cue = foreground_cue(query, keys)
        if self.clamp_cue:
            cue = cue.clamp_min(0.0)
        carm = torch.cat(
            [
                class_aware_region_maps(
                    key_affinity(keys[i : i + 1]), seeds[i : i + 1], cue[i : i + 1], self.graph_threshold
                )
                for i in range(batch)
            ]
        )
        carm = minmax_maps(carm, valid)
        if self.calibrate:
            features = F.interpolate(stage4.detach(), size=grid, mode="bilinear", align_corners=False).flatten(2)
            carm = model.prototypes.calibrate(carm, features, valid)
            if update_prototypes:
                model.prototypes.update(features, seeds)
        return carm.view(batch, -1, *grid)

    def correspondence(
        self, model: ECANetwork, batch: Mapping[str, Any], cam_label: torch.Tensor
    ) -> torch.Tensor:
        """CCE loss of the local views against the global CAM label."""
        views, flips = batch["local_views"], batch["local_flips"].bool()
        corners = sample_view_corners(cam_label, self.view_size, self.num_views, self.view_centre)
        size = self.view_size
        crops, targets = [], []
        for index in range(views.shape[0]):
            for view in range(self.num_views):
                top, left = corners[index, view].tolist()
                crop = views[index, view, :, top : top + size, left : left + size]
                target = cam_label[index, top : top + size, left : left + size]
                if bool(flips[index, view]):
                    crop, target = crop.flip(-1), target.flip(-1)
                crops.append(crop)
                targets.append(target)
        logits = model.classifier.cam(model(torch.stack(crops)).features[-1])
        token_label = downsample_label(
            torch.stack(targets), tuple(logits.shape[-2:]), self.num_classes + 1, self.label_downsample
        )
        return correspondence_loss(logits, affinity_labels(token_label), self.correspondence_sign)

    def training_step(
        self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]:
        images, labels, box = batch["image"], batch["labels"].float(), batch["image_box"]
        weights = self.active_loss_weights(progress.step)
        out = model(images)
        losses = {"cls": F.multilabel_soft_margin_loss(model.classifier(out.features[-1]), labels)}
        if progress.step <= self.cam_iters:
            zero = losses["cls"].detach() * 0.0
            losses.update({name: zero for name in weights if name != "cls"})
        else:
            (cams,) = multi_scale_cams(model.cam_maps, images, self.cam_scales)
            with torch.no_grad():
                label = self.cam_label(images, cams, labels, box)
                carm = self.class_aware_maps(model, images, cams, labels, box, out.features[-1])
                carm_label = carm_pseudo_labels(
                    self.par.to(images.device), denormalize(images), carm, labels, box, self.par_downscale,
                    self.carm_margin,
                )
            seg_logits = bilinear(model.decoder(out.features), images.shape[-2:])
            losses["segmentation"] = balanced_segmentation_loss(seg_logits, label)
            losses["carm_segmentation"] = balanced_segmentation_loss(seg_logits, carm_label)
            affinity_target = carm_label if self.affinity_source == "carm" else label
            pairs = attention_affinity_labels(affinity_target, tuple(out.features[-1].shape[-2:]), self.affinity_radius)
            losses["affinity"] = attention_affinity_loss(model.affinity(out), pairs)
            losses["correspondence"] = self.correspondence(model, batch, label)
        losses["loss"] = sum(weights[name] * losses[name] for name in weights)
        return losses

    # ----------------------------------------------------------------------------- inference
    @torch.no_grad()
    def infer_pseudo_labels(self, model: nn.Module, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """CARM pseudo-mask of one image: the multi-scale CAM and the frozen DINO's affinity give the
        calibrated CARM (prototypes read, not updated), refined by PAR; no ignore band. The image is
        resized to sides that are multiples of the DINO patch (the grid must tile it) and the mask back
        with nearest-neighbour interpolation."""
        height, width = image.shape[:2]
        patch = int(model.dino.patch_size)
        size = (max(patch, math.ceil(height / patch) * patch), max(patch, math.ceil(width / patch) * patch))
        x = bilinear(self._image_tensor(model, image), size)
        present = torch.as_tensor(np.asarray(labels) > 0, dtype=torch.float32, device=x.device)[None]
        (cams,) = multi_scale_cams(model.cam_maps, x, self.cam_scales)
        box = torch.tensor([[0, size[0], 0, size[1]]], device=x.device)
        carm = self.class_aware_maps(model, x, cams, present, box, model(x).features[-1], update_prototypes=False)
        label = carm_pseudo_labels(self.par.to(x.device), denormalize(x), carm, present, None, self.par_downscale)
        label = F.interpolate(label[None].float(), size=(height, width), mode="nearest")[0, 0]
        return label.cpu().numpy().astype(np.uint8)
