"""AFA: affinity-from-attention head, window, pair labels, affinity loss, random-walk transition, the
SegFormer head, optimiser groups (frozen norms), the warm-up and one training step + inference."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from wsss_core.errors import ConfigError
from wsss_core.losses.afa import attention_affinity_loss
from wsss_core.methods.afa import (
    AFA,
    AttentionAffinityHead,
    attention_affinity_labels,
    random_walk_transition,
    window_mask,
)
from wsss_core.methods.base import build_method
from wsss_core.training.progress import TrainingProgress
from wsss_core.models.weights import WeightsCatalog
from wsss_core.single_stage.segformer_head import SegFormerHead


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A tiny AFA block; ``overrides`` (sections) are merged into it key by key."""
    config: dict[str, Any] = {
        "model": {"backbone": "mit_synth", "weights": None, "decoder": {"embedding_dim": 16}},
        "train": {"iterations": 10, "batch_size": 2, "lr": 1e-3, "warmup_steps": 0,
                  "crop_size": 64, "rescale_range": [0.5, 1.5]},
        "losses": {"par": {"dilations": [1, 2, 4], "iterations": 3}, "schedule": {"cam_iters": 1},
                   "propagation": {"after": 2}},
        "seeds": {"scales": [1.0, 0.5]},
        "inference": {"long_side": 48, "scales": [1.0, 0.5]},
    }
    return _merged(config, overrides)


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` written over it, mapping by mapping."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def tiny_batch(method: AFA) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    samples = []
    for labels in ([1, 0, 1], [0, 1, 0]):
        image = rng.integers(0, 255, (48, 72, 3), dtype=np.uint8)
        samples.append(method.training_sample(image, np.array(labels, dtype=np.float32), rng))
    return default_collate(samples)


def test_affinity_head_symmetrises_mixes_heads_and_squashes() -> None:
    head = AttentionAffinityHead(2)
    with torch.no_grad():
        head.proj.weight.copy_(torch.tensor([0.5, -1.0]).view(1, 2, 1, 1))
        head.proj.bias.fill_(0.25)
    first = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    second = torch.tensor([[0.0, 1.0], [1.0, 0.5]])
    affinity = head([first.view(1, 1, 2, 2), second.view(1, 1, 2, 2)])
    # symmetrised: first → [[2, 2], [2, 6]], second → [[0, 2], [2, 1]]
    expected_logits = torch.tensor([[0.5 * 2 - 0 + 0.25, 0.5 * 2 - 2 + 0.25], [0.5 * 2 - 2 + 0.25, 0.5 * 6 - 1 + 0.25]])
    torch.testing.assert_close(affinity[0], torch.sigmoid(expected_logits))
    assert torch.equal(affinity[0], affinity[0].T)


def test_window_mask_is_chebyshev() -> None:
    mask = window_mask((3, 3), 1)
    assert mask[0].nonzero().flatten().tolist() == [0, 1, 3, 4]
    assert mask[4].all()  # the centre sees the whole 3×3 grid
    assert not mask[0, 8] and not mask[2, 6]
    assert torch.equal(mask, mask.T)


def test_attention_affinity_labels_nearest_window_and_ignore() -> None:
    label = torch.tensor([[[1, 1, 0, 0], [1, 1, 0, 0], [255, 255, 2, 2], [255, 255, 2, 2]]])
    pairs = attention_affinity_labels(label, (2, 2), radius=1)  # tokens: 1, 0, 255, 2
    expected = torch.tensor([[1, 0, 255, 0], [0, 1, 255, 0], [255, 255, 255, 255], [0, 0, 255, 1]])
    assert torch.equal(pairs[0], expected)  # the diagonal counts as positive (as coded by AFA)
    far = attention_affinity_labels(label, (2, 2), radius=0)
    assert torch.equal(far[0], torch.tensor([[1, 255, 255, 255], [255, 1, 255, 255], [255] * 4, [255, 255, 255, 1]]))


def test_attention_affinity_loss_hand_computed() -> None:
    affinity = torch.tensor([[[0.9, 0.2], [0.2, 0.8]]])
    pairs = torch.tensor([[[1, 0], [0, 1]]])
    # positives: (0.1 + 0.2) / (2 + 1) = 0.1; negatives: (0.2 + 0.2) / (2 + 1) = 0.1333
    assert float(attention_affinity_loss(affinity, pairs)) == pytest.approx(0.5 * 0.1 + 0.5 * 0.4 / 3)
    ignored = torch.tensor([[[1, 255], [255, 255]]])
    assert float(attention_affinity_loss(affinity, ignored)) == pytest.approx(0.5 * 0.1 / 2)


def test_random_walk_transition_hand_computed() -> None:
    affinity = torch.tensor([[[1.0, 0.5, 0.2], [0.5, 1.0, 0.4], [0.2, 0.4, 1.0]]])
    window = torch.tensor([[True, True, False], [True, True, True], [False, True, True]])
    transition = random_walk_transition(affinity, window, power=2)
    # column 0: [1, 0.25, 0] / 1.35; column 2: [0, 0.16, 1] / 1.26
    torch.testing.assert_close(transition[0, :, 0], torch.tensor([1 / 1.35, 0.25 / 1.35, 0.0]))
    torch.testing.assert_close(transition[0, :, 2], torch.tensor([0.0, 0.16 / 1.26, 1 / 1.26]))


def test_segformer_head_shapes_and_fusion_order() -> None:
    head = SegFormerHead((4, 6, 8, 10), num_labels=3, embedding_dim=5).eval()
    features = [torch.randn(2, c, s, s) for c, s in ((4, 8), (6, 4), (8, 2), (10, 2))]
    assert tuple(head(features).shape) == (2, 3, 8, 8)
    assert head.fuse[0].in_channels == 20 and head.fuse[0].bias is None
    # the fuse conv sees (c4, c3, c2, c1): zeroing its first 5 input channels removes stage 4's influence
    with torch.no_grad():
        head.fuse[0].weight[:, :5] = 0
    changed = [f.clone() for f in features]
    changed[3] = torch.randn_like(changed[3])
    torch.testing.assert_close(head(features), head(changed))


def test_loss_weights_warm_up_and_unknown_key() -> None:
    method = build_method("afa", tiny_config(losses={"schedule": {"cam_iters": 2000}}), 3)
    assert method.active_loss_weights(2000) == {"cls": 1.0, "segmentation": 0.0, "affinity": 0.0}
    assert method.active_loss_weights(2001) == {"cls": 1.0, "segmentation": 0.1, "affinity": 0.1}
    with pytest.raises(ConfigError, match=r"unknown key 'method.losses.weights.seg'"):
        build_method("afa", tiny_config(losses={"weights": {"seg": 1.0}}), 3)


def test_training_steps_freeze_norms_and_infer() -> None:
    torch.manual_seed(0)
    method = build_method("afa", tiny_config(), 3)
    assert method.end_to_end
    model = method.build_model(WeightsCatalog({}))
    optimizer, scheduler = method.build_optimizer(model, steps_per_epoch=5)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([1e-3, 0.0, 1e-2, 1e-2])
    assert optimizer.param_groups[1]["weight_decay"] == 0.0
    norm_before = model.encoder.norm4.weight.detach().clone()
    batch = tiny_batch(method)
    for step in (0, 2, 3):  # warm-up, CAM label, propagated label
        losses = method.training_step(model, batch, TrainingProgress(0, step, 5, 10))
        assert all(math.isfinite(float(value.detach())) for value in losses.values())
        optimizer.zero_grad()
        losses["loss"].backward()
        if step == 0:
            assert float(losses["segmentation"]) == 0.0 and model.decoder.classifier.weight.grad is None
        else:
            assert model.affinity_head.proj.weight.grad is not None and model.decoder.classifier.weight.grad is not None
        optimizer.step()
    torch.testing.assert_close(model.encoder.norm4.weight, norm_before)
    model.eval()
    image = np.random.default_rng(1).integers(0, 255, (30, 45, 3), dtype=np.uint8)
    probabilities = method.segment(model, image)
    assert probabilities.shape == (4, 30, 45) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, rtol=1e-5)
    seeds = method.infer_seeds(model, image, np.array([0, 1, 1], dtype=np.float32))
    assert seeds.keys.tolist() == [2, 3] and seeds.maps.shape == (2, 30, 45)
    assert seeds.maps.min() >= 0 and seeds.maps.max() <= 1
    mask = method.infer_pseudo_labels(model, image, np.array([0, 1, 1], dtype=np.float32))
    assert method.pseudo_labels == "par"
    assert mask.shape == (30, 45) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 2, 3}
