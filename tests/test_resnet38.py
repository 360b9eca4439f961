"""ResNet-38 layout and weight loading, DeepLab-V1 on it, and the IRN / PSA networks' shapes and freezing."""

from __future__ import annotations

import pytest
import torch

from wsss_core.errors import ConfigError
from wsss_core.models.resnet38 import ResNet38, ResNet38WeightsError, create_resnet38
from wsss_core.models.weights import PretrainedWeights, WeightsCatalog
from wsss_core.refine.irn import IRNSettings, build_irnet
from wsss_core.refine.psa import PSASettings, build_affinity_net
from wsss_core.segmentation import NORMALIZATIONS, build_segmentation_network

torch.set_num_threads(1)
TINY = 0.0625  # every channel count / 16


def test_published_layout_and_parameter_names() -> None:
    with torch.device("meta"):
        model = ResNet38()
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert shapes["conv1a.weight"] == (64, 3, 3, 3)
    assert shapes["b2.conv_branch1.weight"] == (128, 64, 1, 1)
    assert shapes["b4_5.conv_branch2b1.weight"] == (512, 512, 3, 3)
    assert shapes["b5.conv_branch2a.weight"] == (512, 512, 3, 3)
    assert shapes["b5_2.conv_branch2b1.weight"] == (1024, 512, 3, 3)
    assert shapes["b6.conv_branch2a.weight"] == (512, 1024, 1, 1)
    assert shapes["b6.conv_branch2b1.weight"] == (1024, 512, 3, 3)
    assert shapes["b7.conv_branch2b2.weight"] == (4096, 2048, 1, 1)
    assert shapes["bn7.running_mean"] == (4096,)
    assert "b2_1.conv_branch1.weight" not in shapes  # same-shape blocks have an identity shortcut
    assert model.b5.conv_branch2a.dilation == (1, 1) and model.b5.conv_branch2b1.dilation == (2, 2)
    assert model.b7.conv_branch2b1.dilation == (4, 4)


def test_feature_strides_and_channels() -> None:
    model = ResNet38(width=TINY).eval()
    features = model.forward_features(torch.randn(1, 3, 33, 41))
    assert features["conv3"].shape == (1, 16, 9, 11)  # stride 4 (ceil)
    assert features["conv4"].shape == (1, 32, 5, 6)  # stride 8
    assert features["conv5"].shape == (1, 64, 5, 6)
    assert features["conv6"].shape == (1, 256, 5, 6)
    assert (features["conv6"] >= 0).all()


def test_psa_freezing() -> None:
    model = ResNet38(width=TINY).train()
    assert not any(p.requires_grad for p in model.b2_2.parameters())
    assert not model.conv1a.weight.requires_grad
    assert model.b3.conv_branch2a.weight.requires_grad
    assert not model.bn7.weight.requires_grad and not model.bn7.training
    with pytest.raises(ConfigError, match="frozen_stages"):
        ResNet38(width=TINY, frozen_stages=("b9",))


def test_weight_file_round_trip(tmp_path) -> None:
    source = ResNet38(width=TINY)
    state = {f"module.{key}": value for key, value in source.state_dict().items()}
    state["module.fc8.weight"] = torch.zeros(20, 256, 1, 1)  # a classifier head is ignored
    path = tmp_path / "res38.pth"
    torch.save({"state_dict": state}, path)
    loaded = create_resnet38(PretrainedWeights("resnet38", path, False), width=TINY)
    assert torch.equal(loaded.b4_3.conv_branch2b1.weight, source.b4_3.conv_branch2b1.weight)
    assert torch.equal(loaded.bn7.running_var, source.bn7.running_var)

    from safetensors.torch import save_file

    safe = tmp_path / "res38.safetensors"
    save_file({key: value.contiguous() for key, value in source.state_dict().items()}, str(safe))
    assert torch.equal(create_resnet38(PretrainedWeights("r", safe, False), width=TINY).conv1a.weight,
                       source.conv1a.weight)


def test_weight_file_of_another_width_is_refused(tmp_path) -> None:
    path = tmp_path / "wrong.pth"
    torch.save(ResNet38(width=TINY * 2).state_dict(), path)
    with pytest.raises(ResNet38WeightsError, match="weights.files.resnet38"):
        create_resnet38(PretrainedWeights("resnet38", path, False), width=TINY)


def test_deeplab_v1_resnet38() -> None:
    model = build_segmentation_network("deeplab_v1_resnet38", 3, {"width": TINY, "weights": None}, WeightsCatalog({}))
    logits = model(torch.randn(2, 3, 40, 48))
    assert logits.shape == (2, 3, 5, 6)
    assert model.normalization == NORMALIZATIONS["imagenet"]
    assert model.head_conv1.dilation == (12, 12) and model.head_conv2.dilation == (12, 12)
    groups = model.parameter_groups(0.1)
    assert [group["lr"] for group in groups] == [0.1, pytest.approx(1.0)]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for group in groups for p in group["params"]} == trainable
    assert not model.backbone.conv1a.weight.requires_grad  # MCTformer freezes conv1a only
    assert model.backbone.b2.conv_branch2a.weight.requires_grad


def test_affinity_net_features_and_groups() -> None:
    settings = PSASettings(width=TINY, weights=None)
    model = build_affinity_net(settings, WeightsCatalog({}))
    assert model(torch.randn(1, 3, 32, 40)).shape == (1, 448, 4, 5)
    groups = {group["name"]: group for group in model.parameter_groups(0.1, 5e-4)}
    assert groups["head_weights"]["lr"] == pytest.approx(1.0)
    assert groups["backbone_weights"]["weight_decay"] == 5e-4
    assert len(groups["head_weights"]["params"]) == 4


def _irn(freeze: bool):
    settings = IRNSettings(backbone="resnet_synth", weights=None, freeze_backbone=freeze,
                           backbone_args={"channels": [8, 16, 32, 64], "stem_width": 8})
    return build_irnet(settings, WeightsCatalog({}))


def test_irnet_outputs_at_stride_four() -> None:
    edge, displacement = _irn(True)(torch.randn(2, 3, 50, 66))
    assert edge.shape == (2, 1, 13, 17) and displacement.shape == (2, 2, 13, 17)


def test_irnet_frozen_backbone_gets_no_gradient() -> None:
    model = _irn(True).train()
    assert not model.backbone.training
    edge, displacement = model(torch.randn(1, 3, 32, 32))
    (edge.sum() + displacement.sum()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.edge_out.weight.grad is not None
    names = [group["name"] for group in model.parameter_groups(0.1)]
    assert names == ["edge", "displacement"]
    trained = _irn(False).train()
    assert trained.backbone.training
    assert [group["name"] for group in trained.parameter_groups(0.1)] == ["edge", "displacement", "backbone"]
