"""ECA: Jensen-Shannon correspondence loss on hand-computed pairs (corrected and printed sign), label
down-sampling, view placement, config defaults, the frozen DINO (no gradient, not optimised, eval
mode), prototypes in the checkpoint, and training steps + inference on tiny random networks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from wsss_core.errors import ConfigError
from wsss_core.methods.base import build_method
from wsss_core.training.progress import TrainingProgress
from wsss_core.losses.eca import correspondence_loss, pairwise_js_divergence
from wsss_core.methods.eca import ECA, downsample_label, sample_view_corners
from wsss_core.models.weights import WeightsCatalog
from wsss_core.single_stage.pseudo_labels import affinity_labels

# JS([0.5, 0.5] ‖ [1, 0]) in bits: m = (0.75, 0.25); KL(p‖m) = 0.5 ln(2/3) + 0.5 ln 2 = 0.143841,
# KL(q‖m) = ln(4/3) = 0.287682; JS = 0.215762 nats = 0.311278 bits.
JS_HALF_VS_ONE_HOT = 0.311278


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A tiny ECA block; ``overrides`` (sections) are merged into it key by key."""
    config: dict[str, Any] = {
        "model": {"backbone": "mit_synth", "weights": None, "decoder": {"embedding_dim": 16},
                  "dino": {"backbone": "vit_synth", "weights": None, "backbone_args": {"depth": 2}}},
        "train": {"iterations": 10, "batch_size": 2, "lr": 1e-3, "warmup_steps": 0,
                  "crop_size": 64, "rescale_range": [0.5, 1.5]},
        "losses": {"par": {"dilations": [1, 2, 4], "iterations": 3}, "schedule": {"cam_iters": 1},
                   "correspondence": {"num_views": 2, "view_size": 32}},
        "seeds": {"scales": [1.0, 0.5]},
        "inference": {"long_side": 48, "scales": [1.0]},
    }
    return _merged(config, overrides)


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` written over it, mapping by mapping."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def tiny_batch(method: ECA) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    samples = []
    for labels in ([1, 0, 1], [0, 1, 0]):
        image = rng.integers(0, 255, (48, 72, 3), dtype=np.uint8)
        image[10:30, 20:50] = (230, 40, 40)  # an object-like blob
        samples.append(method.training_sample(image, np.array(labels, dtype=np.float32), rng))
    return default_collate(samples)


# ------------------------------------------------------------------------------------- CCE loss
def test_js_divergence_hand_values() -> None:
    p = torch.tensor([[[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]])
    divergence = pairwise_js_divergence(p)
    expected = torch.tensor([[0.0, JS_HALF_VS_ONE_HOT, JS_HALF_VS_ONE_HOT], [JS_HALF_VS_ONE_HOT, 0.0, 1.0],
                             [JS_HALF_VS_ONE_HOT, 1.0, 0.0]])
    torch.testing.assert_close(divergence[0], expected, atol=1e-5, rtol=1e-5)


def correspondence_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    # one view of 1×3 tokens, C = 2: p0 = (0.5, 0.5), p1 ≈ (1, 0), p2 ≈ (0, 1)
    logits = torch.tensor([[[[0.0, 30.0, -30.0]], [[0.0, -30.0, 30.0]]]])
    pairs = affinity_labels(torch.tensor([[[4, 4, 0]]]))  # t0, t1 positive; t2 negative to both
    return logits, pairs


def test_correspondence_loss_corrected_sign() -> None:
    logits, pairs = correspondence_inputs()
    # positives (0,1),(1,0): mean D = 0.311278; negatives (0,2),(2,0),(1,2),(2,1): mean(1 − D) =
    # (0.688722 · 2 + 0 · 2) / 4 = 0.344361
    expected = JS_HALF_VS_ONE_HOT + (1 - JS_HALF_VS_ONE_HOT) / 2
    assert float(correspondence_loss(logits, pairs)) == pytest.approx(expected, abs=1e-5)


def test_correspondence_loss_printed_sign_and_view_average() -> None:
    logits, pairs = correspondence_inputs()
    printed = (1 - JS_HALF_VS_ONE_HOT) + (2 * JS_HALF_VS_ONE_HOT + 2 * 1.0) / 4
    assert float(correspondence_loss(logits, pairs, sign="printed")) == pytest.approx(printed, abs=1e-5)
    # a second view with every pair ignored adds 0 and halves the mean over views
    two_logits = torch.cat([logits, logits])
    two_pairs = torch.cat([pairs, torch.full_like(pairs, 255)])
    expected = (JS_HALF_VS_ONE_HOT + (1 - JS_HALF_VS_ONE_HOT) / 2) / 2
    assert float(correspondence_loss(two_logits, two_pairs)) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError):
        correspondence_loss(logits, pairs, sign="flipped")


def test_correspondence_gradient_pulls_positives_together() -> None:
    logits = torch.tensor([[[[1.0, -1.0, 0.5]], [[-1.0, 1.0, 0.0]]]], requires_grad=True)
    pairs = affinity_labels(torch.tensor([[[1, 1, 2]]]))
    correspondence_loss(logits, pairs).backward()
    step = logits - 0.1 * logits.grad
    before = pairwise_js_divergence(logits.detach().flatten(2).transpose(1, 2).softmax(-1))[0, 0, 1]
    after = pairwise_js_divergence(step.detach().flatten(2).transpose(1, 2).softmax(-1))[0, 0, 1]
    assert after < before


def test_downsample_label_majority_and_nearest() -> None:
    label = torch.tensor([[[1, 1, 2, 2], [1, 0, 2, 255], [255, 255, 0, 0], [255, 255, 0, 1]]])
    assert downsample_label(label, (2, 2), 3).tolist() == [[[1, 2], [255, 0]]]
    assert downsample_label(label, (2, 2), 3, mode="nearest").tolist() == [[[1, 2], [255, 0]]]
    assert downsample_label(label[:, 1:3, 0:2], (1, 1), 3).tolist() == [[[0]]]  # 1 and 0 tie → lower id wins


def test_view_corners_centre_on_foreground_and_clip() -> None:
    label = torch.full((2, 10, 10), 255)
    label[0, 5, 6] = 2
    label[1, 0, 9] = 1
    corners = sample_view_corners(label, 4, 3)
    assert corners[0].tolist() == [[3, 4]] * 3 and corners[1].tolist() == [[0, 6]] * 3
    uniform = sample_view_corners(torch.zeros(1, 10, 10, dtype=torch.long), 4, 20)
    assert uniform.min() >= 0 and uniform.max() <= 6
    with pytest.raises(ConfigError, match="view_size"):
        sample_view_corners(label, 12, 1)


# -------------------------------------------------------------------------------------- method
def test_config_defaults_and_errors() -> None:
    method = build_method("eca", tiny_config(losses={"thresholds": {"low": 0.3}}), 3)
    assert (method.thresholds.low, method.thresholds.high, method.thresholds.background) == (0.3, 0.55, 0.5)
    assert method.propagation_after is None and method.seed_fraction == 0.3 and method.graph_threshold == 0.15
    terms = ("segmentation", "carm_segmentation", "correspondence", "affinity")
    assert method.loss_weights == {"cls": 1.0, **{term: 0.1 for term in terms}}
    assert method.active_loss_weights(1) == {"cls": 1.0, **{term: 0.0 for term in terms}}
    with pytest.raises(ConfigError, match="losses.correspondence.sign"):
        build_method("eca", tiny_config(losses={"correspondence": {"sign": "minus"}}), 3)
    with pytest.raises(ConfigError, match="view_size"):
        build_method("eca", tiny_config(losses={"correspondence": {"view_size": 128}}), 3)
    with pytest.raises(ConfigError, match="losses.seed_selection.fraction"):
        build_method("eca", tiny_config(losses={"seed_selection": {"fraction": 30}}), 3)
    with pytest.raises(ConfigError, match="multiple of the DINO patch"):
        build_method("eca", tiny_config(train={"crop_size": 60}), 3).build_model(WeightsCatalog({}))


def test_training_sample_local_views() -> None:
    method = build_method("eca", tiny_config(), 3)
    image, labels = np.zeros((40, 50, 3), np.uint8), np.array([1, 0, 0], np.float32)
    sample = method.training_sample(image, labels, np.random.default_rng(0))
    assert tuple(sample["local_views"].shape) == (2, 3, 64, 64) and sample["local_flips"].dtype == torch.bool
    assert tuple(sample["image"].shape) == (3, 64, 64)


def test_dino_frozen_prototypes_updated_and_inference() -> None:
    torch.manual_seed(0)
    method = build_method("eca", tiny_config(), 3)
    assert method.end_to_end
    model = method.build_model(WeightsCatalog({}))
    optimizer, _ = method.build_optimizer(model, steps_per_epoch=5)
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in model.dino.parameters())
    dino_before = {name: t.clone() for name, t in model.dino.state_dict().items()}
    model.train()
    assert not model.dino.vit.training
    batch = tiny_batch(method)
    warm = method.training_step(model, batch, TrainingProgress(0, 0, 5, 10))
    assert float(warm["correspondence"]) == 0.0 and not bool(model.prototypes.initialized.any())
    for step in (2, 3):
        losses = method.training_step(model, batch, TrainingProgress(0, step, 5, 10))
        assert all(math.isfinite(float(value.detach())) for value in losses.values())
        optimizer.zero_grad()
        losses["loss"].backward()
        assert all(p.grad is None and not p.requires_grad for p in model.dino.parameters())
        assert model.encoder.patch_embed1.proj.weight.grad is not None
        optimizer.step()
    for name, tensor in model.dino.state_dict().items():
        torch.testing.assert_close(tensor, dino_before[name])
    # classes 1, 2 and 3 are present in the batch: all prototypes exist and live in the checkpoint
    assert model.prototypes.initialized.tolist() == [True, True, True]
    state = model.state_dict()
    assert "prototypes.prototypes" in state and any(key.startswith("dino.vit.") for key in state)
    rebuilt = method.build_model(WeightsCatalog({}))
    rebuilt.load_state_dict(state)
    torch.testing.assert_close(rebuilt.prototypes.prototypes, model.prototypes.prototypes)
    rebuilt.eval()
    image = np.random.default_rng(2).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    probabilities = method.segment(rebuilt, image)
    assert probabilities.shape == (4, 30, 40)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, rtol=1e-5)
    seeds = method.infer_seeds(rebuilt, image, np.array([1, 0, 0], dtype=np.float32))
    assert seeds.keys.tolist() == [1] and seeds.maps.shape == (1, 30, 40)
    # CARM pseudo-labels: read the prototypes, never update them; labels only from present classes + bg
    prototypes = rebuilt.prototypes.prototypes.clone()
    assert method.pseudo_labels == "carm"
    mask = method.infer_pseudo_labels(rebuilt, image, np.array([1, 0, 1], dtype=np.float32))
    assert mask.shape == (30, 40) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 3}
    torch.testing.assert_close(rebuilt.prototypes.prototypes, prototypes)


def test_background_threshold_label_rule() -> None:
    method = build_method("eca", tiny_config(losses={"cam_label": {"rule": "background_threshold"}}), 2)
    cams = torch.tensor([[[[0.9, 0.2], [0.6, 0.4]], [[0.1, 0.7], [0.3, 0.45]]]])
    label = method.cam_label(torch.zeros(1, 3, 2, 2), cams, torch.tensor([[1.0, 1.0]]), torch.tensor([[0, 2, 0, 1]]))
    # α = 0.5: (0,0) class 1 (0.9), (1,0) class 1 (0.6); column 1 is outside the box
    assert label.tolist() == [[[1, 255], [1, 255]]]


def test_misspelt_section_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'method.losses.graph.treshold' .*known keys there: clamp_foreground_cue, threshold"):
        build_method("eca", tiny_config(losses={"graph": {"treshold": 0.2}}), 3)
    with pytest.raises(ConfigError, match=r"unknown key 'method.losses.weights.corr'"):
        build_method("eca", tiny_config(losses={"weights": {"corr": 0.1}}), 3)
