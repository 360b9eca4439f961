"""MCC: block key masks (ratio, block scale), the positive/negative rule on visible tokens, the projector
and its EMA teacher, mask-CAM switch, and one training step on a tiny random ViT."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

from wsss_core.errors import ConfigError
from wsss_core.methods.base import build_method
from wsss_core.training.progress import TrainingProgress
from wsss_core.methods.mcc import MCC, block_masks, masked_view_flags
from wsss_core.models.weights import WeightsCatalog
from wsss_core.single_stage.decoders import Projector, ema_update, make_teacher


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A tiny MCC block; ``overrides`` (sections) are merged into it key by key."""
    config: dict[str, Any] = {
        "model": {"backbone": "vit_synth", "weights": None, "backbone_args": {"depth": 2}, "aux_layer": -1,
                  "projector": {"out_dim": 32, "hidden_dim": 32, "bottleneck_dim": 16}, "decoder": {"channels": 32}},
        "train": {"iterations": 4, "batch_size": 2, "lr": 1e-4, "warmup_steps": 2,
                  "crop_size": 48, "rescale_range": [0.5, 1.5]},
        "losses": {"par": {"dilations": [1, 2], "iterations": 2},
                   "contrast": {"num_local": 3, "temperature": 0.5},
                   "masking": {"ratio": 0.5, "scale": 2, "aux_cam_until": 10}},
        "seeds": {"scales": [1.0]},
    }
    return _merged(config, overrides)


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` written over it, mapping by mapping."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# ------------------------------------------------------------------------------------------ masks
def test_block_masks_extreme_ratios() -> None:
    assert not block_masks(2, 3, (8, 8), 0.0, 4).any()
    assert block_masks(2, 3, (8, 8), 1.0, 4).all()


def test_block_masks_are_contiguous_blocks() -> None:
    torch.manual_seed(0)
    masks = block_masks(4, 8, (12, 12), 0.5, 4)
    assert masks.shape == (4, 8, 12, 12) and masks.dtype == torch.bool
    blocks = masks.view(4, 8, 3, 4, 3, 4)
    assert (blocks == blocks[:, :, :, :1, :, :1]).all()  # every 4×4 block is constant


def test_block_masks_ratio_is_the_cell_masking_probability() -> None:
    generator = torch.Generator().manual_seed(1)
    masks = block_masks(50, 40, (28, 28), 0.75, 4, generator)
    assert masks.float().mean().item() == pytest.approx(0.75, abs=0.01)  # 98,000 Bernoulli cells


def test_block_masks_crop_a_grid_that_is_not_a_multiple_of_the_scale() -> None:
    masks = block_masks(1, 1, (6, 5), 1.0, 4)
    assert masks.shape == (1, 1, 6, 5) and masks.all()


def test_positive_negative_rule_on_visible_tokens() -> None:
    roi = torch.tensor([[[2, 0], [1, 0]]])
    masks = torch.tensor([[
        [[True, False], [False, False]],  # visible roi 0+1+0 = 1 > 0.2·3 → positive
        [[True, False], [True, False]],  # visible 0 + 0 = 0 ≤ 0.2·2 → negative
        [[True, True], [True, True]],  # nothing visible: 0 ≤ 0 → negative
        [[False, False], [False, False]],  # 3 > 0.8 → positive
        [[False, True], [True, True]],  # only the fg token: 2 > 0.2 → positive
    ]])
    assert masked_view_flags(roi, masks, 0.2).tolist() == [[True, False, False, True, True]]
    # μ = 0.5: the first view has mean 1/3 ≤ 0.5 → negative
    assert masked_view_flags(roi, masks, 0.5).tolist() == [[False, False, False, True, True]]


# --------------------------------------------------------------------------- projector and EMA
def test_ema_update_by_hand() -> None:
    student, teacher = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        student.weight.fill_(1.0)
        teacher.weight.fill_(0.0)
    ema_update(teacher, student, 0.9)
    assert teacher.weight.item() == pytest.approx(0.1)
    ema_update(teacher, student, 0.9)
    assert teacher.weight.item() == pytest.approx(0.19)


def test_projector_magnitude_is_frozen_at_one_and_teacher_starts_equal() -> None:
    projector = Projector(12, out_dim=10, hidden_dim=16, bottleneck_dim=8)
    magnitude = projector.last_layer.parametrizations.weight.original0
    assert not magnitude.requires_grad and torch.all(magnitude == 1)
    # unit-magnitude rows on an L2-normalised bottleneck: every output lies in [-1, 1]
    out = projector(torch.randn(5, 12))
    assert out.shape == (5, 10) and out.abs().max() <= 1 + 1e-6
    teacher = make_teacher(projector)
    assert all(not p.requires_grad for p in teacher.parameters())
    torch.testing.assert_close(teacher(torch.ones(1, 12)), projector(torch.ones(1, 12)))


# ------------------------------------------------------------------------------------- method
def test_default_mask_ratio_is_the_authors_run_and_invalid_ratio_is_rejected() -> None:
    method = MCC({"model": {"backbone": "vit_synth"}, "train": {"batch_size": 2}}, 2)
    assert method.mask_ratio == 0.95 and method.mask_scale == 4 and method.mask_aux_cam_until == 12000
    assert method.temperature == 0.5 and method.momentum == 0.9
    assert method.loss_weights["affinity"] == 0.2 and method.loss_weights["contrast"] == 0.5
    with pytest.raises(ConfigError, match="losses.masking.ratio"):
        MCC(tiny_config(losses={"masking": {"ratio": 1.5}}), 2)


def test_mask_cam_switches_from_aux_to_final() -> None:
    method = MCC(tiny_config(), 2)
    cam, aux = torch.zeros(1), torch.ones(1)
    assert method.mask_driving_cam(cam, aux, 10) is aux
    assert method.mask_driving_cam(cam, aux, 11) is cam


def make_batch(method: MCC) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(2):
        image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
        samples.append(method.training_sample(image, np.array([0.0, 1.0], dtype=np.float32), rng))
    return default_collate(samples)


def test_training_step_with_masked_views() -> None:
    torch.manual_seed(0)
    method = build_method("mcc", tiny_config(), 2)
    model = method.build_model(WeightsCatalog({}))
    batch = make_batch(method)
    losses = method.training_step(model, batch, TrainingProgress(0, 20, 2, 40))
    assert all(torch.isfinite(value) for value in losses.values())
    losses["loss"].backward()
    assert model.projector.mlp[0].weight.grad.abs().sum() > 0
    assert model.encoder.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_fully_masked_views_are_all_negative() -> None:
    torch.manual_seed(0)
    method = build_method("mcc", tiny_config(losses={"masking": {"ratio": 1.0, "scale": 2}}), 2)
    model = method.build_model(WeightsCatalog({}))
    batch = make_batch(method)
    out = model(batch["image"])
    cam = torch.ones(2, 2, 48, 48)
    student, teacher, positive = method.contrast_views(model, batch, out, cam, cam, TrainingProgress(0, 0, 2, 4))
    assert student.shape == (2, 5, 32) and teacher.shape == (2, 2, 32)
    assert positive.tolist() == [[True, True, False, False, False]] * 2


def test_training_step_under_bf16_autocast_keeps_labels_and_contrast_in_float32() -> None:
    torch.manual_seed(0)
    method = build_method("mcc", tiny_config(), 2)
    model = method.build_model(WeightsCatalog({}))
    batch = make_batch(method)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        losses = method.training_step(model, batch, TrainingProgress(0, 20, 2, 40))
    assert all(torch.isfinite(value) for value in losses.values())
    assert losses["contrast"].dtype == torch.float32
    losses["loss"].backward()
