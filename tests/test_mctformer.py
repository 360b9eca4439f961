"""MCTformer-V2: losses, fused CAMs, normalisation, augmentation, schedule and seed inference."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from wsss_core.errors import ConfigError
from wsss_core.methods.base import build_method
from wsss_core.training.progress import TrainingProgress
from wsss_core.losses.mctformer import mctformer_losses
from wsss_core.methods.mctformer import (
    DeitAugmentation,
    MCTformerOutput,
    fused_cams,
    minmax_normalize,
)
from wsss_core.models.multi_token_vit import ViTOutput
from wsss_core.models.weights import WeightsCatalog

CONFIG = {
    "name": "mctformer",
    "model": {"backbone": "vit_synth", "weights": None, "drop_path": 0.0, "image_size": 32},
    "train": {"batch_size": 2, "epochs": 4, "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 2,
              "warmup_lr": 1e-6, "min_lr": 1e-5, "crop_size": 32, "scale": [0.5, 1.0],
              "rand_augment": "rand-m9-mstd0.5-inc1", "random_erasing": 0.25},
    "seeds": {"class_attention_blocks": [-3, -2, -1], "patch_attention_blocks": "all", "scales": [1.0], "flip": True},
}


def _method(**seeds: object):
    config = {**CONFIG, "seeds": {**CONFIG["seeds"], **seeds}}
    return build_method("mctformer", config, num_classes=3)


def _output(patch_cams: torch.Tensor, attentions: tuple[torch.Tensor, ...], tokens: torch.Tensor) -> MCTformerOutput:
    encoded = ViTOutput(tokens, torch.zeros(1), attentions, ())
    return MCTformerOutput(tokens.mean(-1), patch_cams.mean((2, 3)), patch_cams, encoded)


def test_losses_are_two_multilabel_soft_margin_terms() -> None:
    labels = torch.tensor([[1.0, 0.0]])
    token_logits = torch.tensor([[0.0, 0.0]])  # each class: -log(1/2)
    patch_logits = torch.tensor([[math.log(3), -math.log(3)]])  # each class: -log(3/4)
    output = MCTformerOutput(token_logits, patch_logits, torch.zeros(1, 2, 1, 1), None)  # type: ignore[arg-type]
    losses = mctformer_losses(output, labels)
    assert losses["token_loss"].item() == pytest.approx(math.log(2))
    assert losses["patch_loss"].item() == pytest.approx(math.log(4 / 3))
    assert losses["loss"].item() == pytest.approx(math.log(8 / 3))


def test_fused_cams_refine_class_attention_times_relu_patch_cam() -> None:
    # one class (K = 1), two patches in a 1×2 grid, one head, two blocks
    block0 = torch.tensor([[[[0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.0, 0.5, 0.5]]]])
    block1 = torch.tensor([[[[0.6, 0.2, 0.2], [0.5, 0.5, 0.0], [0.1, 0.1, 0.8]]]])
    patch_cams = torch.tensor([[[[2.0, -1.0]]]])  # ReLU -> [2, 0]
    output = _output(patch_cams, (block0, block1), torch.zeros(1, 1, 4))
    # A_cp(last block) = [0.2, 0.2] -> fused [0.4, 0]; A_pp(both) = [[1.1, 0.3], [0.6, 1.3]] -> [0.44, 0.24]
    assert torch.allclose(fused_cams(output, [-1], None), torch.tensor([[[[0.44, 0.24]]]]))
    # A_cp(both blocks) = [0.5, 0.7] -> fused [1.0, 0]; A_pp(block 0) = [[0.6, 0.3], [0.5, 0.5]] -> [0.6, 0.5]
    assert torch.allclose(fused_cams(output, None, [0]), torch.tensor([[[[0.6, 0.5]]]]))
    # no refinement
    assert torch.allclose(fused_cams(output, None, []), torch.tensor([[[[1.0, 0.0]]]]))


def test_minmax_normalize_per_channel() -> None:
    maps = torch.tensor([[[1.0, 3.0], [5.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    expected = torch.tensor([[[0.0, 0.5], [1.0, 0.25]], [[0.0, 0.0], [0.0, 0.0]]])
    assert torch.allclose(minmax_normalize(maps), expected, atol=1e-6)


def test_network_starts_from_the_pretrained_cls_token_and_logits_follow_the_paper() -> None:
    torch.manual_seed(0)
    method = _method()
    model = method.build_model(WeightsCatalog({}))
    encoder = model.encoder
    assert torch.equal(model.class_tokens, encoder.cls_token.expand(1, 3, 96))
    assert torch.equal(model.class_pos_embed, encoder.cls_pos_embed.expand(1, 3, 96))
    assert model.head.kernel_size == (3, 3) and model.head.out_channels == 3
    model.eval()
    with torch.no_grad():
        output = model(torch.randn(2, 3, 40, 32))
    assert output.patch_cams.shape == (2, 3, 5, 4)
    assert torch.allclose(output.token_logits, output.encoder.class_tokens.mean(-1))
    assert torch.allclose(output.patch_logits, output.patch_cams.mean((2, 3)))


def test_training_step_backpropagates_into_tokens_and_head() -> None:
    torch.manual_seed(0)
    method = _method()
    model = method.build_model(WeightsCatalog({}))
    batch = {"image": torch.randn(2, 3, 32, 32), "labels": torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])}
    losses = method.training_step(model, batch, TrainingProgress(0, 0, 1, 1))
    losses["loss"].backward()
    assert model.class_tokens.grad.abs().sum() > 0 and model.head.weight.grad.abs().sum() > 0
    optimizer, _ = method.build_optimizer(model, steps_per_epoch=1)
    no_decay = {id(p) for group in optimizer.param_groups if group["weight_decay"] == 0 for p in group["params"]}
    assert id(model.class_tokens) in no_decay and id(model.class_pos_embed) in no_decay
    assert id(model.encoder.blocks[0].attn.qkv.weight) not in no_decay


def test_scheduler_lags_one_epoch_like_the_authors() -> None:
    method = _method()
    model = method.build_model(WeightsCatalog({}))
    optimizer, scheduler = method.build_optimizer(model, steps_per_epoch=1)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-6)  # epoch 0: warm-up start
    scheduler.step(1)  # end of epoch 0: the authors call step(0), so epoch 1 still runs at 1e-6
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-6)
    scheduler.step(2)  # step(1): 1e-6 + (1e-3 - 1e-6) / 2
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5.005e-4)
    scheduler.step(3)  # step(2) = end of warm-up: cosine at t=2 of 4: 1e-5 + (1e-3 - 1e-5) * (1 + cos(pi/2)) / 2
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)
    plain = build_method("mctformer", {**CONFIG, "train": {**CONFIG["train"], "scheduler_epoch_lag": False}}, 3)
    optimizer, scheduler = plain.build_optimizer(plain.build_model(WeightsCatalog({})), steps_per_epoch=1)
    scheduler.step(1)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5.005e-4)


def test_augmentation_is_a_function_of_the_generator_only() -> None:
    image = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    augmentation = DeitAugmentation(crop_size=32, rand_augment="rand-m9-mstd0.5-inc1", random_erasing=0.25)
    state = random.getstate()
    first = augmentation(image, np.random.default_rng(5))
    random.seed(123)  # the global state must not matter
    second = augmentation(image, np.random.default_rng(5))
    assert first.shape == (3, 32, 32) and torch.equal(first, second)
    assert not torch.equal(first, augmentation(image, np.random.default_rng(6)))
    random.setstate(state)
    plain = DeitAugmentation(crop_size=4, scale=(1.0, 1.0), ratio=(1.5, 1.5), flip=False,
                             rand_augment=None, random_erasing=0.0)
    flat = np.full((4, 6, 3), 255, dtype=np.uint8)  # a full-image crop of a white image
    expected = (1.0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(plain(flat, np.random.default_rng(0)), expected.view(3, 1, 1).expand(3, 4, 4), atol=1e-5)


def test_infer_seeds_keeps_present_classes_normalised_and_flip_consistent() -> None:
    torch.manual_seed(0)
    method = _method()
    model = method.build_model(WeightsCatalog({})).eval()
    image = np.random.default_rng(2).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    labels = np.array([1.0, 0.0, 1.0], dtype=np.float32)
    seeds = method.infer_seeds(model, image, labels)
    assert seeds.keys.tolist() == [1, 3] and not seeds.has_background
    assert seeds.maps.shape == (2, 37, 45) and seeds.maps.dtype == np.float32
    assert np.allclose(seeds.maps.reshape(2, -1).min(1), 0.0) and np.allclose(seeds.maps.reshape(2, -1).max(1), 1.0, atol=1e-6)
    mirrored = method.infer_seeds(model, image[:, ::-1].copy(), labels)
    assert np.allclose(mirrored.maps, seeds.maps[:, :, ::-1], atol=1e-5)  # image + flip is symmetric
    none = method.infer_seeds(model, image, np.zeros(3, np.float32))
    assert none.maps.shape == (0, 37, 45)


def test_bad_block_setting_names_the_key() -> None:
    with pytest.raises(ConfigError, match="seeds.class_attention_blocks"):
        _method(class_attention_blocks="last3")
