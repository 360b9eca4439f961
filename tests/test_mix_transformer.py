"""Mix Transformer: official key names, stride-16 layout, unscaled attention logits, weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wsss_core.models.backbones import BACKBONES, BackboneWeightsError, create_backbone
from wsss_core.models.mix_transformer import EfficientAttention, MixTransformer, load_mit_weights
from wsss_core.models.weights import PretrainedWeights


def test_registered_and_stage_shapes_at_output_stride_16() -> None:
    assert "mit_b1" in BACKBONES and "mit_synth" in BACKBONES
    model = create_backbone("mit_synth", None).eval()
    out = model(torch.randn(2, 3, 64, 48))
    assert [tuple(f.shape) for f in out.features] == [(2, 16, 16, 12), (2, 32, 8, 6), (2, 48, 4, 3), (2, 64, 4, 3)]
    assert model.output_stride == 16
    # one attention map per stage-4 block (mit_synth has 2), N4 = 4·3 = 12 tokens, full (no reduction)
    assert [tuple(a.shape) for a in out.last_stage_attentions] == [(2, 2, 12, 12), (2, 2, 12, 12)]


def test_mit_b1_layout_and_official_key_names() -> None:
    model = create_backbone("mit_b1", None)
    state = model.state_dict()
    assert tuple(state["patch_embed1.proj.weight"].shape) == (64, 3, 7, 7)
    assert tuple(state["patch_embed4.proj.weight"].shape) == (512, 320, 3, 3)
    assert model.patch_embed4.proj.stride == (1, 1)
    assert tuple(state["block3.1.attn.sr.weight"].shape) == (320, 320, 2, 2)  # SR ratio 2 in stage 3
    assert "block4.0.attn.sr.weight" not in state  # no reduction in stage 4
    for key in ("block1.0.attn.q.weight", "block1.0.attn.kv.weight", "block1.0.mlp.dwconv.dwconv.weight",
                "block2.1.norm2.weight", "norm4.weight", "patch_embed2.norm.bias"):
        assert key in state
    assert [len(getattr(model, f"block{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    assert model.num_heads == (1, 2, 5, 8)
    assert model.block1[0].norm1.eps == 1e-6 and model.patch_embed1.norm.eps == 1e-5
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(13.15e6, rel=0.02)


def test_attention_logits_are_unscaled_q_dot_k() -> None:
    torch.manual_seed(0)
    attention = EfficientAttention(dim=4, num_heads=2, sr_ratio=1)
    with torch.no_grad():  # identity output projection: the output is the heads' mixed values
        attention.proj.weight.copy_(torch.eye(4))
        attention.proj.bias.zero_()
    x = torch.randn(1, 3, 4)
    out, logits = attention(x, 1, 3)
    q = x @ attention.q.weight.T + attention.q.bias
    kv = x @ attention.kv.weight.T + attention.kv.bias
    k, v = kv[..., :4], kv[..., 4:]
    for head in range(2):
        qh, kh, vh = (t[0, :, 2 * head : 2 * head + 2] for t in (q, k, v))
        expected = qh @ kh.T  # no 1/sqrt(d) scale, no softmax
        torch.testing.assert_close(logits[0, head], expected)
        mixed = torch.softmax(expected / 2**0.5, dim=-1) @ vh  # the forward itself uses the scaled softmax
        torch.testing.assert_close(out[0, :, 2 * head : 2 * head + 2], mixed)


def test_spatial_reduction_shrinks_keys() -> None:
    attention = EfficientAttention(dim=8, num_heads=2, sr_ratio=2)
    _, logits = attention(torch.randn(1, 16, 8), 4, 4)
    assert tuple(logits.shape) == (1, 2, 16, 4)


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save(state, path)
    return path


def test_loads_official_and_prefixed_state_dicts(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = create_backbone("mit_synth", None)
    official = dict(source.state_dict())
    official["head.weight"] = torch.zeros(1000, 64)  # the ImageNet classifier of mit_b*.pth
    official["head.bias"] = torch.zeros(1000)
    path = _save(official, tmp_path / "mit_synth.pth")
    loaded = create_backbone("mit_synth", PretrainedWeights("mit_synth", path, False))
    for key, tensor in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], tensor)
    prefixed = {f"encoder.{key}": value for key, value in source.state_dict().items()}  # smp-style wrapper
    fresh = create_backbone("mit_synth", None)
    load_mit_weights(fresh, _save(prefixed, tmp_path / "smp.pth"))
    torch.testing.assert_close(fresh.block4[1].attn.kv.weight, source.block4[1].attn.kv.weight)


def test_wrong_file_raises_naming_the_file(tmp_path: Path) -> None:
    full = create_backbone("mit_synth", None).state_dict()
    partial = {key: value for key, value in full.items() if "block4" not in key}
    path = _save(partial, tmp_path / "partial.pth")
    with pytest.raises(BackboneWeightsError, match="partial.pth"):
        create_backbone("mit_synth", PretrainedWeights("mit_synth", path, False))
    with pytest.raises(BackboneWeightsError, match="does not fit"):
        narrower = MixTransformer(embed_dims=(8, 16, 24, 32), num_heads=(1, 1, 1, 1), depths=(1, 1, 1, 2))
        load_mit_weights(narrower, _save(full, tmp_path / "x.pth"))
    with pytest.raises(BackboneWeightsError, match="hub"):
        create_backbone("mit_b1", PretrainedWeights("mit_b1", None, True))
