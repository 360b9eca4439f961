"""ToCo: heads, multi-scale + flip CAM/logit fusion, augmentation boxes, local crops, loss schedule,
optimiser groups, and one end-to-end training step + inference on a tiny random ViT."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from wsss_core.data.transforms import random_crop_with_box
from wsss_core.errors import ConfigError
from wsss_core.methods.base import build_method
from wsss_core.training.progress import TrainingProgress
from wsss_core.methods.toco import ToCo, local_crops
from wsss_core.models.weights import WeightsCatalog
from wsss_core.single_stage.cams import multi_scale_cams, multi_scale_logits, normalize_cams
from wsss_core.single_stage.decoders import GMPClassifier, LargeFOV


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A tiny ToCo block; ``overrides`` (sections) are merged into it key by key."""
    config: dict[str, Any] = {
        "model": {"backbone": "vit_synth", "weights": None, "backbone_args": {"depth": 2}, "aux_layer": -1,
                  "projector": {"out_dim": 32, "hidden_dim": 32, "bottleneck_dim": 16}, "decoder": {"channels": 32}},
        "train": {"iterations": 4, "batch_size": 2, "lr": 1e-4, "warmup_steps": 2,
                  "crop_size": 48, "rescale_range": [0.5, 1.5]},
        "losses": {"par": {"dilations": [1, 2, 4], "iterations": 3},
                   "contrast": {"num_local": 3, "local_crop_size": 16, "temperature": 0.5},
                   "schedule": {"segmentation_after": 0}},
        "seeds": {"scales": [1.0, 0.5], "resize": 48},
        "inference": {"scales": [1.0, 1.5]},
    }
    return _merged(config, overrides)


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` written over it, mapping by mapping."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def tiny_batch(method: ToCo, batch_size: int = 2) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    samples = []
    for _ in range(batch_size):
        image = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
        image[8:30, 10:40] = (230, 30, 30)
        samples.append(method.training_sample(image, np.array([1.0, 0.0], dtype=np.float32), rng))
    return default_collate(samples)


# ----------------------------------------------------------------------------------------- heads
def test_gmp_classifier_pools_then_projects_and_cam_is_dense() -> None:
    head = GMPClassifier(2, 1)
    with torch.no_grad():
        head.conv.weight.copy_(torch.tensor([[[[1.0]], [[-1.0]]]]))
    tokens = torch.tensor([[[[1.0, 3.0]], [[2.0, 0.0]]]])  # channel maxima 3 and 2
    assert head(tokens).tolist() == [[3.0 - 2.0]]
    assert head.cam(tokens).tolist() == [[[[1.0 - 2.0, 3.0 - 0.0]]]]


def test_large_fov_is_bias_free_and_keeps_the_grid() -> None:
    decoder = LargeFOV(8, 3, hidden_channels=4)
    assert all(module.bias is None for module in (decoder.conv1, decoder.conv2, decoder.classifier))
    assert decoder.conv1.dilation == (5, 5) and decoder.conv1.padding == (5, 5)
    assert decoder(torch.randn(1, 8, 7, 6)).shape == (1, 3, 7, 6)


# --------------------------------------------------------------------------- CAM / logit fusion
def test_normalize_cams_min_max_per_map() -> None:
    cams = torch.tensor([[[[1.0, 3.0, 5.0]], [[0.0, 0.0, 0.0]]]])
    normalized = normalize_cams(cams)
    torch.testing.assert_close(normalized[0, 0, 0], torch.tensor([0.0, 2 / (4 + 1e-5), 4 / (4 + 1e-5)]))
    assert normalized[0, 1].abs().max() == 0


def first_channel_times(weights: list[float]):
    """A position-dependent "network": channel 0 of the input times fixed column weights."""
    def network(images: torch.Tensor) -> tuple[torch.Tensor]:
        return (images[:, :1] * torch.tensor(weights),)
    return network


def test_multi_scale_cams_fuse_flip_by_max_then_relu() -> None:
    image = torch.tensor([[[[-1.0, 2.0, 4.0]]]]).expand(1, 3, 1, 3)
    # original: [-1, 0, 0]; flipped input [4, 2, -1] × [1, 0, 0] = [4, 0, 0], flipped back [0, 0, 4]
    (cam,) = multi_scale_cams(first_channel_times([1.0, 0.0, 0.0]), image, [1.0])
    torch.testing.assert_close(cam[0, 0, 0], torch.tensor([0.0, 0.0, 4 / (4 + 1e-5)]))


def test_multi_scale_cams_sum_scales() -> None:
    image = torch.ones(1, 3, 2, 2)

    def network(images: torch.Tensor) -> tuple[torch.Tensor]:  # top-left cell = image size
        maps = torch.zeros(images.shape[0], 1, 2, 2)
        maps[:, 0, 0, 0] = images.shape[-1]
        return (maps,)

    # scale 1 → 2 at (0,0) and, flipped back, at (0,1) → max; scale 2 → 4 likewise: sum 6 and 6, rest 0
    (cam,) = multi_scale_cams(network, image, [1.0, 2.0])
    torch.testing.assert_close(cam[0, 0], torch.tensor([[6 / (6 + 1e-5)] * 2, [0.0, 0.0]]))


def test_multi_scale_logits_voc_and_coco_fusion() -> None:
    image = torch.tensor([[[[-1.0, 2.0, 4.0]]]]).expand(1, 3, 1, 3)
    network = lambda x: first_channel_times([1.0, 0.0, 0.0])(x)[0]  # noqa: E731
    summed = multi_scale_logits(network, image, [1.0], (1, 3), flip=True, flip_fuse="sum")
    torch.testing.assert_close(summed[0, 0, 0], torch.tensor([-1.0, 0.0, 4.0]))
    maxed = multi_scale_logits(network, image, [1.0], (1, 3), flip=True, flip_fuse="max")
    torch.testing.assert_close(maxed[0, 0, 0], torch.tensor([0.0, 0.0, 4.0]))
    constant = lambda x: torch.full((x.shape[0], 1, 2, 2), float(x.shape[-1]))  # noqa: E731
    by_max = multi_scale_logits(constant, torch.ones(1, 3, 2, 2), [1.0, 2.0], (2, 2), flip=False, scale_fuse="max")
    by_sum = multi_scale_logits(constant, torch.ones(1, 3, 2, 2), [1.0, 2.0], (2, 2), flip=False, scale_fuse="sum")
    assert by_max.unique().tolist() == [4.0] and by_sum.unique().tolist() == [6.0]


# ----------------------------------------------------------------------------------- augmentation
def test_crop_box_marks_the_image_inside_the_padding() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        crop, box = random_crop_with_box(np.full((20, 30, 3), 7, dtype=np.uint8), 32, rng)
        inside = np.zeros((32, 32), dtype=bool)
        inside[box[0] : box[1], box[2] : box[3]] = True
        assert np.array_equal(crop[..., 0] == 7, inside)
    crop, box = random_crop_with_box(np.ones((50, 60, 3), dtype=np.uint8), 32, rng)
    assert crop.shape == (32, 32, 3) and box.tolist() == [0, 32, 0, 32]


def test_training_sample_is_a_function_of_the_rng() -> None:
    method = build_method("toco", tiny_config(), 2)
    image = np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    labels = np.array([0.0, 1.0], dtype=np.float32)
    first = method.training_sample(image, labels, np.random.default_rng(5))
    again = method.training_sample(image, labels, np.random.default_rng(5))
    other = method.training_sample(image, labels, np.random.default_rng(6))
    assert set(first) == {"image", "global_view", "local_view", "labels", "image_box"}
    for key in ("image", "global_view", "local_view"):
        assert first[key].shape == (3, 48, 48)
        torch.testing.assert_close(first[key], again[key])
    assert not torch.equal(first["image"], other["image"])
    top, bottom, left, right = first["image_box"].tolist()
    assert 0 <= top < bottom <= 48 and 0 <= left < right <= 48


def test_local_crops_centre_on_uncertain_or_background_and_flag_by_mean_roi() -> None:
    roi = torch.full((1, 20, 20), 2, dtype=torch.long)
    roi[0, :, :8] = 0  # background strip on the left
    roi[0, :, 8:10] = 1
    views = roi[:, None].float().expand(1, 3, 20, 20).contiguous()  # crops reveal their ROI
    torch.manual_seed(0)
    crops, flags = local_crops(views, roi, num_crops=6, crop_size=6, positive_ratio=0.2)
    assert crops.shape == (1, 6, 3, 6, 6) and flags.shape == (1, 6)
    for crop, flag in zip(crops[0], flags[0]):
        assert crop[0, 3, 3] <= 1  # the centre pixel is background or uncertain
        assert bool(flag) == bool(crop[0].mean() > 0.2)
    assert flags.min() == 0  # some crop lies fully in the background strip


def test_local_crops_fall_back_to_anywhere_when_all_foreground() -> None:
    roi = torch.full((1, 12, 12), 2, dtype=torch.long)
    crops, flags = local_crops(torch.zeros(1, 3, 12, 12), roi, num_crops=4, crop_size=6)
    assert crops.shape == (1, 4, 3, 6, 6) and flags.all()


# ------------------------------------------------------------------------------------- config
def test_loss_schedule_voc_and_toco_coco() -> None:
    voc = ToCo(tiny_config(losses={"schedule": {"segmentation_after": 2000}}), 2)
    assert voc.active_loss_weights(2000)["segmentation"] == 0.0
    assert voc.active_loss_weights(2001) == {"cls": 1.0, "cls_aux": 1.0, "affinity": 0.2, "contrast": 0.5,
                                             "segmentation": 0.1}
    coco = ToCo(tiny_config(losses={"schedule": {"segmentation_after": 8000, "token_losses_after": 12000}}), 2)
    assert coco.active_loss_weights(10000)["affinity"] == 0.0 and coco.active_loss_weights(10000)["segmentation"] == 0.1
    assert coco.active_loss_weights(12001)["contrast"] == 0.5


def test_reg_loss_and_unknown_box_units_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="losses.weights.reg"):
        ToCo(tiny_config(losses={"weights": {"reg": 0.05}}), 2)
    with pytest.raises(ConfigError, match="losses.affinity_box_units"):
        ToCo(tiny_config(losses={"affinity_box_units": "px"}), 2)


# ---------------------------------------------------------------------------- training/inference
@pytest.fixture(scope="module")
def method_and_model() -> tuple[ToCo, torch.nn.Module]:
    torch.manual_seed(0)
    method = build_method("toco", tiny_config(), 2)
    return method, method.build_model(WeightsCatalog({}))


def test_optimizer_groups_and_head_learning_rate(method_and_model: tuple[ToCo, torch.nn.Module]) -> None:
    method, model = method_and_model
    optimizer, scheduler = method.build_optimizer(model, steps_per_epoch=2)
    base = [group["initial_lr"] if "initial_lr" in group else group["lr"] for group in optimizer.param_groups]
    assert base == pytest.approx([1e-4, 1e-4, 1e-3, 1e-3])
    grouped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) not in grouped for p in model.projector_teacher.parameters())
    assert id(model.encoder.vit.pos_embed) not in grouped
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * 1e-6)  # warm-up starts at ratio × lr


def test_training_step_losses_gradients_and_ema(method_and_model: tuple[ToCo, torch.nn.Module]) -> None:
    method, shared_model = method_and_model
    model = copy.deepcopy(shared_model)  # the teacher is moved off the student below; the fixture stays as built
    torch.manual_seed(1)
    with torch.no_grad():  # teacher == student at init, where any EMA leaves it unchanged: make them differ
        for parameter in model.projector_teacher.parameters():
            parameter.add_(torch.randn_like(parameter))
    teacher_before = [p.clone() for p in model.projector_teacher.parameters()]
    student_before = [p.detach().clone() for p in model.projector.parameters()]
    batch = tiny_batch(method)
    model.zero_grad()
    losses = method.training_step(model, batch, TrainingProgress(0, 5, 2, 10))
    assert set(losses) == {"loss", "cls", "cls_aux", "segmentation", "affinity", "contrast"}
    assert all(torch.isfinite(value) for value in losses.values())
    losses["loss"].backward()
    assert model.decoder.classifier.weight.grad is not None
    assert model.projector.mlp[0].weight.grad is not None
    assert model.encoder.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.projector_teacher.parameters())
    # EMA before the forward: teacher ← m·teacher + (1 − m)·student with m = contrast.momentum (default 0.9)
    assert method.momentum == 0.9
    pairs = zip(teacher_before, student_before, model.projector_teacher.parameters())
    for before, student, teacher in pairs:
        assert not torch.equal(teacher, before)
        torch.testing.assert_close(teacher, 0.9 * before + 0.1 * student)


def test_infer_seeds_and_segment_shapes(method_and_model: tuple[ToCo, torch.nn.Module]) -> None:
    method, model = method_and_model
    image = np.random.default_rng(2).integers(0, 255, (30, 45, 3), dtype=np.uint8)
    seeds = method.infer_seeds(model, image, np.array([0.0, 1.0], dtype=np.float32))
    assert seeds.keys.tolist() == [2] and seeds.maps.shape == (1, 30, 45)
    assert seeds.maps.dtype == np.float32 and 0.0 <= seeds.maps.min() and seeds.maps.max() <= 1.0
    probabilities = method.segment(model, image)
    assert probabilities.shape == (3, 30, 45) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, rtol=1e-5)
    assert method.end_to_end


def test_model_file_round_trip_rebuilds_the_same_network(
    method_and_model: tuple[ToCo, torch.nn.Module], tmp_path: Any
) -> None:
    """What infer_segmentation does: rebuild from the method config, load the saved state dict strictly."""
    method, model = method_and_model
    path = tmp_path / "model.pt"
    torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)
    rebuilt = build_method("toco", method.config, 2).build_model(WeightsCatalog({}))
    rebuilt.load_state_dict(torch.load(path, weights_only=True)["model"])
    image = np.random.default_rng(4).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    np.testing.assert_allclose(method.segment(rebuilt.eval(), image), method.segment(model.eval(), image), atol=1e-6)


def test_misspelt_section_keys_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'method.losses.contrast.temprature' .*known keys there: .*temperature"):
        ToCo(tiny_config(losses={"contrast": {"temprature": 0.5}}), 2)
    with pytest.raises(ConfigError, match="method.inference.flip_fuse"):
        ToCo(tiny_config(inference={"flip_fuse": "product"}), 2)


def test_pseudo_labels_are_the_par_refined_seed_with_one_threshold(
    method_and_model: tuple[ToCo, torch.nn.Module]
) -> None:
    from wsss_core.single_stage.pseudo_labels import par_refined_labels

    method, model = method_and_model
    model.eval()
    assert method.pseudo_labels == "par"
    image = np.random.default_rng(5).integers(0, 255, (30, 45, 3), dtype=np.uint8)
    labels = np.array([0.0, 1.0], dtype=np.float32)
    mask = method.infer_pseudo_labels(model, image, labels)
    assert mask.shape == (30, 45) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 2}
    # the same label by hand: the seed map in a [1, C, H, W] stack, PAR with low = high = background
    seeds = method.infer_seeds(model, image, labels)
    cams = torch.zeros(1, 2, 30, 45)
    cams[0, 1] = torch.from_numpy(seeds.maps[0])
    expected = par_refined_labels(
        method.par, torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, cams, torch.tensor([[0.0, 1.0]]),
        0.5, 0.5, None, method.par_downscale,
    )[0]
    np.testing.assert_array_equal(mask, expected.numpy())
