"""Backbones: registry names, timm architectures, verified loading of local weight files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from wsss_core.errors import InputError
from wsss_core.models.backbones import BACKBONES, BackboneWeightsError, check_state_dict, create_backbone
from wsss_core.models.weights import PretrainedWeights

PAPER_BACKBONES = ["deit_small", "deit_base", "vit_base", "vit_base_384", "swin_tiny", "dino_vit_small8",
                   "resnet50", "resnet101"]


def test_registry_lists_paper_and_synthetic_backbones() -> None:
    for name in PAPER_BACKBONES + ["vit_synth", "swin_synth", "resnet_synth"]:
        assert name in BACKBONES
    with pytest.raises(KeyError, match="unknown backbone 'vit_huge'"):
        create_backbone("vit_huge", None)


def test_deit_small_and_dino_have_the_papers_architecture() -> None:
    deit = create_backbone("deit_small", None)
    assert (deit.embed_dim, len(deit.blocks), deit.blocks[0].attn.num_heads) == (384, 12, 6)
    assert deit.patch_embed.patch_size == (16, 16) and deit.num_classes == 0
    assert deit.blocks[0].norm1.eps == 1e-6
    dino = create_backbone("dino_vit_small8", None, depth=1)
    assert dino.patch_embed.patch_size == (8, 8)


def test_synthetic_backbones_are_small_and_run() -> None:
    vit = create_backbone("vit_synth", None)
    assert vit.patch_embed.patch_size == (8, 8) and vit.embed_dim == 96 and len(vit.blocks) == 4
    assert sum(p.numel() for p in vit.parameters()) < 1_000_000
    assert vit(torch.zeros(1, 3, 96, 96)).shape == (1, 96)
    resnet = create_backbone("resnet_synth", None)
    assert resnet(torch.zeros(1, 3, 64, 64)).shape == (1, 256)  # the narrow ResNet DeepLab-V2 also uses
    swin = create_backbone("swin_synth", None)
    assert swin(torch.zeros(1, 3, 96, 96)).shape[0] == 1


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_file_loads_every_tensor(tmp_path: Path, suffix: str) -> None:
    source = create_backbone("vit_synth", None)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pth":
        torch.save({"model": source.state_dict()}, path)  # DeiT checkpoints wrap the state dict
    else:
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = create_backbone("vit_synth", PretrainedWeights("vit_synth", path, False))
    for key, tensor in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_position_embedding_is_resampled_for_another_image_size(tmp_path: Path) -> None:
    source = create_backbone("vit_synth", None)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    loaded = create_backbone("vit_synth", PretrainedWeights("vit_synth", path, False), img_size=64)
    assert loaded.pos_embed.shape == (1, 1 + 8 * 8, 96)
    assert torch.equal(loaded.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_wrong_file_fails_loudly(tmp_path: Path) -> None:
    # keys with an unknown prefix: timm would load nothing (non-strict) and leave a random network
    source = create_backbone("vit_synth", None)
    path = tmp_path / "prefixed.pth"
    torch.save({f"encoder.{key}": value for key, value in source.state_dict().items()}, path)
    with pytest.raises(BackboneWeightsError, match="prefixed.pth") as error:
        create_backbone("vit_synth", PretrainedWeights("vit_synth", path, False))
    assert isinstance(error.value, InputError)
    # another architecture's file
    other = tmp_path / "resnet.pth"
    torch.save(create_backbone("resnet_synth", None).state_dict(), other)
    with pytest.raises(BackboneWeightsError, match="resnet.pth"):
        create_backbone("vit_synth", PretrainedWeights("vit_synth", other, False))


def test_check_state_dict_classifies_keys() -> None:
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        model.bias.copy_(torch.tensor([0.5, 0.5]))
    same = check_state_dict(model, {"weight": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "extra": torch.zeros(1)})
    assert same.loaded == ["weight"] and same.missing == ["bias"] and same.unexpected == ["extra"]
    other = check_state_dict(model, {"weight": torch.zeros(2, 2), "bias": torch.zeros(3)})
    assert other.not_loaded == ["weight"] and other.resampled == ["bias"] and other.loaded == []


def test_hub_without_permission_is_refused() -> None:
    with pytest.raises(BackboneWeightsError, match="weights.files.deit_small"):
        create_backbone("deit_small", PretrainedWeights("deit_small", None, False))
