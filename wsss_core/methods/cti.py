"""CTI: Class Tokens Infusion for WSSS (Yoon et al., CVPR 2024), as the authors code it (yoon307/CTI).

A DeiT-S encoder (``MultiTokenViT``) runs over ``[C+1 class tokens ; patches]``: token 0 is the
background (BG) token, tokens 1..C the foreground classes. The tokens are made from the pretrained
[CLS] token by a "tokenizer" MLP (Linear(D→5D) → ReLU → Linear(5D→D·(C+1))); the [CLS] vector is added
to the foreground tokens and a zero-initialised BG token to token 0, then a learnable class position
embedding (the pretrained [CLS] position replicated C+1 times). A 3×3 conv head gives C+1 CAM channels
P; classification reads only the foreground: token logits = mean over D of each foreground class token
after the last block (no final norm), patch logits = spatial mean of P[1..C].

Training (one step = four forward passes: anchor, strong view, I-CTI, C-CTI):

* L_cls: multilabel soft margin on token and patch logits of both views.
* L_bcam (Eq. 1, λ = 0.1): X = A_cp ⊙ ReLU(P) with A_cp summed over the last half of the blocks; the
  present-class max of X and the BG channel X_0 are refined by A_pp (blocks after the infusion layer),
  min-max normalised, and ``|1 − N(fg) − N(bg)|`` is averaged.
* I-CTI (Eq. 2–4): the strong view's C+1 class tokens output by block L1 (= 3), *not* detached, are
  averaged into the anchor's at the input of block L1+1 of a third pass; ``|N(ReLU P) − N(ReLU P̃)|``
  over all C+1 channels.
* C-CTI (Eq. 5–7): a per-class FIFO memory (30 per class) of LayerNorm'ed anchor class tokens of block
  L1 (detached; the current batch is stored first). Present classes get their memory mean, absent
  classes the anchor's own token (detached), averaged into a fourth pass at block L1+1 (BG untouched);
  ``|N(ReLU P) − N(A_cp' ⊙ ReLU P̂)|`` on foreground channels, A_cp' over the blocks after L1. The term
  counts only once every class's memory is full.
* The auxiliary losses (L_bcam, I-CTI, C-CTI, and the memory updates) start when
  ``epoch > losses.aux_warmup_epoch`` (VOC −1: from the start; COCO 1: from the third epoch).

Paper vs code (the code is the default; switches where it matters):

* L1 = 3 is the output of block index 3 (0-based), infused at the input of block 4 (``infusion_layer``).
* The paper samples a weak-positive image sharing a class and infuses one shared class (Eq. 6); the code
  infuses the memory mean of *every* present class. ``losses.ccti.classes``: ``present`` (code) or
  ``one_present`` (paper: one present class drawn per image).
* L_bcam on COCO detaches ReLU(P) in the foreground product (``losses.bcam.detach_cams``).
* All L1 terms are means, not the paper's channel sums; the paper's Adam lr 5e-4 is the code's AdamW
  5e-4·64/512 = 6.25e-5 with weight decay 0.05 and a timm cosine schedule with 5 warm-up epochs.
* The code runs the C-CTI pass even while the memory is not full and then drops the term; here the pass
  is skipped (identical losses and gradients; only drop-path random draws differ).
* The BG token gets no classification *loss* (no logit reads it), but as a key/value in attention it
  still receives gradient from L_cls through the foreground tokens, as in the code.

Seeds (``infer_seeds``): native resolution, single scale + flip, M = A_pp(all) · (A_cp(all) ⊙ ReLU(P)),
bilinear upsampling, absent classes zeroed, sum with the flip, per-channel min-max; only the present
foreground classes are stored (the BG channel is not; the background threshold is swept at evaluation).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import AfterValidator
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import nn

from wsss_core.settings import NonNegativeFloat, NonNegativeInt, Pair, PositiveFloat, PositiveInt, Probability, Settings
from wsss_core.data.deit_augmentation import DeitAugmentation
from wsss_core.data.transforms import normalize_to_tensor
from wsss_core.errors import ConfigError
from wsss_core.losses.cti import background_cam_loss, cam_consistency_loss, minmax_normalize
from wsss_core.methods.base import METHODS, Method
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.training.progress import TrainingProgress
from wsss_core.models.backbones import create_backbone
from wsss_core.models.multi_token_vit import (
    ClassTokenHook,
    MultiTokenViT,
    class_to_patch_attention,
    patch_to_patch_attention,
    refine_with_patch_attention,
)
from wsss_core.models.weights import WeightsCatalog
from wsss_core.training.distributed import gather_tensor

CCTI_CLASS_CHOICES = ("present", "one_present")


# ------------------------------------------------------------------------------------- settings
def resolve_blocks(spec: str | Sequence[int], depth: int, infusion_layer: int, key: str) -> tuple[int, ...]:
    """Block indices (0-based) of a layer set, relative to the encoder depth so that shallow test
    encoders work: ``all``, ``last_half`` (the last depth//2 blocks), ``after_infusion`` (blocks
    infusion_layer+1 .. depth−1), ``last:N``, ``from:N``, or an explicit list of indices."""
    if isinstance(spec, str):
        name, _, number = spec.partition(":")
        if name == "all" and not number:
            blocks = range(depth)
        elif name == "last_half" and not number:
            blocks = range(depth - depth // 2, depth)
        elif name == "after_infusion" and not number:
            blocks = range(infusion_layer + 1, depth)
        elif name in ("last", "from") and number.isdigit():
            count = int(number)
            blocks = range(depth - count, depth) if name == "last" else range(count, depth)
        else:
            raise ConfigError(
                f"{key}: '{spec}' is not a layer set; use all, last_half, after_infusion, last:N, from:N "
                "or a list of block indices"
            )
    else:
        blocks = [int(index) for index in spec]
    chosen = tuple(blocks)
    if not chosen or any(not 0 <= index < depth for index in chosen):
        raise ConfigError(f"{key}: {spec!r} selects blocks {list(chosen)}, not within the encoder's {depth} blocks")
    return chosen


# ------------------------------------------------------------------------------------ typed block
BLOCK_NAMES = ("all", "last_half", "after_infusion")
BLOCK_COUNTS = re.compile(r"(last|from):[0-9]+")


def _layer_set(spec: str | list[int]) -> str | list[int]:
    """A layer set as :func:`resolve_blocks` reads it (whether it fits the encoder's depth is checked
    when the network is built)."""
    if isinstance(spec, str) and spec not in BLOCK_NAMES and not BLOCK_COUNTS.fullmatch(spec):
        raise ValueError("must be all, last_half, after_infusion, last:N, from:N or a list of block indices")
    return spec


BlockChoice = Annotated[str | list[int], AfterValidator(_layer_set)]


def _ordered_pair(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if not 0 < low <= high:
        raise ValueError("must satisfy 0 < low ≤ high")
    return value


OrderedPair = Annotated[Pair, AfterValidator(_ordered_pair)]


def _rand_augment(value: str | None) -> str | None:
    if value and not value.startswith("rand"):
        raise ValueError("must be a timm RandAugment string (e.g. rand-m9-mstd0.5-inc1), or null for none")
    return value


class CTIBlocks(Settings):
    train_class_patch: BlockChoice = "last_half"  # A_cp of L_bcam (DeiT-S: blocks 6..11)
    train_patch_patch: BlockChoice = "after_infusion"  # A_pp of L_bcam (blocks 4..11)
    ccti_class_patch: BlockChoice = "after_infusion"  # A_cp of the C-CTI pass (blocks 4..11)
    seed_class_patch: BlockChoice = "all"
    seed_patch_patch: BlockChoice = "all"


class CTIModel(Settings):
    backbone: str
    weights: str | None = None
    drop_path: Probability = 0.1
    tokenizer_expansion: PositiveInt = 5
    infusion_layer: NonNegativeInt = 3  # L1: output of block 3 (0-based) infused at the input of block 4
    blocks: CTIBlocks = CTIBlocks()


class CTIWeightedLoss(Settings):
    enabled: bool = True
    weight: NonNegativeFloat = 1.0


class CTIBCAMLoss(CTIWeightedLoss):
    weight: NonNegativeFloat = 0.1
    detach_cams: bool = False


class CTICCTILoss(CTIWeightedLoss):
    memory_size: PositiveInt = 30
    classes: Literal[CCTI_CLASS_CHOICES] = "present"  # type: ignore[valid-type]  # one_present = the paper's Eq. 6


class CTILosses(Settings):
    aux_warmup_epoch: int = -1  # auxiliary losses and memory updates when epoch > this (0-based)
    bcam: CTIBCAMLoss = CTIBCAMLoss()
    icti: CTIWeightedLoss = CTIWeightedLoss()
    ccti: CTICCTILoss = CTICCTILoss()


class CTITrain(Settings):
    epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat
    weight_decay: NonNegativeFloat = 0.05
    min_lr: NonNegativeFloat = 1e-5
    warmup_epochs: NonNegativeInt = 5
    warmup_lr: NonNegativeFloat = 1e-6
    crop_size: PositiveInt
    scale: OrderedPair = (0.3, 1.2)
    ratio: OrderedPair = (3 / 4, 4 / 3)
    rand_augment: Annotated[str | None, AfterValidator(_rand_augment)] = "rand-m9-mstd0.5-inc1"  # strong view only; null = none


class CTISeeds(Settings):
    flip: bool = True


class CTIParams(Settings):
    """``methods.cti.params`` (checked when the workflow is parsed; the code reads it as ``self.settings``)."""

    model: CTIModel
    losses: CTILosses = CTILosses()
    train: CTITrain
    seeds: CTISeeds = CTISeeds()


@dataclass(frozen=True)
class BlockSets:
    """The layer sets of the attention maps, resolved for one encoder depth."""

    train_class_patch: tuple[int, ...]  # A_cp of L_bcam (code: last 6 of 12)
    train_patch_patch: tuple[int, ...]  # A_pp of L_bcam (code: blocks 4..11)
    ccti_class_patch: tuple[int, ...]  # A_cp of the C-CTI pass (code: blocks 4..11)
    seed_class_patch: tuple[int, ...]  # A_cp of the seeds (all)
    seed_patch_patch: tuple[int, ...]  # A_pp of the seeds (all)

    @classmethod
    def from_settings(cls, blocks: CTIBlocks, depth: int, infusion_layer: int) -> "BlockSets":
        return cls(**{
            name: resolve_blocks(getattr(blocks, name), depth, infusion_layer, f"method.model.blocks.{name}")
            for name in CTIBlocks.model_fields
        })


# ------------------------------------------------------------------------------- token memory
class ClassTokenMemory(nn.Module):
    """Per-class FIFO of LayerNorm'ed class tokens for C-CTI, as module buffers (checkpointed).

    Each class keeps its ``size`` most recent tokens in a ring buffer; ``means()`` is the average of
    the stored tokens (zero for a class with none) and ``is_full()`` holds once every class has
    ``size`` tokens, the gate of the C-CTI term.
    """

    def __init__(self, num_classes: int, size: int, dim: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("tokens", torch.zeros(num_classes, size, dim))
        self.register_buffer("counts", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("next_slot", torch.zeros(num_classes, dtype=torch.long))

    @torch.no_grad()
    def update(self, class_tokens: torch.Tensor, labels: torch.Tensor) -> None:
        """Append ``LayerNorm(class_tokens[b, c])`` (no affine) for every present (b, c), in batch
        order, keeping the last ``size`` per class. ``class_tokens [B, C, D]``, ``labels [B, C]``."""
        present = labels > 0
        normalized = F.layer_norm(class_tokens.detach().float(), class_tokens.shape[-1:])
        image_index, class_index = present.nonzero(as_tuple=True)  # row-major: image by image
        if class_index.numel() == 0:
            return
        new_per_class = present.sum(dim=0)  # [C]
        # rank of each entry among the new entries of its class, in arrival order
        rank = (present.long().cumsum(dim=0) - 1)[image_index, class_index]
        keep = rank >= new_per_class[class_index] - self.size  # older ones would be overwritten anyway
        image_index, class_index, rank = image_index[keep], class_index[keep], rank[keep]
        slots = (self.next_slot[class_index] + rank) % self.size
        self.tokens[class_index, slots] = normalized[image_index, class_index].to(self.tokens.dtype)
        self.next_slot.copy_((self.next_slot + new_per_class) % self.size)
        self.counts.copy_(torch.clamp(self.counts + new_per_class, max=self.size))

    def means(self) -> torch.Tensor:
        """``[C, D]`` mean of each class's stored tokens; zeros for an empty class."""
        slot = torch.arange(self.size, device=self.tokens.device)
        filled = (slot[None, :] < self.counts[:, None]).to(self.tokens.dtype)  # the first `count` slots
        total = (self.tokens * filled[..., None]).sum(dim=1)
        return total / self.counts.clamp(min=1)[:, None].to(self.tokens.dtype)

    def num_full(self) -> int:
        return int((self.counts >= self.size).sum())

    def is_full(self) -> bool:
        return self.num_full() == self.counts.numel()


# ---------------------------------------------------------------------------- infusion (Eq. 3, 6)
def intra_image_infusion(anchor_tokens: torch.Tensor, positive_tokens: torch.Tensor) -> torch.Tensor:
    """Eq. 3 for every class and the BG token: ``(T(c) + Ṫ(c)) / 2``; the positive view's tokens stay
    attached to the graph, as coded."""
    return (anchor_tokens + positive_tokens) / 2


def cross_image_infusion(
    tokens: torch.Tensor,
    own_tokens: torch.Tensor,
    memory_tokens: torch.Tensor,
    selected: torch.Tensor,
) -> torch.Tensor:
    """Eq. 6 as coded: foreground token c becomes ``(T(c) + S(c)) / 2`` with S(c) = memory mean for
    selected classes and the anchor's own (detached) token otherwise; the BG token is untouched.

    ``tokens [B, C+1, D]`` (this pass), ``own_tokens [B, C, D]`` (anchor pass, block L1),
    ``memory_tokens [C, D]``, ``selected [B, C]`` (bool or 0/1).
    """
    mask = selected.to(tokens.dtype)[..., None]
    infused = (own_tokens * (1 - mask) + memory_tokens[None] * mask).detach()
    return torch.cat([tokens[:, :1], (tokens[:, 1:] + infused) / 2], dim=1)


def choose_infused_classes(labels: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Classes that C-CTI infuses per image: every present class (``present``, the code) or one present
    class drawn uniformly (``one_present``, the paper's Eq. 6). ``labels [B, C]`` → bool ``[B, C]``."""
    present = labels > 0
    if mode == "present":
        return present
    chosen = torch.zeros_like(present)
    rows = present.any(dim=1).nonzero(as_tuple=True)[0]
    if rows.numel():
        picks = torch.multinomial(present[rows].float(), 1, generator=generator).squeeze(1)
        chosen[rows, picks] = True
    return chosen


# ------------------------------------------------------------------------------------ network
class CTIForward(NamedTuple):
    """One forward pass of :class:`CTINetwork`."""

    class_logits: torch.Tensor  # [B, C] mean over D of the foreground class tokens after the last block
    patch_logits: torch.Tensor  # [B, C] spatial mean of P[1..C]
    cams: torch.Tensor  # [B, C+1, h, w] ReLU(P); channel 0 is the background
    attentions: tuple[torch.Tensor, ...]  # L × [B, heads, N, N]
    class_tokens_per_block: tuple[torch.Tensor, ...]  # L × [B, C+1, D]


class CTINetwork(nn.Module):
    """MultiTokenViT with CTI's tokenizer, BG token, class position embedding, conv CAM head and memory."""

    def __init__(
        self, encoder: MultiTokenViT, num_classes: int, memory_size: int, tokenizer_expansion: int = 5
    ) -> None:
        super().__init__()
        dim = encoder.embed_dim
        self.num_classes = num_classes
        self.num_tokens = num_classes + 1
        self.encoder = encoder
        # Learnable copies of the pretrained [CLS] token and its position (the encoder's are frozen buffers).
        self.cls_token = nn.Parameter(encoder.cls_token.detach().clone())
        self.background_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.class_pos_embed = nn.Parameter(encoder.cls_pos_embed.detach().clone().repeat(1, self.num_tokens, 1))
        self.tokenizer = nn.Sequential(
            nn.Linear(dim, tokenizer_expansion * dim),
            nn.ReLU(),
            nn.Linear(tokenizer_expansion * dim, dim * self.num_tokens),
        )
        self.head = nn.Conv2d(dim, self.num_tokens, kernel_size=3, padding=1)
        self.memory = ClassTokenMemory(num_classes, memory_size, dim)
        self.layer_sets: BlockSets | None = None  # set by the method once the depth is known

    def no_weight_decay(self) -> set[str]:
        """Kept out of AdamW's decay besides 1-D tensors: only the [CLS] token, as in the authors' model
        (their class/patch position embeddings and BG token are 3-D and do get decay)."""
        return {"cls_token"}

    def class_tokens(self) -> torch.Tensor:
        """``[1, C+1, D]`` input class tokens: tokenizer(CLS), + CLS on 1..C, + BG token on 0, + positions."""
        dim = self.cls_token.shape[-1]
        tokens = self.tokenizer(self.cls_token.reshape(1, dim)).reshape(1, self.num_tokens, dim)
        offsets = torch.cat([self.background_token, self.cls_token.expand(1, self.num_classes, dim)], dim=1)
        return tokens + offsets + self.class_pos_embed

    def forward(
        self,
        images: torch.Tensor,
        block_hooks: Mapping[int, ClassTokenHook] | None = None,
        need_attentions: bool = True,
    ) -> CTIForward:
        """One pass; ``block_hooks[l]`` replaces the class tokens right before block ``l`` (infusion).
        Passes that use no attention map (the strong view, I-CTI) set ``need_attentions=False`` and run
        fused attention: same tokens, less memory and time."""
        encoded = self.encoder(images, self.class_tokens(), block_hooks=block_hooks, need_attentions=need_attentions)
        logits_map = self.head(encoded.patch_tokens)
        return CTIForward(
            class_logits=encoded.class_tokens[:, 1:].mean(dim=-1),
            patch_logits=logits_map[:, 1:].mean(dim=(2, 3)),
            cams=torch.relu(logits_map),
            attentions=encoded.attentions,
            class_tokens_per_block=encoded.class_tokens_per_block,
        )

    def class_patch_map(self, output: CTIForward, blocks: Sequence[int]) -> torch.Tensor:
        """A_cp ``[B, C+1, h, w]`` summed over ``blocks``."""
        attention = class_to_patch_attention(output.attentions, self.num_tokens, blocks)
        return attention.reshape(output.cams.shape)

    def patch_attention(self, output: CTIForward, blocks: Sequence[int]) -> torch.Tensor:
        """A_pp ``[B, hw, hw]`` summed over ``blocks``."""
        return patch_to_patch_attention(output.attentions, self.num_tokens, blocks)

    def seed_cams(
        self, images: torch.Tensor, class_patch_blocks: Sequence[int], patch_blocks: Sequence[int]
    ) -> torch.Tensor:
        """M = A_pp · (A_cp ⊙ ReLU(P)) at patch resolution, ``[B, C+1, h, w]``."""
        output = self(images)
        attended = self.class_patch_map(output, class_patch_blocks) * output.cams
        return refine_with_patch_attention(attended, self.patch_attention(output, patch_blocks))


# ------------------------------------------------------------------------------------- method
@METHODS.register("cti")
class CTI(Method):
    """Class-token infusion with a background token (seeds for refinement + DeepLab)."""

    settings_type = CTIParams

    name = "cti"
    seed_normalization = "minmax"

    def __init__(self, config: Mapping[str, Any], num_classes: int) -> None:
        super().__init__(config, num_classes)
        train = self.settings.train
        rand_augment = train.rand_augment or None
        # Two independent crops of the same image (cti_multistage.md §2.6): the anchor (weak) view has
        # crop + flip only, the positive (strong) view adds RandAugment; no random erasing in either.
        view = dict(crop_size=train.crop_size, scale=train.scale, ratio=train.ratio, flip=True, random_erasing=0.0)
        self.weak_view = DeitAugmentation(**view, rand_augment=None)
        self.strong_view = DeitAugmentation(**view, rand_augment=rand_augment)

    # ----------------------------------------------------------------------------------- network
    def build_model(self, weights: WeightsCatalog) -> CTINetwork:
        model = self.settings.model
        vit = create_backbone(model.backbone, weights.get(model.weights), drop_path_rate=model.drop_path)
        encoder = MultiTokenViT(vit)
        if model.infusion_layer >= encoder.depth - 1:
            raise ConfigError(
                f"method.model.infusion_layer is {model.infusion_layer} but {model.backbone} has "
                f"{encoder.depth} blocks: infuse at most after block {encoder.depth - 2}"
            )
        network = CTINetwork(encoder, self.num_classes, self.settings.losses.ccti.memory_size, model.tokenizer_expansion)
        network.layer_sets = BlockSets.from_settings(model.blocks, encoder.depth, model.infusion_layer)
        return network

    # -------------------------------------------------------------------------------------- data
    def training_sample(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
        weak = self.weak_view(image, rng)
        strong = self.strong_view(image, rng)
        return {"image": weak, "image_strong": strong, "labels": torch.as_tensor(labels, dtype=torch.float32)}

    # ------------------------------------------------------------------------------ optimisation
    def build_optimizer(self, model: nn.Module, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, Any]:
        """AdamW, eps 1e-8, timm's decay filter (none on 1-D tensors and the [CLS] token, as in the
        authors' DeiT model), and timm's cosine schedule stepped per epoch (``step(epoch + 1)`` after
        each epoch, as the authors) with a linear warm-up from ``warmup_lr``."""
        settings = self.settings.train
        optimizer = create_optimizer_v2(
            model, opt="adamw", lr=settings.lr, weight_decay=settings.weight_decay, eps=1e-8
        )
        epochs = max(math.ceil(self.total_steps(steps_per_epoch) / steps_per_epoch), 1)
        scheduler = CosineLRScheduler(
            optimizer,
            t_initial=epochs,
            lr_min=settings.min_lr,
            warmup_t=settings.warmup_epochs,
            warmup_lr_init=settings.warmup_lr,
            t_in_epochs=True,
        )
        return optimizer, scheduler

    def training_step(
        self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]:
        network: CTINetwork = model  # type: ignore[assignment]
        settings, blocks = self.settings.losses, _layer_sets(network)
        images, labels = batch["image"], batch["labels"].float()
        anchor = network(images)
        positive = network(batch["image_strong"], need_attentions=False)
        loss_cls = sum(
            F.multilabel_soft_margin_loss(logits, labels)
            for logits in (anchor.class_logits, anchor.patch_logits, positive.class_logits, positive.patch_logits)
        )
        zero = loss_cls.new_zeros(())
        losses = {"cls": loss_cls, "bcam": zero, "icti": zero, "ccti": zero}
        total = loss_cls
        auxiliary = progress.epoch > settings.aux_warmup_epoch
        layer = self.settings.model.infusion_layer

        if settings.bcam.enabled and auxiliary:
            class_patch = network.class_patch_map(anchor, blocks.train_class_patch)
            foreground_cams = anchor.cams[:, 1:].detach() if settings.bcam.detach_cams else anchor.cams[:, 1:]
            attended = class_patch * torch.cat([anchor.cams[:, :1], foreground_cams], dim=1)
            patch_attention = network.patch_attention(anchor, blocks.train_patch_patch)
            losses["bcam"] = settings.bcam.weight * background_cam_loss(attended, patch_attention, labels)
            total = total + losses["bcam"]

        if settings.icti.enabled and auxiliary:
            positive_tokens = positive.class_tokens_per_block[layer]  # not detached, as coded
            infused = network(
                images,
                block_hooks={layer + 1: lambda tokens: intra_image_infusion(tokens, positive_tokens)},
                need_attentions=False,
            )
            losses["icti"] = settings.icti.weight * cam_consistency_loss(anchor.cams, infused.cams)
            total = total + losses["icti"]

        if settings.ccti.enabled and auxiliary:
            own_tokens = anchor.class_tokens_per_block[layer][:, 1:].detach()
            # under several processes every rank stores the whole global batch, as one process would
            network.memory.update(gather_tensor(own_tokens), gather_tensor(labels))
            if network.memory.is_full():
                memory_tokens = network.memory.means()
                selected = choose_infused_classes(labels, settings.ccti.classes)
                infused = network(images, block_hooks={
                    layer + 1: lambda tokens: cross_image_infusion(tokens, own_tokens, memory_tokens, selected)
                })
                attended = network.class_patch_map(infused, blocks.ccti_class_patch) * infused.cams
                losses["ccti"] = settings.ccti.weight * cam_consistency_loss(anchor.cams[:, 1:], attended[:, 1:])
                total = total + losses["ccti"]
        losses["memory_full_classes"] = loss_cls.new_tensor(float(network.memory.num_full()))
        losses["loss"] = total
        return losses

    # --------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def class_scores(self, model: nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
        """The class-token and the patch-CAM logits of one pass without infusion (what L_cls trains)."""
        model.eval()
        images = normalize_to_tensor(image)[None].to(next(model.parameters()).device)
        output = model(images, need_attentions=False)
        return {"token": output.class_logits[0].float().cpu().numpy(),
                "patch": output.patch_logits[0].float().cpu().numpy()}

    @torch.no_grad()
    def infer_seeds(self, model: nn.Module, image: np.ndarray, labels: np.ndarray) -> SeedMaps:
        """Seeds at native resolution, single scale + flip (cti_multistage.md §3.1)."""
        network: CTINetwork = model  # type: ignore[assignment]
        blocks = _layer_sets(network)
        network.eval()
        height, width = image.shape[:2]
        present = np.flatnonzero(np.asarray(labels) > 0.5)
        if present.size == 0:
            return SeedMaps(np.zeros((0, height, width), np.float32), np.zeros(0, np.int64))
        device = next(network.parameters()).device
        images = normalize_to_tensor(image)[None].to(device)
        if self.settings.seeds.flip:
            images = torch.cat([images, images.flip(-1)])
        maps = network.seed_cams(images, blocks.seed_class_patch, blocks.seed_patch_patch)
        maps = F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)
        keep = torch.zeros(self.num_classes + 1, 1, 1, device=device)
        keep[0] = 1
        keep[torch.as_tensor(present + 1, device=device)] = 1
        combined = maps[0] * keep
        if maps.shape[0] == 2:
            combined = combined + maps[1].flip(-1) * keep
        normalized = minmax_normalize(combined[None].float())[0]
        keys = present + 1
        return SeedMaps(normalized[torch.as_tensor(keys, device=device)].cpu().numpy(), keys.astype(np.int64))


def _layer_sets(network: CTINetwork) -> BlockSets:
    if network.layer_sets is None:
        raise TypeError("CTINetwork.layer_sets is unset: build the network with CTI.build_model")
    return network.layer_sets
