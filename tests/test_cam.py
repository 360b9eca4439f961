"""The CAM baseline (IRN's train_cam / make_cam): output stride, frozen stages and BatchNorm, the loss,
multi-scale + flip fusion on a model whose CAM is known, max-normalisation, keys, one training step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsss_core.errors import ConfigError
from wsss_core.methods import METHODS, build_method
from wsss_core.training.progress import TrainingProgress
from wsss_core.methods.cam import CAM, CAMNet, strided_up_size
from wsss_core.models.backbones import create_backbone
from wsss_core.models.weights import WeightsCatalog

torch.set_num_threads(1)

CONFIG = {
    "model": {"backbone": "resnet_synth", "weights": None},
    "train": {"batch_size": 2, "epochs": 1, "crop_size": 64, "resize_long": [48, 96], "lr": 0.1},
    "seeds": {"scales": [1.0, 0.5]},
}
# identity normalisation: a normalised pixel is its value / 255
PLAIN = {**CONFIG, "model": {**CONFIG["model"], "image_mean": [0.0, 0.0, 0.0], "image_std": [1.0, 1.0, 1.0]}}


def network(frozen_stages: int = 2, batch_norm: str = "fixed", num_classes: int = 3) -> CAMNet:
    torch.manual_seed(0)
    return CAMNet(create_backbone("resnet_synth", None), num_classes, frozen_stages, batch_norm)


def batch_norms(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


# --------------------------------------------------------------------------------------- network
def test_registry_name() -> None:
    assert METHODS.get("cam") is CAM


def test_output_stride_is_16_without_dilation() -> None:
    model = network()
    assert model.stride == 16
    assert model.features(torch.zeros(1, 3, 64, 96)).shape[-2:] == (4, 6)
    assert model.class_maps(torch.zeros(1, 3, 64, 96)).shape == (1, 3, 4, 6)
    for conv in model.backbone.layer4.modules():
        if isinstance(conv, nn.Conv2d):
            assert conv.stride == (1, 1) and conv.dilation == (1, 1)


def test_scores_are_the_global_average_of_the_class_maps() -> None:
    model = network().eval()
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(images), model.class_maps(images).mean(dim=(2, 3)), atol=1e-5, rtol=1e-5)
    assert model.classifier.bias is None


def test_irn_freezes_stem_layer1_layer2_and_fixes_batch_norm() -> None:
    """frozen_stages 2 (IRN's detach after stage 2): no gradient before layer3; fixed BN stays in eval
    after model.train() and its running statistics do not move, while its affine parameters train."""
    model = network(frozen_stages=2, batch_norm="fixed").train()
    assert all(not bn.training for bn in batch_norms(model))
    before = model.backbone.layer3[0].bn1.running_mean.clone()
    F.multilabel_soft_margin_loss(model(torch.randn(2, 3, 64, 64)), torch.tensor([[1.0, 0, 0], [0, 1, 0]])).backward()
    for name in ("conv1", "bn1", "layer1", "layer2"):
        for parameter in getattr(model.backbone, name).parameters():
            assert not parameter.requires_grad and parameter.grad is None, name
    assert model.backbone.layer3[0].conv1.weight.grad is not None
    assert model.backbone.layer3[0].bn2.weight.grad.abs().sum() > 0
    assert model.backbone.layer4[0].bn1.weight.grad is not None  # IRN trains the BN affine of stages 3-4
    torch.testing.assert_close(model.backbone.layer3[0].bn1.running_mean, before)
    backbone, classifier = model.trainable_groups()
    assert {id(p) for p in backbone}.isdisjoint(id(p) for p in model.backbone.layer2.parameters())
    assert [id(p) for p in classifier] == [id(model.classifier.weight)]


def test_stages_follow_modules_replaced_by_sync_batch_norm() -> None:
    """Under DDP the BatchNorm layers become SyncBatchNorm: the stages must run the new modules, and
    fixed BN must stay in eval (SyncBatchNorm in training mode cannot run without a process group)."""
    model = nn.SyncBatchNorm.convert_sync_batchnorm(network(frozen_stages=2, batch_norm="fixed")).train()
    stem = model.stages()[0]
    assert stem[1] is model.backbone.bn1 and isinstance(stem[1], nn.SyncBatchNorm)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_train_batch_norm_mode_keeps_only_frozen_stages_in_eval() -> None:
    model = network(frozen_stages=1, batch_norm="train").train()
    assert not model.backbone.bn1.training and not model.backbone.layer1[0].bn1.training
    assert model.backbone.layer2[0].bn1.training and model.backbone.layer4[0].bn2.training
    assert model.backbone.layer2[0].conv1.weight.requires_grad
    model.eval()
    assert all(not bn.training for bn in batch_norms(model))


def test_frozen_batch_norm_mode_fixes_the_affine_too() -> None:
    model = network(frozen_stages=0, batch_norm="frozen").train()
    assert all(not bn.training and not bn.weight.requires_grad for bn in batch_norms(model))
    assert model.backbone.conv1.weight.requires_grad


@pytest.mark.parametrize(("key", "value"), [("batch_norm", "sync"), ("frozen_stages", 5)])
def test_bad_settings_name_the_key(key: str, value: object) -> None:
    # checked when the method is built from its config (CAMSettings), before any network exists
    with pytest.raises(ConfigError, match=f"method.model.{key} = .*must be"):
        build_method("cam", {**CONFIG, "model": {**CONFIG["model"], key: value}}, num_classes=3)


def test_cam_settings_hold_the_defaults_config_leaves_out() -> None:
    method = build_method("cam", CONFIG, num_classes=3)
    assert method.settings.model.frozen_stages == 2 and method.settings.model.batch_norm == "fixed"
    assert method.settings.train.interpolation == "bicubic" and method.settings.train.poly_power == 0.9
    assert method.settings.seeds.scales == [1.0, 0.5] and method.settings.seeds.interpolation == "bicubic"
    with pytest.raises(ConfigError, match="unknown key 'method.train.epoch'"):
        build_method("cam", {**CONFIG, "train": {**CONFIG["train"], "epoch": 3}}, num_classes=3)


def test_unknown_interpolation_names_the_key() -> None:
    with pytest.raises(ConfigError, match="method.seeds.interpolation"):
        build_method("cam", {**CONFIG, "seeds": {"interpolation": "lanczos"}}, num_classes=3)


# ------------------------------------------------------------------------------------------ loss
class FixedScores(nn.Module):
    """A 'network' whose scores are given."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.scores


def test_loss_is_the_multilabel_soft_margin_by_hand() -> None:
    """scores (2, −1), labels (1, 0): mean of −log σ(2) and −log(1 − σ(−1)) = ½[log(1+e⁻²) + log(1+e⁻¹)]."""
    method = build_method("cam", CONFIG, num_classes=2)
    batch = {"image": torch.zeros(1, 3, 8, 8), "labels": torch.tensor([[1.0, 0.0]])}
    losses = method.training_step(FixedScores(torch.tensor([[2.0, -1.0]])), batch, TrainingProgress(0, 0, 1, 1))
    expected = 0.5 * (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1)))
    assert losses["loss"].item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.220095, abs=1e-6)


# ------------------------------------------------------------------------------------- inference
class KnownCAM(nn.Module):
    """A stand-in network with a hand-computable CAM at stride 16.

    ``mode="left"``: class 0 = the 16×16 mean of the red channel in the left half of the grid (0 in the
    right half: not mirror-symmetric), class 1 = its negative (ReLU must zero it), class 2 = half of
    class 0. ``mode="height"``: every class map is the constant view height / 16 (shows each scale).
    """

    stride = 16

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device

    def class_maps(self, images: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(images[:, :1], self.stride, ceil_mode=True)
        if self.mode == "height":
            return torch.full((images.shape[0], 3, *pooled.shape[-2:]), images.shape[-2] / self.stride)
        width = pooled.shape[-1]
        left = pooled * (torch.arange(width) < width // 2).float()
        return torch.cat([left, -left, 0.5 * left], dim=1)


def two_cell_image(left_red: int, right_red: int) -> np.ndarray:
    image = np.zeros((16, 32, 3), np.uint8)
    image[:, :16, 0], image[:, 16:, 0] = left_red, right_red
    return image


def test_flip_pair_adds_the_reflipped_mirror_map_after_relu() -> None:
    """Grid 1×2, cells a | b. The view gives [a, 0]; the mirror (cells b | a) gives [b, 0], re-flipped
    [0, b]; sum [a, b], upsampled bilinearly to 16×32 (the 8 outer columns of each side exact)."""
    method = build_method("cam", {**PLAIN, "seeds": {"scales": [1.0]}}, num_classes=3)
    cams = method.multi_scale_cams(KnownCAM("left"), two_cell_image(255, 51)).numpy()
    a, b = 1.0, 0.2
    assert cams.shape == (3, 16, 32)
    np.testing.assert_allclose(cams[0][:, :8], a, atol=1e-6)
    np.testing.assert_allclose(cams[0][:, 24:], b, atol=1e-6)
    # column x samples the grid at (x + 0.5) / 16 − 0.5: 0.46875 and 0.53125 of the way from a to b
    np.testing.assert_allclose(cams[0][0, 15:17], [a + (b - a) * 0.46875, a + (b - a) * 0.53125], atol=1e-6)
    np.testing.assert_array_equal(cams[1], 0.0)  # negative map: ReLU before the flip sum


def test_scales_are_summed_at_the_image_size() -> None:
    """Constant maps of value h/16 per view: scales (1, 0.5, 1.5, 2) of a 32-px image give views of
    height 32, 16, 48, 64 → 2·(2 + 1 + 3 + 4) = 20 everywhere (each scale counted for both flips)."""
    method = build_method("cam", {**PLAIN, "seeds": {"scales": [1.0, 0.5, 1.5, 2.0]}}, num_classes=3)
    cams = method.multi_scale_cams(KnownCAM("height"), np.full((32, 40, 3), 90, np.uint8))
    assert cams.shape == (3, 32, 40)
    torch.testing.assert_close(cams, torch.full((3, 32, 40), 20.0))


def test_strided_up_size() -> None:
    assert strided_up_size(20, 40, 16) == (32, 48)
    assert strided_up_size(32, 33, 16) == (32, 48)
    assert strided_up_size(1, 16, 16) == (16, 16)


def test_upsampling_goes_to_the_strided_size_then_crops() -> None:
    """A 20×40 image has a 2×3 grid: IRN upsamples it to 32×48 and crops, so the first 8 rows and
    columns are exactly the first cell (a plain resize to 20×40 would blend them)."""
    method = build_method("cam", {**PLAIN, "seeds": {"scales": [1.0]}}, num_classes=3)
    image = np.zeros((20, 40, 3), np.uint8)
    image[:16, :16, 0] = 255
    cams = method.multi_scale_cams(KnownCAM("left"), image)
    assert cams.shape == (3, 20, 40)
    torch.testing.assert_close(cams[0, :8, :8], torch.ones(8, 8))  # the mirror's left cell is empty


def test_seeds_are_max_normalised_present_classes_without_background() -> None:
    method = build_method("cam", {**PLAIN, "seeds": {"scales": [1.0]}}, num_classes=3)
    seeds = method.infer_seeds(KnownCAM("left"), two_cell_image(255, 51), np.array([1.0, 1.0, 1.0], np.float32))
    assert seeds.keys.tolist() == [1, 2, 3] and not seeds.has_background
    # class 0 max a + ... = 1.0 → 1 / (1 + 1e-5); class 2 is half of class 0: the same after normalisation
    assert seeds.maps[0].max() == pytest.approx(1.0 / (1.0 + 1e-5), abs=1e-6)
    np.testing.assert_allclose(seeds.maps[2], seeds.maps[0], atol=1e-5)
    np.testing.assert_allclose(seeds.maps[0][:, 24:], 0.2 / (1.0 + 1e-5), atol=1e-5)
    np.testing.assert_array_equal(seeds.maps[1], 0.0)  # an all-zero CAM stays 0 (no division by 0)

    only = method.infer_seeds(KnownCAM("left"), two_cell_image(255, 51), np.array([0.0, 0.0, 1.0], np.float32))
    assert only.keys.tolist() == [3] and only.maps.shape == (1, 16, 32)
    none = method.infer_seeds(KnownCAM("left"), two_cell_image(255, 51), np.zeros(3, np.float32))
    assert none.keys.tolist() == [] and none.maps.shape == (0, 16, 32)


# -------------------------------------------------------------------------------------- training
def test_training_sample_is_an_irn_crop() -> None:
    """Long side 40 inside a 64-px crop: the image lands whole, the rest is zero (the mean colour)."""
    config = {**CONFIG, "train": {**CONFIG["train"], "resize_long": [40, 40]}}
    method = build_method("cam", config, num_classes=3)
    sample = method.training_sample(np.full((20, 40, 3), 200, np.uint8), np.array([0, 1, 0], np.float32), np.random.default_rng(0))
    assert sample["image"].shape == (3, 64, 64) and sample["labels"].tolist() == [0.0, 1.0, 0.0]
    red = sample["image"][0]
    pixel = (200 / 255 - 0.485) / 0.229
    assert int(torch.isclose(red, torch.tensor(pixel), atol=1e-4).sum()) == 20 * 40
    assert int((red == 0).sum()) == 64 * 64 - 20 * 40


def test_training_step_trains_with_irn_param_groups() -> None:
    torch.manual_seed(0)
    method = build_method("cam", {**CONFIG, "model": {**CONFIG["model"], "frozen_stages": 2, "batch_norm": "fixed"}}, num_classes=3)
    model = method.build_model(WeightsCatalog({})).train()
    rng = np.random.default_rng(1)
    samples = [
        method.training_sample(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8), np.array(label, np.float32), rng)
        for label in ([1, 0, 1], [0, 1, 0])
    ]
    batch = torch.utils.data.default_collate(samples)
    optimizer, scheduler = method.build_optimizer(model, steps_per_epoch=4)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.1, 1.0])
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(1e-4)
    before = model.classifier.weight.detach().clone()
    frozen_before = model.backbone.layer2[0].conv1.weight.detach().clone()
    losses = method.training_step(model, batch, TrainingProgress(0, 0, 4, 4))
    assert set(losses) == {"loss", "cls"} and torch.isfinite(losses["loss"])
    optimizer.zero_grad()
    losses["loss"].backward()
    optimizer.step()
    scheduler.step_update(num_updates=1)
    assert not torch.equal(model.classifier.weight, before)
    assert torch.equal(model.backbone.layer2[0].conv1.weight, frozen_before)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 1 / 4) ** 0.9)

    seeds = method.infer_seeds(model, rng.integers(0, 256, (45, 77, 3), dtype=np.uint8), np.array([1, 0, 1], np.float32))
    assert seeds.keys.tolist() == [1, 3] and seeds.maps.shape == (2, 45, 77)
    assert seeds.maps.min() >= 0 and seeds.maps.max() <= 1
