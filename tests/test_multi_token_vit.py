"""MultiTokenViT against timm and a naive attention, and the shared attention-map helpers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from wsss_core.models.backbones import create_backbone
from wsss_core.models.multi_token_vit import (
    MultiTokenViT,
    class_to_patch_attention,
    patch_to_patch_attention,
    refine_with_patch_attention,
)


def _vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("vit_synth", None, img_size=32).eval()


def test_one_class_token_matches_timm() -> None:
    vit = _vit()
    encoder = MultiTokenViT(vit).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = vit.blocks(vit.norm_pre(vit._pos_embed(vit.patch_embed(images))))  # timm, before the final norm
        output = encoder(images, vit.cls_token + vit.pos_embed[:, :1])
    assert torch.allclose(output.class_tokens, expected[:, :1], atol=1e-5)
    patches = expected[:, 1:].transpose(1, 2).reshape(2, 96, 4, 4)
    assert torch.allclose(output.patch_tokens, patches, atol=1e-5)
    assert torch.equal(encoder.cls_token, vit.cls_token) and torch.equal(encoder.cls_pos_embed, vit.pos_embed[:, :1])
    assert (encoder.embed_dim, encoder.depth, encoder.num_heads, encoder.patch_size) == (96, 4, 3, 8)


def test_attention_matches_a_naive_computation() -> None:
    vit = _vit()
    encoder = MultiTokenViT(vit).eval()
    images = torch.randn(1, 3, 32, 32)
    class_tokens = torch.randn(1, 3, 96)
    with torch.no_grad():
        output = encoder(images, class_tokens)
        patches = vit.patch_embed(images) + vit.pos_embed[:, 1:]
        tokens = torch.cat([class_tokens, patches], dim=1)[0]  # [N, D] input of block 0
        block = vit.blocks[0]
        normed = F.layer_norm(tokens, (96,), block.norm1.weight, block.norm1.bias, eps=block.norm1.eps)
        qkv = normed @ block.attn.qkv.weight.T + block.attn.qkv.bias
        head_dim = 96 // 3
        for head in range(3):
            query = qkv[:, head * head_dim:(head + 1) * head_dim]
            key = qkv[:, 96 + head * head_dim:96 + (head + 1) * head_dim]
            scores = torch.empty(19, 19)
            for i in range(19):
                for j in range(19):
                    scores[i, j] = (query[i] * key[j]).sum() / math.sqrt(head_dim)
            naive = torch.exp(scores) / torch.exp(scores).sum(dim=1, keepdim=True)
            assert torch.allclose(output.attentions[0][0, head], naive, atol=1e-5)
    assert len(output.attentions) == 4 and output.attentions[3].shape == (1, 3, 19, 19)
    assert torch.allclose(output.attentions[2].sum(-1), torch.ones(1, 3, 19), atol=1e-5)
    assert torch.equal(output.class_tokens_per_block[-1], output.class_tokens)


def test_position_embedding_is_resized_to_the_exact_grid() -> None:
    vit = _vit()
    encoder = MultiTokenViT(vit).eval()
    with torch.no_grad():
        output = encoder(torch.randn(1, 3, 45, 37), torch.zeros(1, 2, 96))  # 45 // 8 = 5, 37 // 8 = 4
    assert output.patch_tokens.shape == (1, 96, 5, 4)
    assert output.attentions[0].shape == (1, 3, 2 + 20, 2 + 20)
    table = vit.pos_embed[:, 1:].reshape(1, 4, 4, 96).permute(0, 3, 1, 2)
    expected = F.interpolate(table, size=(5, 4), mode="bicubic", align_corners=False)
    resized = encoder.patch_position_embedding((5, 4)).reshape(1, 5, 4, 96).permute(0, 3, 1, 2)
    assert torch.allclose(resized, expected)
    assert encoder.patch_position_embedding((4, 4)) is encoder.patch_pos_embed


def test_block_hooks_replace_class_tokens_before_their_block() -> None:
    encoder = MultiTokenViT(_vit()).eval()
    images = torch.randn(2, 3, 32, 32)
    class_tokens = torch.randn(1, 2, 96)
    seen: list[torch.Tensor] = []
    with torch.no_grad():
        plain = encoder(images, class_tokens)
        identity = encoder(images, class_tokens, {2: lambda tokens: seen.append(tokens) or tokens})
        zeroed = encoder(images, class_tokens, {2: torch.zeros_like})
    assert torch.equal(seen[0], plain.class_tokens_per_block[1])
    assert torch.allclose(identity.class_tokens, plain.class_tokens)
    assert torch.equal(zeroed.class_tokens_per_block[1], plain.class_tokens_per_block[1])
    assert not torch.allclose(zeroed.class_tokens_per_block[2], plain.class_tokens_per_block[2])
    with pytest.raises(ValueError, match="outside"):
        encoder(images, class_tokens, {4: torch.zeros_like})


def _toy_attentions() -> tuple[torch.Tensor, torch.Tensor]:
    """Two blocks, two heads, K = 1 class token, two patches (N = 3)."""
    block0 = torch.tensor([[[0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.0, 0.5, 0.5]],
                           [[0.4, 0.1, 0.5], [0.3, 0.2, 0.5], [0.2, 0.3, 0.5]]]).unsqueeze(0)
    block1 = torch.tensor([[[0.6, 0.2, 0.2], [0.5, 0.5, 0.0], [0.1, 0.1, 0.8]],
                           [[0.6, 0.4, 0.0], [0.5, 0.1, 0.4], [0.3, 0.3, 0.4]]]).unsqueeze(0)
    return block0, block1


def test_class_to_patch_attention_sums_head_means_over_blocks() -> None:
    attentions = _toy_attentions()
    # head means, row 0 (class token) to patches: block0 [0.2, 0.5], block1 [0.3, 0.1]
    assert torch.allclose(class_to_patch_attention(attentions, 1, [0]), torch.tensor([[[0.2, 0.5]]]))
    assert torch.allclose(class_to_patch_attention(attentions, 1, None), torch.tensor([[[0.5, 0.6]]]))
    assert torch.allclose(class_to_patch_attention(attentions, 1, [-1]), torch.tensor([[[0.3, 0.1]]]))
    with pytest.raises(ValueError):
        class_to_patch_attention(attentions, 1, [2])


def test_patch_to_patch_attention_sums_head_means_over_blocks() -> None:
    attentions = _toy_attentions()
    # block0 patch rows: [[0.4, 0.4], [0.4, 0.5]]; block1: [[0.3, 0.2], [0.2, 0.6]]
    expected = torch.tensor([[[0.7, 0.6], [0.6, 1.1]]])
    assert torch.allclose(patch_to_patch_attention(attentions, 1, [0, 1]), expected)


def test_refine_with_patch_attention_multiplies_each_channel() -> None:
    cams = torch.tensor([[[[1.0, 2.0]], [[0.0, 4.0]]]])  # [1, 2 channels, 1, 2]
    patch_attention = torch.tensor([[[0.5, 0.5], [1.0, 0.0]]])
    # channel 0: [0.5*1 + 0.5*2, 1*1 + 0*2] = [1.5, 1]; channel 1: [2, 0]
    expected = torch.tensor([[[[1.5, 1.0]], [[2.0, 0.0]]]])
    assert torch.allclose(refine_with_patch_attention(cams, patch_attention), expected)
