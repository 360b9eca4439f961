"""SWTformer V1/V2: CAM maps, SIPE seed locating with |cos| affinity, prototypes/R-CAM, GSC, CCL,
and the methods end to end on a tiny random Swin."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from wsss_core import workflow_config as resolve
from wsss_core.errors import ConfigError
from wsss_core.methods import METHODS, build_method
from wsss_core.training.progress import TrainingProgress
from wsss_core.losses.swtformer import ccl_literal, ccl_loss, gsc_loss
from wsss_core.methods.swtformer import (
    SWTformerV1,
    SWTformerV2,
    class_prototypes,
    foreground_cams,
    reactivate,
    structure_aware_seeds,
    token_affinity,
    with_background,
)
from wsss_core.models.weights import WeightsCatalog

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------ maps
def test_cams_and_background_hand_values() -> None:
    logits = torch.tensor([[[[-1.0, 2.0], [4.0, 0.0]], [[1.0, 1.0], [-3.0, 0.5]]]])  # [1, 2, 2, 2]
    cams = foreground_cams(logits)
    expected = torch.tensor([[[[0.0, 0.5], [1.0, 0.0]], [[1.0, 1.0], [0.0, 0.5]]]])
    torch.testing.assert_close(cams, expected, atol=1e-4, rtol=0)
    background = with_background(cams)[0, 0]
    torch.testing.assert_close(background, torch.tensor([[0.0, 0.0], [0.0, 0.5]]), atol=1e-4, rtol=0)


def test_affinity_absolute_versus_relu_cosine() -> None:
    features = torch.tensor([[1.0, -2.0, 0.0], [0.0, 0.0, 3.0]]).reshape(1, 2, 1, 3)  # tokens (1,0), (-2,0), (0,3)
    absolute = token_affinity(features, "abs_cosine")[0]
    relu = token_affinity(features, "relu_cosine")[0]
    torch.testing.assert_close(absolute, torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(relu, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), atol=1e-4, rtol=0)
    with pytest.raises(ConfigError, match="seeds.similarity"):
        token_affinity(features, "dot")


def direct_seeds(cams: np.ndarray, features: np.ndarray, label_mask: np.ndarray, absolute: bool, factor: float) -> np.ndarray:
    """Loop version of SIPE's seed locating for one image: cams [K, h, w], features [D, h, w]."""
    channels, height, width = cams.shape
    tokens = features.reshape(features.shape[0], -1).T
    cam_flat = cams.reshape(channels, -1)
    seeds = np.zeros((channels, height * width))
    for i in range(height * width):
        row = []
        for j in range(height * width):
            cosine = tokens[i] @ tokens[j] / ((np.linalg.norm(tokens[i]) + 1e-5) * (np.linalg.norm(tokens[j]) + 1e-5))
            row.append(abs(cosine) if absolute else max(cosine, 0.0))
        row = np.array(row)
        scores = []
        for c in range(channels):
            inter = float((row * cam_flat[c]).sum())
            scores.append(inter / (row.sum() + cam_flat[c].sum() - inter))
        scores[0] *= factor
        seeds[int(np.argmax(scores)), i] = 1.0
    return seeds.reshape(channels, height, width) * label_mask[:, None, None]


@pytest.mark.parametrize("similarity", ["abs_cosine", "relu_cosine"])
def test_seed_locating_matches_direct_loop(similarity: str) -> None:
    generator = torch.Generator().manual_seed(3)
    cams = torch.rand(2, 4, 3, 3, generator=generator)
    features = torch.randn(2, 5, 3, 3, generator=generator)
    label_mask = torch.tensor([[1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 1.0]])
    seeds = structure_aware_seeds(cams, features, label_mask[..., None, None], similarity, 0.5)
    for b in range(2):
        expected = direct_seeds(cams[b].numpy(), features[b].numpy(), label_mask[b].numpy(), similarity == "abs_cosine", 0.5)
        np.testing.assert_allclose(seeds[b].numpy(), expected)


def test_seed_locating_hand_example() -> None:
    """Two tokens pointing opposite ways: |cos| groups them, ReLU(cos) separates them."""
    features = torch.tensor([[1.0, -1.0]]).reshape(1, 1, 1, 2)
    cams = torch.tensor([[0.2, 0.2], [1.0, 0.0]]).reshape(1, 2, 1, 2)  # background, class 1
    ones = torch.ones(1, 2, 1, 1)
    # |cos|: A = [[1,1],[1,1]]; class 1 IoU = 1/(2+1-1) = 0.5 at both; bg 0.4/(2+0.4-0.4)·0.5 = 0.1
    seeds = structure_aware_seeds(cams, features, ones, "abs_cosine", 0.5)
    torch.testing.assert_close(seeds[0, 1], torch.tensor([[1.0, 1.0]]))
    # ReLU: A = I; token 2: class 1 IoU 0/(1+1-0) = 0, bg 0.2/(1+0.4-0.2)·0.5 ≈ 0.083 → background
    seeds = structure_aware_seeds(cams, features, ones, "relu_cosine", 0.5)
    torch.testing.assert_close(seeds[0, 1], torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(seeds[0, 0], torch.tensor([[0.0, 1.0]]))


def test_prototypes_and_rcam_match_direct_computation() -> None:
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(1, 4, 4, 4, generator=generator)
    seeds = torch.zeros(1, 3, 2, 2)  # token grid 2×2, feature grid 4×4 (nearest ×2)
    seeds[0, 0, 0, :] = 1.0  # background: top row
    seeds[0, 1, 1, 0] = 1.0  # class 1: bottom-left token; class 2 absent
    prototypes = class_prototypes(seeds, features)
    region_background = features[0, :, 0:2, :].reshape(4, -1)
    region_class = features[0, :, 2:4, 0:2].reshape(4, -1)
    torch.testing.assert_close(prototypes[0, 0], region_background.sum(1) / 16)
    torch.testing.assert_close(prototypes[0, 1], region_class.sum(1) / 16)
    torch.testing.assert_close(prototypes[0, 2], torch.zeros(4))
    rcams = reactivate(prototypes, features)
    centroid = region_class.mean(1)
    for y in range(4):
        for x in range(4):
            f = features[0, :, y, x]
            expected = max(float(f @ centroid / (f.norm() * centroid.norm())), 0.0)
            assert rcams[0, 1, y, x].item() == pytest.approx(expected, abs=1e-5)
    assert torch.all(rcams[0, 2] == 0)


# ---------------------------------------------------------------------------------------- losses
def test_gsc_loss_hand_values() -> None:
    cams = torch.tensor([[[[1.0, 0.0]], [[0.5, 0.5]]]])  # [1, 2, 1, 2]
    rcams = torch.tensor([[[[2.0, 1.0]], [[0.0, 0.25]]]])  # max-norm → [1, .5], [0, 1]
    expected = (0.0 + 0.5 + 0.5 + 0.5) / 4
    assert gsc_loss(cams, rcams).item() == pytest.approx(expected, abs=1e-4)


def test_ccl_literal_values_and_stationary_point() -> None:
    assert ccl_literal(torch.tensor(1.0)).item() == pytest.approx(2 / 9)
    assert ccl_literal(torch.tensor(0.0)).item() == pytest.approx(0.5)
    assert ccl_literal(torch.tensor(9 / 13)).item() == pytest.approx(26 / 169)
    s = torch.tensor(9 / 13, requires_grad=True)
    ccl_literal(s).backward()
    assert s.grad.item() == pytest.approx(0.0, abs=1e-6)


def test_ccl_loss_per_channel_and_masking() -> None:
    cams = torch.zeros(1, 3, 1, 2)
    rcams = torch.zeros(1, 3, 1, 2)
    cams[0, 0, 0] = torch.tensor([1.0, 0.0])
    rcams[0, 0, 0] = torch.tensor([2.0, 0.0])  # s = 1 → 2/9
    cams[0, 1, 0] = torch.tensor([1.0, 0.0])
    rcams[0, 1, 0] = torch.tensor([9 / 13, math.sqrt(88) / 13])  # s = 9/13 → 26/169
    cams[0, 2, 0] = torch.tensor([1.0, 0.0])
    rcams[0, 2, 0] = torch.tensor([0.0, 1.0])  # s = 0 → 1/2, but masked out
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert ccl_loss(cams, rcams, mask, "literal").item() == pytest.approx((2 / 9 + 26 / 169) / 2, abs=1e-6)
    assert ccl_loss(cams, rcams, mask, "off").item() == 0.0
    # contrastive: positives ½(1−1)² and ½(1−9/13)²; negatives (0,1): cos(cam0, rcam1) = 9/13 > ⅔ → ½(9/13 − ⅔)²,
    # (1,0): cos(cam1, rcam0) = 1 → ½(1/3)²
    positive = (0.0 + 0.5 * (4 / 13) ** 2) / 2
    negative = (0.5 * (9 / 13 - 2 / 3) ** 2 + 0.5 * (1 / 3) ** 2) / 2
    assert ccl_loss(cams, rcams, mask, "contrastive").item() == pytest.approx(positive + negative, abs=1e-6)
    with pytest.raises(ConfigError, match="losses.ccl.mode"):
        ccl_loss(cams, rcams, mask, "bogus")


# ---------------------------------------------------------------------------------------- method
CONFIG = {
    "model": {"backbone": "swin_synth", "weights": None, "hff": {"local_channels": 8, "fused_channels": 16}},
    "train": {"batch_size": 2, "resize_long": [40, 80], "crop_size": 64, "lr": 1e-3, "epochs": 1, "warmup_epochs": 0},
    "seeds": {"scales": [1.0, 0.5]},
}
# V1 has no fusion (an unknown key)
V1_CONFIG = {**CONFIG, "model": {key: value for key, value in CONFIG["model"].items() if key != "hff"}}


def test_registry_names() -> None:
    assert METHODS.get("swtformer") is SWTformerV2
    assert METHODS.get("swtformer_v1") is SWTformerV1


def test_training_sample_valid_mask_covers_the_image() -> None:
    """An image whose long side becomes 40 lands whole inside the 64-px crop: valid = its area."""
    method = build_method("swtformer_v1", {**V1_CONFIG, "train": {**CONFIG["train"], "resize_long": [40, 40]}}, 3)
    sample = method.training_sample(np.full((20, 40, 3), 200, np.uint8), np.ones(3, np.float32), np.random.default_rng(0))
    valid = sample["valid"]
    assert valid.sum().item() == 20 * 40
    pixel = (200 / 255 - 0.485) / 0.229  # red channel, ImageNet normalisation
    assert torch.allclose(sample["image"][0][valid > 0], torch.tensor(pixel), atol=1e-5)
    assert torch.all(sample["image"][:, valid == 0] == 0)


def make_batch(method: SWTformerV1, count: int = 2) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(1)
    labels = [np.array([1, 0, 1], np.float32), np.array([0, 1, 0], np.float32)]
    samples = [
        method.training_sample(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8), labels[i % 2], rng) for i in range(count)
    ]
    return torch.utils.data.default_collate(samples)


@pytest.mark.parametrize("name", ["swtformer_v1", "swtformer"])
def test_training_step_and_seed_export(name: str) -> None:
    torch.manual_seed(0)
    method = build_method(name, V1_CONFIG if name == "swtformer_v1" else CONFIG, num_classes=3)
    model = method.build_model(WeightsCatalog({}))
    batch = make_batch(method)
    assert batch["image"].shape == (2, 3, 64, 64) and batch["valid"].shape == (2, 64, 64)
    optimizer, scheduler = method.build_optimizer(model, steps_per_epoch=4)
    losses = method.training_step(model, batch, TrainingProgress(0, 0, 4, 4))
    assert torch.isfinite(losses["loss"])
    optimizer.zero_grad()
    losses["loss"].backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0
    if name == "swtformer":
        assert set(losses) == {"loss", "cls", "gsc", "ccl"}
        assert model.fusion.project_stage4.weight.grad.abs().sum() > 0
    optimizer.step()
    scheduler.step_update(1)

    image = np.random.default_rng(2).integers(0, 256, (45, 77, 3), dtype=np.uint8)  # not a multiple of 32
    seeds = method.infer_seeds(model, image, np.array([1, 0, 1], np.float32))
    expected_keys = [0, 1, 3] if name == "swtformer" else [1, 3]
    assert seeds.keys.tolist() == expected_keys
    assert seeds.maps.shape == (len(expected_keys), 45, 77)
    assert seeds.maps.min() >= 0 and seeds.maps.max() <= 1
    assert seeds.has_background == (name == "swtformer")


def test_gsc_alone_trains_fusion_and_cam_head() -> None:
    """GSC compares CAM with R-CAM: both the CAM head and the HFF convs receive its gradient."""
    torch.manual_seed(0)
    config = {**CONFIG, "losses": {"weights": {"cls": 0.0, "gsc": 1.0, "ccl": 0.0}}}
    method = build_method("swtformer", config, num_classes=3)
    model = method.build_model(WeightsCatalog({}))
    losses = method.training_step(model, make_batch(method), TrainingProgress(0, 0, 1, 1))
    assert losses["loss"].item() == pytest.approx(losses["gsc"].item())
    losses["loss"].backward()
    assert model.fusion.reduce_stage1.weight.grad.abs().sum() > 0
    assert model.head.weight.grad.abs().sum() > 0


def test_unknown_ccl_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="method.losses.ccl.mode"):
        build_method("swtformer", {**CONFIG, "losses": {"ccl": {"mode": "hadsell"}}}, num_classes=3)


def test_missing_backbone_key_names_it() -> None:
    with pytest.raises(ConfigError, match="method.model.backbone"):
        build_method("swtformer_v1", {"train": CONFIG["train"], "model": {}}, num_classes=3).build_model(WeightsCatalog({}))


# ----------------------------------------------------------------------------- synthetic presets
@pytest.mark.parametrize("run", ["swtformer_v1", "swtformer"])
def test_the_synthetic_presets_keep_the_swin_maps_at_stride_16_on_the_image(run: str) -> None:
    """The Swin stand-in's maps have stride 32; on a 128-px synthetic image that is a 4×4 map (a perfect map at
    stride 32 scores 57 mIoU). The synth presets upsample 2× in training and at the seed export's base scale, so
    the maps are no coarser than cam's stride 16 (the criterion fixed at stop 28 before the runs; README, stop 29)."""
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    params = resolve.method_params(config, "synth", run)
    image_size = config["datasets"]["synth"]["generator"]["image_size"]
    method = build_method(run, {**params, "model": {**params["model"], "weights": None}}, num_classes=20)
    model = method.build_model(WeightsCatalog({})).eval()
    image = np.zeros((image_size, image_size, 3), np.uint8)
    base = method._scales()[0]
    with torch.no_grad():
        maps = model(method._scaled_views(image, base, model.stride, torch.device("cpu"))).logits_map
    assert image_size / maps.shape[-1] <= 16
    low, high = params["train"]["resize_long"]
    mean_training_scale = (low + high) / 2 / image_size
    assert model.stride / mean_training_scale <= 16
