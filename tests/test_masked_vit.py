"""MaskedViT: agrees with timm without a mask, masked keys get zero attention, the class token is never
masked, aux-layer tokens, position-table handling."""

from __future__ import annotations

import pytest
import timm
import torch

from wsss_core.models.masked_vit import MaskedViT, key_attention_mask, masked_attention

torch.manual_seed(0)


def tiny_vit(**overrides: object) -> torch.nn.Module:
    arguments = dict(patch_size=8, embed_dim=24, depth=3, num_heads=2, mlp_ratio=2.0, img_size=32, num_classes=0)
    arguments.update(overrides)
    return timm.create_model("vit_small_patch16_224", pretrained=False, **arguments).eval()


def test_without_mask_matches_timm_forward_features() -> None:
    vit = tiny_vit()
    encoder = MaskedViT(vit, aux_layer=-2)
    images = torch.randn(2, 3, 32, 32)
    reference = vit.forward_features(images)  # [B, 1 + 16, D] after the final norm
    out = encoder(images)
    torch.testing.assert_close(out.class_token, reference[:, 0])
    torch.testing.assert_close(out.patch_tokens.flatten(2).transpose(1, 2), reference[:, 1:])
    assert out.patch_tokens.shape == (2, 24, 4, 4)


def test_aux_tokens_are_the_unnormed_output_of_the_aux_block() -> None:
    vit = tiny_vit()
    encoder = MaskedViT(vit, aux_layer=-2)  # block index 1 of 3
    images = torch.randn(1, 3, 32, 32)
    tokens = vit.patch_embed(images)
    tokens = vit._pos_embed(tokens)
    tokens = vit.blocks[1](vit.blocks[0](tokens))
    expected = tokens[:, 1:].transpose(1, 2).reshape(1, 24, 4, 4)
    torch.testing.assert_close(encoder(images).aux_tokens, expected)


def test_masked_attention_equals_manual_softmax_with_zeroed_columns() -> None:
    attention = tiny_vit().blocks[0].attn
    x = torch.randn(1, 5, 24)
    keep = torch.tensor([True, False, True, False, True])
    out = masked_attention(attention, x, keep.view(1, 1, 1, 5))
    qkv = attention.qkv(x).reshape(1, 5, 3, 2, 12).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)
    logits = query @ key.transpose(-2, -1) / 12**0.5
    weights = logits.masked_fill(~keep, float("-inf")).softmax(dim=-1)
    assert torch.all(weights[..., ~keep] == 0)
    manual = attention.proj((weights @ value).transpose(1, 2).reshape(1, 5, 24))
    torch.testing.assert_close(out, manual)


def test_masked_key_cannot_influence_other_tokens() -> None:
    """Changing the pixels of a masked patch changes neither the class token nor the visible patches."""
    encoder = MaskedViT(tiny_vit(), aux_layer=-1)
    images = torch.randn(1, 3, 32, 32)
    changed = images.clone()
    changed[..., 0:8, 8:16] += 5.0  # token (0, 1) = index 1
    key_mask = torch.zeros(1, 16, dtype=torch.bool)
    key_mask[0, 1] = True
    first, second = encoder(images, key_mask), encoder(changed, key_mask)
    torch.testing.assert_close(first.class_token, second.class_token)
    visible = torch.ones(16, dtype=torch.bool)
    visible[1] = False
    torch.testing.assert_close(
        first.patch_tokens.flatten(2)[..., visible], second.patch_tokens.flatten(2)[..., visible]
    )
    # without the mask the same change does reach the class token
    assert not torch.allclose(encoder(images).class_token, encoder(changed).class_token)


def test_class_token_is_never_masked() -> None:
    mask = key_attention_mask(torch.ones(2, 4, dtype=torch.bool), 2, torch.device("cpu"))
    assert mask.shape == (2, 1, 1, 5)
    assert mask[:, 0, 0, 0].all() and not mask[:, 0, 0, 1:].any()
    # every patch masked: attention falls entirely on the class token, outputs stay finite
    encoder = MaskedViT(tiny_vit(), aux_layer=-1)
    out = encoder(torch.randn(2, 3, 32, 32), torch.ones(2, 16, dtype=torch.bool))
    assert torch.isfinite(out.class_token).all()


def test_position_table_is_resampled_and_frozen() -> None:
    encoder = MaskedViT(tiny_vit(), aux_layer=-1)
    assert not encoder.vit.pos_embed.requires_grad
    out = encoder(torch.randn(1, 3, 48, 44))  # 6 × 5 tokens (44 px floors to 5)
    assert out.patch_tokens.shape == (1, 24, 6, 5)
    assert MaskedViT(tiny_vit(), freeze_pos_embed=False).vit.pos_embed.requires_grad


def test_aux_layer_outside_the_blocks_is_a_config_error() -> None:
    from wsss_core.errors import ConfigError

    with pytest.raises(ConfigError, match="aux_layer"):
        MaskedViT(tiny_vit(), aux_layer=3)
