"""DeepLab-V2 network, its parameter groups and weight loading, and the multi-scale inference helper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from wsss_core.errors import ConfigError
from wsss_core.models.weights import MissingWeightsError, WeightsCatalog
from wsss_core.segmentation import (
    NORMALIZATIONS,
    SEGMENTATION_NETWORKS,
    build_segmentation_network,
    parameter_groups,
)
from wsss_core.segmentation.deeplab_v2 import ASPPv2
from wsss_core.segmentation.inference import predict_probabilities
from wsss_core.losses.segmentation import resize_labels, segmentation_loss
from wsss_core.segmentation.training import SegmentationSample

torch.set_num_threads(1)

NARROW = {"channels": [8, 16, 32, 64], "layers": [1, 1, 1, 1], "stem_width": 8}


def tiny_config(**extra: object) -> dict:
    return {"backbone": "resnet18", "backbone_args": NARROW, "weights": None, **extra}


def tiny_network(**extra: object) -> torch.nn.Module:
    return build_segmentation_network("deeplab_v2", 3, tiny_config(**extra), WeightsCatalog({}))


# ------------------------------------------------------------------------------------------ network
def test_registry_has_deeplab_v2() -> None:
    assert "deeplab_v2" in SEGMENTATION_NETWORKS


@pytest.mark.parametrize("size, expected", [((48, 40), (6, 5)), ((33, 33), (5, 5))])
def test_logits_have_stride_8(size: tuple[int, int], expected: tuple[int, int]) -> None:
    network = tiny_network().eval()
    with torch.no_grad():
        logits = network(torch.randn(2, 3, *size))
    # stride-2 convolutions round up: ceil(ceil(ceil(33/2)/2)/2) = 5
    assert logits.shape == (2, 3, *expected)


def test_aspp_sums_four_dilated_branches() -> None:
    aspp = ASPPv2(in_channels=1, num_labels=1)
    assert [branch.dilation for branch in aspp.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    with torch.no_grad():
        for position, branch in enumerate(aspp.branches):
            branch.weight.fill_(1.0)
            branch.bias.fill_(float(position))  # biases 0, 1, 2, 3
    # On a 5×5 input every dilation (≥ 6) leaves only the centre tap inside the image:
    # each branch gives input + bias, so the sum is 4 · 2 + (0 + 1 + 2 + 3) = 14.
    out = aspp(torch.full((1, 1, 5, 5), 2.0))
    assert out.shape == (1, 1, 5, 5)
    assert torch.allclose(out, torch.full_like(out, 14.0))


def test_aspp_init_follows_deeplab_pytorch() -> None:
    aspp = ASPPv2(in_channels=256, num_labels=21)
    weights = torch.cat([branch.weight.flatten() for branch in aspp.branches])
    assert abs(weights.std().item() - 0.01) < 1e-3
    assert all(torch.count_nonzero(branch.bias) == 0 for branch in aspp.branches)


def test_frozen_batch_norm_stays_frozen_in_train_mode() -> None:
    network = tiny_network()
    buffers = {name: value.clone() for name, value in network.backbone.named_buffers()}
    network.eval()
    images = torch.randn(2, 3, 32, 32) * 3 + 1
    with torch.no_grad():
        expected = network(images)
    network.train()
    logits = network(images)
    assert torch.allclose(logits, expected, atol=1e-6)
    logits.sum().backward()
    for name, value in network.backbone.named_buffers():
        assert torch.equal(value, buffers[name]), name
    # frozen BN has no parameters: only convolution weights are trained in the backbone
    assert all(parameter.dim() == 4 for parameter in network.backbone.parameters())


def test_random_init_keeps_residual_branches_alive_under_frozen_batch_norm() -> None:
    network = tiny_network()  # weights null, batch_norm frozen
    last_scales = [block.bn2.weight for layer in ("layer1", "layer4") for block in getattr(network.backbone, layer)]
    assert all(torch.count_nonzero(scale) == scale.numel() for scale in last_scales)


def test_trainable_batch_norm_updates_its_statistics() -> None:
    network = tiny_network(batch_norm="train").train()
    before = network.backbone.bn1.running_mean.clone()
    network(torch.randn(2, 3, 32, 32) + 5)
    assert not torch.equal(network.backbone.bn1.running_mean, before)


def test_parameter_groups_multipliers_and_weight_decay() -> None:
    network = tiny_network()
    groups = parameter_groups(network, base_lr=2.5e-4)
    optimizer = torch.optim.SGD(groups, lr=2.5e-4, momentum=0.9, weight_decay=5e-4)
    lrs = [group["lr"] for group in optimizer.param_groups]
    decays = [group["weight_decay"] for group in optimizer.param_groups]
    assert lrs == pytest.approx([2.5e-4, 2.5e-3, 5e-3])
    assert decays == [5e-4, 5e-4, 0.0]
    assert [len(group["params"]) for group in optimizer.param_groups[1:]] == [4, 4]
    assert all(parameter.dim() == 1 for parameter in optimizer.param_groups[2]["params"])
    grouped = [id(parameter) for group in groups for parameter in group["params"]]
    assert sorted(grouped) == sorted(id(parameter) for parameter in network.parameters())


def test_bad_config_values_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="stage.batch_norm"):
        tiny_network(batch_norm="sometimes")
    with pytest.raises(ConfigError, match="stage.normalization"):
        tiny_network(normalization="zscore")
    with pytest.raises(ConfigError, match="stage.backbone"):
        build_segmentation_network("deeplab_v2", 3, {"backbone": "no_such_net"}, WeightsCatalog({}))


# ------------------------------------------------------------------------------------------ weights
@pytest.mark.parametrize("suffix", ["safetensors", "pth"])
def test_weights_load_from_a_local_file_through_the_timm_overlay(tmp_path, suffix: str) -> None:
    source = timm.create_model("resnet18", channels=(8, 16, 32, 64), layers=(1, 1, 1, 1), stem_width=8)
    with torch.no_grad():
        source.bn1.running_mean.uniform_(-1, 1)
    state = {key: value.contiguous() for key, value in source.state_dict().items()}
    path = tmp_path / f"resnet.{suffix}"
    if suffix == "safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)

    config = tiny_config(weights="imagenet_resnet")
    network = build_segmentation_network("deeplab_v2", 3, config, WeightsCatalog({"imagenet_resnet": str(path)}))
    loaded = network.backbone
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)
    assert torch.equal(loaded.layer4[0].conv2.weight, source.layer4[0].conv2.weight)
    assert torch.equal(loaded.bn1.running_mean, source.bn1.running_mean)  # statistics kept when frozen


def test_missing_weight_file_names_the_key(tmp_path) -> None:
    catalog = WeightsCatalog({"imagenet_resnet": str(tmp_path / "absent.pth")})
    with pytest.raises(MissingWeightsError, match="weights.files.imagenet_resnet"):
        build_segmentation_network("deeplab_v2", 3, tiny_config(weights="imagenet_resnet"), catalog)


def test_weight_file_of_another_architecture_is_a_config_error(tmp_path) -> None:
    other = timm.create_model("resnet18", channels=(16, 32, 64, 128), layers=(1, 1, 1, 1), stem_width=16)
    path = tmp_path / "other.safetensors"
    save_file({key: value.contiguous() for key, value in other.state_dict().items()}, str(path))
    with pytest.raises(ConfigError, match="weights.files.imagenet_resnet"):
        build_segmentation_network(
            "deeplab_v2", 3, tiny_config(weights="imagenet_resnet"), WeightsCatalog({"imagenet_resnet": str(path)})
        )


# ------------------------------------------------------------------------------------ normalisation
def test_normalizations() -> None:
    pixel = np.array([[[123.675, 116.28, 103.53 + 57.375]]], dtype=np.float32)  # RGB
    assert NORMALIZATIONS["imagenet"](pixel)[:, 0, 0].tolist() == pytest.approx([0.0, 0.0, 1.0], abs=1e-5)
    caffe = NORMALIZATIONS["caffe"](np.array([[[130, 120, 110]]], dtype=np.uint8))
    assert NORMALIZATIONS["caffe"].array(np.array([[[130, 120, 110]]], np.uint8)).shape == (1, 1, 3)
    # BGR order, Caffe mean subtracted, no scaling: B 110 - 104.008, G 120 - 116.669, R 130 - 122.675
    assert caffe[:, 0, 0].tolist() == pytest.approx([5.992, 3.331, 7.325], abs=1e-4)


# ------------------------------------------------------------------------------------------ inference
def height_logits(batch: torch.Tensor) -> torch.Tensor:
    """Class 0 logit 0, class 1 logit = the input height, at stride 2 (needs resizing back)."""
    b, _, h, w = batch.shape
    logits = torch.zeros(b, 2, (h + 1) // 2, (w + 1) // 2)
    logits[:, 1] = float(h)
    return logits


@pytest.mark.parametrize("fuse, logit", [("max", 8.0), ("mean", 6.0)])
def test_scales_are_fused_by_max_or_mean(fuse: str, logit: float) -> None:
    image = torch.zeros(3, 8, 6)
    probabilities = predict_probabilities(height_logits, image, scales=(0.5, 1.0), flip=False, fuse=fuse)
    assert probabilities.shape == (2, 8, 6)
    # heights 4 and 8: max 8, mean 6; softmax([0, x]) gives class 1 the probability 1 / (1 + e^-x)
    assert torch.allclose(probabilities[1], torch.full((8, 6), 1 / (1 + math.exp(-logit))), atol=1e-6)
    assert torch.allclose(probabilities.sum(0), torch.ones(8, 6), atol=1e-6)


def test_flipped_views_are_mirrored_back() -> None:
    def column_logits(batch: torch.Tensor) -> torch.Tensor:
        b, _, h, w = batch.shape  # a fixed left-to-right ramp whatever the input: not flip-equivariant
        ramp = torch.arange(w, dtype=torch.float32).expand(b, h, w)
        return torch.stack([torch.zeros_like(ramp), ramp], dim=1)

    image = torch.zeros(3, 2, 4)
    unflipped = predict_probabilities(column_logits, image, scales=(1.0,), flip=False, fuse="mean")
    assert torch.allclose(unflipped[1, 0], torch.sigmoid(torch.tensor([0.0, 1.0, 2.0, 3.0])))
    # the mirrored view's ramp, mirrored back, runs 3, 2, 1, 0: the mean is 1.5 everywhere
    flipped = predict_probabilities(column_logits, image, scales=(1.0,), flip=True, fuse="mean")
    assert torch.allclose(flipped[1], torch.full((2, 4), torch.sigmoid(torch.tensor(1.5)).item()), atol=1e-6)


def test_fusing_probabilities_differs_from_fusing_logits() -> None:
    def size_dependent_logits(batch: torch.Tensor) -> torch.Tensor:
        b, _, h, w = batch.shape  # class 0: 12 / h, class 1: h / 4 → h = 4: [3, 1], h = 8: [1.5, 2]
        logits = torch.empty(b, 2, h, w)
        logits[:, 0], logits[:, 1] = 12.0 / h, h / 4.0
        return logits

    image = torch.zeros(3, 8, 8)
    by_logits = predict_probabilities(size_dependent_logits, image, (0.5, 1.0), flip=False, fuse="max")
    # max logits [3, 2] → class 1: 1 / (1 + e^1)
    assert by_logits[1, 0, 0].item() == pytest.approx(1 / (1 + math.e), rel=1e-5)
    by_probabilities = predict_probabilities(
        size_dependent_logits, image, (0.5, 1.0), flip=False, fuse="max", space="probabilities"
    )
    # per-view softmax: h = 4 → [1/(1+e^-2), 1/(1+e^2)], h = 8 → [1/(1+e^0.5), 1/(1+e^-0.5)];
    # max per class [0.880797, 0.622459], renormalised: class 1 = 0.622459 / 1.503256
    assert by_probabilities[1, 0, 0].item() == pytest.approx(0.622459 / 1.503256, rel=1e-5)
    assert torch.allclose(by_probabilities.sum(0), torch.ones(8, 8), atol=1e-6)


def test_inference_with_the_network_has_the_image_size() -> None:
    network = tiny_network().eval()
    probabilities = predict_probabilities(network, torch.randn(3, 37, 29), fuse="max")
    assert probabilities.shape == (3, 37, 29)
    assert torch.allclose(probabilities.sum(0), torch.ones(37, 29), atol=1e-5)


def test_inference_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="fuse"):
        predict_probabilities(height_logits, torch.zeros(3, 4, 4), fuse="median")
    with pytest.raises(ValueError, match="scales"):
        predict_probabilities(height_logits, torch.zeros(3, 4, 4), scales=())
    with pytest.raises(ValueError, match="space"):
        predict_probabilities(height_logits, torch.zeros(3, 4, 4), space="odds")
    with pytest.raises(TypeError, match="normalised float tensor"):
        predict_probabilities(height_logits, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="one image"):
        predict_probabilities(height_logits, torch.zeros(2, 3, 4, 4))


# ------------------------------------------------------------------------------------- training loss
def test_labels_are_resized_by_pixel_centre_nearest_neighbour() -> None:
    labels = torch.arange(16).reshape(1, 4, 4)
    # output pixel i samples input row/column floor((i + 0.5) · 2) = 1, 3
    assert resize_labels(labels, (2, 2)).tolist() == [[[5, 7], [13, 15]]]


def test_segmentation_loss_by_hand() -> None:
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = math.log(3.0)  # softmax: class 0 → 1/4, class 1 → 3/4
    labels = torch.tensor([[[0, 1], [1, 255]]])
    # pixels: -log(1/4), -log(3/4), -log(3/4), ignored → mean over 3
    expected = (math.log(4) + 2 * math.log(4 / 3)) / 3
    assert segmentation_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    all_ignored = segmentation_loss(logits, torch.full((1, 2, 2), 255))
    assert all_ignored.item() == 0.0


def test_training_sample_pads_with_mean_and_ignore() -> None:
    image = np.full((4, 4, 3), (123.675, 116.28, 103.53), dtype=np.float32) + 58.395 * np.eye(4)[..., None]
    mask = np.ones((4, 4), dtype=np.uint8)
    sample = SegmentationSample(crop_size=6, scales=(1.0,), normalization=NORMALIZATIONS["imagenet"], flip=False)
    out = sample(image, mask, np.random.default_rng(0))
    assert out["image"].shape == (3, 6, 6) and out["mask"].shape == (6, 6)
    assert out["mask"].dtype == torch.int64
    # the 4×4 image lands somewhere in the 6×6 crop: labels 1 there, 255 (ignore) around it
    rows, columns = np.nonzero(out["mask"].numpy() == 1)
    top, left = rows.min(), columns.min()
    assert len(rows) == 16 and rows.max() == top + 3 and columns.max() == left + 3
    assert (out["mask"] != 1).sum() == 20 and (out["mask"][out["mask"] != 1] == 255).all()
    window = (slice(top, top + 4), slice(left, left + 4))
    assert torch.allclose(out["image"][0][window], torch.eye(4), atol=1e-5)  # red: (x - mean) / std
    outside = torch.ones(6, 6, dtype=torch.bool)
    outside[window] = False
    assert (out["image"][:, outside] == 0).all()  # the padding is the mean colour


def test_training_sample_scale_and_crop() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[4:, :] = 2
    sample = SegmentationSample(crop_size=4, scales=(0.5,), normalization=NORMALIZATIONS["imagenet"], flip=False)
    out = sample(image, mask, np.random.default_rng(3))
    # scaled to 4×4 (nearest): rows 0-1 background, rows 2-3 class 2; the 4×4 crop is the whole image
    assert out["mask"].tolist() == [[0] * 4, [0] * 4, [2] * 4, [2] * 4]
