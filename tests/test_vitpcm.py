"""ViT-PCM: PCM softmax/GMP, the supplement's gradient (Eq. 15-16), losses, equivariant mapping,
HV-BiLSTM, and the method end to end on a tiny random ViT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wsss_core.errors import ConfigError
from wsss_core.methods import METHODS, build_method
from wsss_core.training.progress import TrainingProgress
from wsss_core.losses.vitpcm import equivariance_loss, multilabel_bce
from wsss_core.methods.vitpcm import (
    ViTPCM,
    apply_flips,
    map_to_second_view,
    merge_class_labels,
    patch_aligned_box,
    revert_flips,
    split_mosaic,
    tile_mosaic,
)
from wsss_core.models.patch_class_mapping import HVBiLSTM, PatchClassifier, SequenceDropout
from wsss_core.models.weights import WeightsCatalog

torch.set_num_threads(1)


# --------------------------------------------------------------------------------- PCM head
def test_patch_classifier_softmax_and_max_pooling_hand_values() -> None:
    classifier = PatchClassifier(2, 2, dropout=0.0).eval()
    with torch.no_grad():  # W^T rows = classes; A = F W
        classifier.linear.weight.copy_(torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 0.0]]))
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)  # two patches in a row
    output = classifier(features)
    # patch 1: A = (0, ln 3) → Z = (1/4, 3/4); patch 2: A = (ln 3, 0) → Z = (3/4, 1/4)
    torch.testing.assert_close(output.probabilities[0, :, 0, :], torch.tensor([[0.25, 0.75], [0.75, 0.25]]))
    torch.testing.assert_close(output.pooled, torch.tensor([[0.75, 0.75]]))
    assert classifier.linear.bias is None
    assert classifier.weight_penalty().item() == pytest.approx(2 * math.log(3.0) ** 2)


def test_mce_gradient_matches_supplement_eq16() -> None:
    """Autograd through PatchClassifier + L_MCE equals the supplement's Eq. 15-16 (for Σ_k BCE, i.e.
    K+1 times the mean): ∂/∂W^q = −F_{i_q}(t_q − y_q) + Σ_{k≠q} F_{i_k} Z^q_{i_k} (t_k − y_k)/(1 − y_k)."""
    generator = torch.Generator().manual_seed(0)
    patches, dim, classes = 6, 5, 4
    classifier = PatchClassifier(dim, classes, dropout=0.0).double().eval()
    with torch.no_grad():
        classifier.linear.weight.copy_(torch.randn(classes, dim, generator=generator, dtype=torch.float64))
    features = torch.randn(1, 2, 3, dim, generator=generator, dtype=torch.float64)  # 2×3 patch grid
    targets = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    output = classifier(features)
    (classes * multilabel_bce(output.pooled, targets)).backward()
    autograd = classifier.linear.weight.grad.T.numpy()  # [e, K+1] = W as in the supplement

    f = features.reshape(patches, dim).numpy()
    z = output.probabilities.detach().reshape(classes, patches).T.numpy()  # Z [s, K+1]
    i = z.argmax(axis=0)  # i_k: patch where Z^k is maximal
    y = z[i, np.arange(classes)]
    t = targets[0].numpy()
    expected = np.zeros((dim, classes))
    for q in range(classes):
        column = -f[i[q]] * (t[q] - y[q])
        for k in range(classes):
            if k != q:
                column = column + f[i[k]] * z[i[k], q] * (t[k] - y[k]) / (1 - y[k])
        expected[:, q] = column
    np.testing.assert_allclose(autograd, expected, rtol=1e-9, atol=1e-12)


def test_multilabel_bce_hand_values_and_clipping() -> None:
    pooled = torch.tensor([[0.5, 0.25]])
    targets = torch.tensor([[1.0, 0.0]])
    assert multilabel_bce(pooled, targets).item() == pytest.approx((math.log(2) - math.log(0.75)) / 2)
    clipped = multilabel_bce(torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    assert clipped.item() == pytest.approx(-math.log(1e-7), rel=1e-4)


def test_merge_class_labels_hand_values() -> None:
    probabilities = torch.tensor([[0.6, 0.2], [0.3, 0.4], [0.1, 0.4]]).reshape(1, 3, 1, 2)
    labels = torch.tensor([[1.0, 1.0, 0.0]])  # class 2 absent
    merged = merge_class_labels(probabilities, labels)[0, :, 0]
    # bg /0.6 → (1, 1/3); class 1 /0.4 → (0.75, 1); class 2 → 0; then per-patch renormalisation
    expected = torch.tensor([[1 / 1.75, (1 / 3) / (4 / 3)], [0.75 / 1.75, 1 / (4 / 3)], [0.0, 0.0]])
    torch.testing.assert_close(merged, expected)
    zero = merge_class_labels(torch.zeros(1, 2, 1, 1), torch.ones(1, 2))
    assert torch.all(zero == 0)


# ------------------------------------------------------------------------------------ HV-BiLSTM
def test_hv_bilstm_rows_and_columns() -> None:
    torch.manual_seed(0)
    module = HVBiLSTM(in_dim=3, hidden_dim=2, dropout=0.0).eval()
    grid = torch.randn(1, 3, 4, 3)  # [B, h, w, D]
    output = module(grid)
    assert output.shape == (1, 3, 4, 8)
    row_direct, _ = module.rows(grid[:, 1])  # row 1 as a sequence along the columns
    torch.testing.assert_close(output[:, 1, :, :4], row_direct)
    column_direct, _ = module.columns(grid[:, :, 2])  # column 2 as a sequence along the rows
    torch.testing.assert_close(output[:, :, 2, 4:], column_direct)
    changed = grid.clone()
    changed[0, 0, 0] += 1.0  # token (0, 0): other rows' horizontal and other columns' vertical parts unchanged
    other = module(changed)
    torch.testing.assert_close(other[:, 1:, :, :4], output[:, 1:, :, :4])
    torch.testing.assert_close(other[:, :, 1:, 4:], output[:, :, 1:, 4:])


def test_sequence_dropout_shares_mask_over_sequence() -> None:
    torch.manual_seed(0)
    dropout = SequenceDropout(0.5).train()
    out = dropout(torch.ones(3, 5, 8))
    assert torch.all(out == out[:, :1])  # same mask at every position of a sequence
    assert set(out.unique().tolist()) <= {0.0, 2.0}
    assert torch.all(dropout.eval()(torch.ones(2, 2, 2)) == 1.0)


# --------------------------------------------------------------------------------- equivariance
@pytest.mark.parametrize("flips", [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)])
def test_flips_roundtrip(flips: tuple[int, int, int]) -> None:
    grid = torch.arange(12.0).reshape(1, 3, 4)
    assert torch.equal(revert_flips(apply_flips(grid, *flips), *flips), grid)


def test_apply_flips_hand_values() -> None:
    grid = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    assert apply_flips(grid, True, False, False).tolist() == [[[2.0, 1.0], [4.0, 3.0]]]
    assert apply_flips(grid, False, True, False).tolist() == [[[3.0, 4.0], [1.0, 2.0]]]
    assert apply_flips(grid, True, False, True).tolist() == [[[2.0, 4.0], [1.0, 3.0]]]  # LR, then transpose


FLIP_SETTINGS = [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]


@pytest.mark.parametrize("first", FLIP_SETTINGS)
@pytest.mark.parametrize("second", FLIP_SETTINGS)
def test_map_to_second_view_recovers_the_second_view(first: tuple, second: tuple) -> None:
    """A scene seen through view 1 and mapped must equal the scene seen through view 2 (crop of
    2×2 patches at (1, 2), patch 16, same grid size → no resampling)."""
    scene = torch.arange(2 * 16.0).reshape(2, 4, 4)
    view1 = apply_flips(scene, *first)
    box = (16.0, 32.0, 48.0, 64.0)  # top, left, bottom, right in pixels
    view2 = apply_flips(scene[:, 1:3, 2:4], *second)
    mapped = map_to_second_view(view1, torch.tensor(first, dtype=torch.float32), torch.tensor(second + box), 16, 2)
    torch.testing.assert_close(mapped, view2)


def test_map_to_second_view_resizes_with_aligned_corners() -> None:
    scene = torch.tensor([[[0.0, 2.0], [4.0, 6.0]]])
    mapped = map_to_second_view(scene, torch.zeros(3), torch.tensor([0.0, 0, 0, 0, 0, 32, 32]), 16, 3)
    expected = torch.tensor([[[0.0, 1.0, 2.0], [2.0, 3.0, 4.0], [4.0, 5.0, 6.0]]])
    torch.testing.assert_close(mapped, expected)


def test_equivariance_loss_hand_values() -> None:
    student = torch.tensor([[0.5, 0.25], [0.5, 0.75]]).reshape(1, 2, 1, 2)
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    expected = (math.log(2) - math.log(0.75)) / 2  # mean over the two patches
    assert equivariance_loss(student, target).item() == pytest.approx(expected)


def test_mosaic_layout_and_roundtrip() -> None:
    images = torch.arange(8.0).reshape(8, 1, 1, 1).expand(8, 1, 2, 2)
    mosaic = tile_mosaic(images)
    assert mosaic.shape == (2, 1, 4, 4)
    assert mosaic[0, 0, :, :].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    assert torch.equal(split_mosaic(mosaic), images)


def test_patch_aligned_box_is_on_grid_and_clipped() -> None:
    rng = np.random.default_rng(0)
    boxes = [patch_aligned_box(64, 32, 16, rng) for _ in range(50)]
    assert all(top % 16 == 0 and left % 16 == 0 and bottom - top == 32 and right <= 64 for top, left, bottom, right in boxes)
    assert max(top for top, *_ in boxes) == 32  # starts 48 and 64 are clipped to 32


# ---------------------------------------------------------------------------------------- method
CONFIG = {
    "model": {"backbone": "vit_synth", "weights": None, "patch_size": 8,
              "backbone_args": {"depth": 2, "embed_dim": 48, "num_heads": 2}, "head": {"hidden_dim": 8}},
    "train": {"batch_size": 2, "image_size": 32, "view2_size": 16, "crop_size": 16, "crop_probability": 0.5,
              "lr": 1e-4, "warmup_lr": 1e-3, "warmup_epochs": 1, "epochs": 2, "unfreeze_blocks": 1},
    "seeds": {"image_size": 48},
}


def test_registry_and_config_errors() -> None:
    assert METHODS.get("vitpcm") is ViTPCM
    with pytest.raises(ConfigError, match="model.patch_size"):
        build_method("vitpcm", {**CONFIG, "model": {**CONFIG["model"], "patch_size": 16}}, 3).build_model(WeightsCatalog({}))
    bad = {**CONFIG, "train": {**CONFIG["train"], "view2_size": 12}}
    with pytest.raises(ConfigError, match="view2_size"):
        build_method("vitpcm", bad, 3).training_sample(np.zeros((20, 20, 3), np.uint8), np.ones(3, np.float32), np.random.default_rng(0))


def test_training_steps_warmup_freezes_encoder() -> None:
    torch.manual_seed(0)
    method = build_method("vitpcm", CONFIG, num_classes=3)
    model = method.build_model(WeightsCatalog({}))
    frozen = model.encoder.blocks[0].attn.qkv.weight
    tail = model.encoder.blocks[1].attn.qkv.weight
    assert not frozen.requires_grad and tail.requires_grad and model.encoder.norm.weight.requires_grad
    rng = np.random.default_rng(0)
    labels = np.array([1, 0, 1], np.float32)
    samples = [method.training_sample(rng.integers(0, 256, (30, 41, 3), dtype=np.uint8), labels, rng) for _ in range(4)]
    batch = torch.utils.data.default_collate(samples)
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image_et"].shape == (4, 3, 16, 16)
    optimizer, scheduler = method.build_optimizer(model, steps_per_epoch=2)
    assert [group["lr"] for group in optimizer.param_groups] == [1e-3, 1e-4]
    for step, encoder_trains in [(0, False), (2, True)]:
        optimizer.zero_grad(set_to_none=True)
        losses = method.training_step(model, batch, TrainingProgress(step // 2, step, 2, 4))
        assert set(losses) == {"loss", "mce", "reg", "et"}
        assert torch.isfinite(losses["loss"])
        losses["loss"].backward()
        assert (tail.grad is not None) == encoder_trains
        assert frozen.grad is None
        assert model.head.classifier.linear.weight.grad.abs().sum() > 0
        optimizer.step()
        scheduler.step_update(step + 1)
    assert [group["lr"] for group in optimizer.param_groups] == [1e-4, 1e-4]
    with pytest.raises(ConfigError, match="multiple of 4"):
        method.training_step(model, {k: v[:3] for k, v in batch.items()}, TrainingProgress(0, 0, 2, 4))


def _train_steps(config: dict, steps: int, share_encoder_pass: bool, monkeypatch: pytest.MonkeyPatch):
    """Losses of every step and the final parameters of ``steps`` ViT-PCM steps (warm-up, then the encoder)."""
    torch.manual_seed(0)
    method = build_method("vitpcm", config, num_classes=3)
    model = method.build_model(WeightsCatalog({}))
    if not share_encoder_pass:
        monkeypatch.setattr(type(model), "encoder_is_deterministic", lambda self: False)
    rng = np.random.default_rng(0)
    labels = np.array([1, 0, 1], np.float32)
    batch = torch.utils.data.default_collate(
        [method.training_sample(rng.integers(0, 256, (30, 41, 3), dtype=np.uint8), labels, rng) for _ in range(4)]
    )
    optimizer, scheduler = method.build_optimizer(model, steps_per_epoch=2)
    model.train()
    history = []
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        losses = method.training_step(model, batch, TrainingProgress(step // 2, step, 2, steps))
        losses["loss"].backward()
        optimizer.step()
        scheduler.step_update(step + 1)
        history.append({name: value.item() for name, value in losses.items()})
    monkeypatch.undo()
    return history, {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_teacher_reuses_the_training_encoder_pass_bit_identically(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without dropout in the encoder the ET teacher takes the training pass's patch grid: the same losses and
    weights, to the bit, as a second eval-mode encoder pass (warm-up steps and encoder steps)."""
    shared = _train_steps(CONFIG, 4, True, monkeypatch)
    separate = _train_steps(CONFIG, 4, False, monkeypatch)
    assert shared[0] == separate[0]
    assert all(torch.equal(shared[1][name], separate[1][name]) for name in shared[1])
    assert shared[0][0] != shared[0][3]  # the steps trained


def test_encoder_with_dropout_is_not_deterministic() -> None:
    model = build_method("vitpcm", CONFIG, num_classes=3).build_model(WeightsCatalog({}))
    assert model.encoder_is_deterministic()
    dropout = {**CONFIG, "model": {**CONFIG["model"], "backbone_args": {**CONFIG["model"]["backbone_args"],
                                                                         "proj_drop_rate": 0.1}}}
    assert not build_method("vitpcm", dropout, num_classes=3).build_model(WeightsCatalog({})).encoder_is_deterministic()
    path = {**CONFIG, "model": {**CONFIG["model"], "backbone_args": {**CONFIG["model"]["backbone_args"],
                                                                      "drop_path_rate": 0.1}}}
    assert not build_method("vitpcm", path, num_classes=3).build_model(WeightsCatalog({})).encoder_is_deterministic()


def test_bpm_seeds_are_merged_probabilities() -> None:
    torch.manual_seed(0)
    method = build_method("vitpcm", CONFIG, num_classes=3)
    model = method.build_model(WeightsCatalog({}))
    image = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    seeds = method.infer_seeds(model, image, np.array([0, 1, 1], np.float32))
    assert seeds.keys.tolist() == [0, 2, 3] and seeds.maps.shape == (3, 37, 53)
    np.testing.assert_allclose(seeds.maps.sum(axis=0), 1.0, atol=1e-5)
    probabilities = method.class_probabilities(model, image)
    assert probabilities.shape == (4, 6, 6)
    torch.testing.assert_close(probabilities.sum(0), torch.ones(6, 6))
