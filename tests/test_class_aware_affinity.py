"""ECA's SAE on hand-checked tensors: background CAM, seed selection (exclusivity, top-k, fallback, valid
tokens), DINO keys/query, affinity graph and foreground cue, CARM for foreground and background,
min-max, momentum prototypes (update, calibration) and the CARM pseudo label."""

from __future__ import annotations

import math

import torch

from wsss_core.models.backbones import create_backbone
from wsss_core.single_stage.class_aware_affinity import (
    FrozenDinoKeys,
    MomentumPrototypes,
    background_cam,
    carm_pseudo_labels,
    class_aware_region_maps,
    foreground_cue,
    key_affinity,
    minmax_maps,
    select_seeds,
)
from wsss_core.single_stage.par import PixelAdaptiveRefinement

SCORES = torch.tensor(
    [
        [0.9, 0.1, 0.2, 0.0, 0.5, 0.3],  # background
        [0.1, 0.9, 0.8, 0.7, 0.4, 0.0],  # class 1
        [0.0, 0.3, 0.85, 0.6, 0.45, 0.2],  # class 2
    ]
)[None]


def as_sets(seeds: torch.Tensor) -> list[list[int]]:
    return [row.nonzero().flatten().tolist() for row in seeds[0]]


def test_background_cam_is_one_minus_max() -> None:
    cams = torch.tensor([[[0.2, 0.9], [0.5, 0.1]]])  # [1, C=2, N=2]
    torch.testing.assert_close(background_cam(cams), torch.tensor([[[0.5, 0.1]]]))


def test_seed_selection_is_exclusive_and_top_k() -> None:
    present = torch.ones(1, 3, dtype=torch.bool)
    # argmax: t0 bg, t1 c1, t2 c2 (0.85 > 0.8), t3 c1, t4 bg, t5 bg
    assert as_sets(select_seeds(SCORES, present, 1.0)) == [[0, 4, 5], [1, 3], [2]]
    # half of the candidates, rounded up: bg 2 of 3 (0.9, 0.5), c1 1 of 2 — t1, not t2 (0.8) which c2 owns
    assert as_sets(select_seeds(SCORES, present, 0.5)) == [[0, 4], [1], [2]]


def test_absent_classes_never_win_and_valid_tokens_only() -> None:
    present = torch.tensor([[True, True, False]])
    # without class 2, t2 goes to class 1 (0.8): candidates t1, t2, t3 → ⌈1.5⌉ = 2 best
    assert as_sets(select_seeds(SCORES, present, 0.5)) == [[0, 4], [1, 2], []]
    valid = torch.tensor([[False, True, True, True, True, True]])
    assert as_sets(select_seeds(SCORES, torch.ones(1, 3, dtype=torch.bool), 0.5, valid))[0] == [4]


def test_top_k_share_is_not_hurt_by_float_rounding() -> None:
    scores = torch.cat([torch.zeros(1, 1, 10), torch.linspace(1.0, 0.1, 10).view(1, 1, 10)], dim=1)
    seeds = select_seeds(scores, torch.ones(1, 2, dtype=torch.bool), 0.3)  # 0.3 · 10 = 3.0000000000000004
    assert as_sets(seeds)[1] == [0, 1, 2]


def test_fallback_seed_for_a_class_that_never_wins() -> None:
    scores = torch.cat([SCORES, torch.tensor([[[0.05, 0.05, 0.1, 0.05, 0.05, 0.05]]])], dim=1)
    present = torch.ones(1, 4, dtype=torch.bool)
    assert as_sets(select_seeds(scores, present, 0.5))[3] == [2]
    assert as_sets(select_seeds(scores, present, 0.5, fallback_top1=False))[3] == []


def test_key_affinity_and_foreground_cue() -> None:
    keys = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]])
    half = 1 / math.sqrt(2)
    expected = torch.tensor([[1.0, half, 0.0], [half, 1.0, half], [0.0, half, 1.0]])
    torch.testing.assert_close(key_affinity(keys)[0], expected)
    query = torch.tensor([[0.0, 3.0]])
    torch.testing.assert_close(foreground_cue(query, keys)[0], torch.tensor([0.0, 1 / math.sqrt(2), 1.0]))
    negative = foreground_cue(torch.tensor([[0.0, -1.0]]), keys)[0]  # the cue can be negative
    torch.testing.assert_close(negative, torch.tensor([0.0, -half, -1.0]))


def test_carm_foreground_and_background_maps() -> None:
    graph = torch.tensor([[[1.0, 0.5, 0.1, -0.2], [0.5, 1.0, 0.3, 0.0], [0.1, 0.3, 1.0, 0.6], [-0.2, 0.0, 0.6, 1.0]]])
    # γ = 0.15 → A = [[1,1,0,0],[1,1,1,0],[0,1,1,1],[0,0,1,1]]
    seeds = torch.tensor([[[False, False, False, True], [True, True, False, False]]])  # bg {3}, class 1 {0, 1}
    cue = torch.tensor([[0.5, 1.0, -0.5, 0.2]])
    carm = class_aware_region_maps(graph, seeds, cue, threshold=0.15)
    torch.testing.assert_close(carm[0, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]))  # no foreground cue
    torch.testing.assert_close(carm[0, 1], torch.tensor([2 * 0.5, 2 * 1.0, 1 * -0.5, 0.0]))
    normalised = minmax_maps(carm)
    torch.testing.assert_close(normalised[0, 1], torch.tensor([0.6, 1.0, 0.0, 0.2]), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(normalised[0, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]), rtol=1e-4, atol=1e-4)


def test_minmax_over_valid_tokens_and_constant_maps() -> None:
    maps = torch.tensor([[[2.0, 4.0, 100.0], [3.0, 3.0, 3.0]]])
    valid = torch.tensor([[True, True, False]])
    out = minmax_maps(maps, valid)
    torch.testing.assert_close(out, torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]]), rtol=1e-4, atol=1e-4)


def test_prototype_update_and_calibration() -> None:
    prototypes = MomentumPrototypes(num_classes=2, dim=2, momentum=0.5)
    features = torch.tensor([[[3.0, 1.0, 0.0, -1.0], [4.0, 0.0, 2.0, 0.0]]])  # tokens (3,4), (1,0), (0,2), (-1,0)
    seeds = torch.zeros(1, 3, 4, dtype=torch.bool)
    seeds[0, 1, [0, 1]] = True  # class 1 seeds at t0, t1; class 2 none; background seeds are not used
    seeds[0, 0, 3] = True
    prototypes.update(features, seeds)
    # first observation: mean of unit tokens (0.6, 0.8) and (1, 0)
    torch.testing.assert_close(prototypes.prototypes[0], torch.tensor([0.8, 0.4]))
    assert prototypes.initialized.tolist() == [True, False]
    torch.testing.assert_close(prototypes.prototypes[1], torch.zeros(2))
    # S_1 = max(cos(P_1, t), 0): P_1/|P_1| = (2, 1)/√5 → t0 2/√5, t1 2/√5, t2 1/√5, t3 clamped to 0
    carm = torch.tensor([[[0.1, 0.2, 0.3, 0.4], [1.0, 0.5, 0.0, 1.0], [0.3, 0.6, 0.9, 0.0]]])
    calibrated = prototypes.calibrate(carm, features)
    # 𝓜_1 ⊙ S² = (0.8, 0.4, 0, 0) → min-max (1, 0.5, 0, 0); background and class 2 (no prototype) unchanged
    torch.testing.assert_close(calibrated[0, 1], torch.tensor([1.0, 0.5, 0.0, 0.0]), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(calibrated[0, 0], carm[0, 0])
    torch.testing.assert_close(calibrated[0, 2], carm[0, 2])
    seeds2 = torch.zeros(1, 3, 4, dtype=torch.bool)
    seeds2[0, 1, 2] = True
    prototypes.update(features, seeds2)  # momentum 0.5 towards (0, 1)
    torch.testing.assert_close(prototypes.prototypes[0], torch.tensor([0.4, 0.7]))


def test_carm_pseudo_label_argmax_box_and_margin() -> None:
    par = PixelAdaptiveRefinement(dilations=(1,), num_iterations=0)  # no propagation: argmax of the maps
    image = torch.rand(1, 3, 8, 8)
    carm = torch.zeros(1, 4, 2, 2)
    carm[0, 0, 0, 0] = 1.0  # background top-left
    carm[0, 1, 0, 1] = 1.0  # class 1 top-right
    carm[0, 2] = 5.0  # class 2 is absent from the image: never chosen
    carm[0, 3, 1, 0], carm[0, 3, 1, 1] = 1.0, 0.2  # class 3 bottom row
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    label = carm_pseudo_labels(par, image, carm, labels)
    assert [int(label[0, 0, 0]), int(label[0, 0, 7]), int(label[0, 7, 0]), int(label[0, 7, 7])] == [0, 1, 3, 3]
    boxed = carm_pseudo_labels(par, image, carm, labels, image_box=torch.tensor([[0, 8, 0, 6]]))
    assert (boxed[0, :, 6:] == 255).all() and int(boxed[0, 0, 0]) == 0
    uncertain = carm_pseudo_labels(par, image, carm, labels, uncertain_margin=0.5)
    assert int(uncertain[0, 7, 7]) == 255 and int(uncertain[0, 0, 0]) == 0  # 0.2 vs 0 is too close


def test_frozen_dino_keys_and_query_of_last_block() -> None:
    torch.manual_seed(0)
    vit = create_backbone("vit_synth", None, depth=2, dynamic_img_size=True)
    dino = FrozenDinoKeys(vit)
    dino.train()
    assert not dino.vit.training and all(not p.requires_grad for p in dino.parameters())
    images = torch.randn(2, 3, 32, 48)
    keys, query, grid = dino(images)
    assert grid == (4, 6) and tuple(keys.shape) == (2, 24, 96) and tuple(query.shape) == (2, 96)
    with torch.no_grad():  # the last block's qkv input, computed step by step
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
        x = vit.blocks[0](x)
        qkv = vit.blocks[1].attn.qkv(vit.blocks[1].norm1(x))
    torch.testing.assert_close(keys, qkv[:, 1:, 96:192])
    torch.testing.assert_close(query, qkv[:, 0, :96])
    assert not keys.requires_grad


def test_carm_grows_a_two_token_cam_to_the_whole_object() -> None:
    # 4×4 grid: class 1 fills the two left columns; ideal keys (object (1, 0), background (0, 1)) and
    # class-token query (1, 0). The CAM fires on only two object tokens.
    is_object = torch.zeros(4, 4, dtype=torch.bool)
    is_object[:, :2] = True
    is_object = is_object.flatten()
    keys = torch.where(is_object[:, None], torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))[None]
    cam = torch.where(is_object, torch.tensor(0.1), torch.tensor(0.0))
    cam[0], cam[4] = 0.9, 0.8
    scores = torch.cat([background_cam(cam.view(1, 1, 16)), cam.view(1, 1, 16)], dim=1)
    seeds = select_seeds(scores, torch.ones(1, 2, dtype=torch.bool), 0.5)
    # class 1: its 2 candidates → ⌈1⌉ = 1 seed (token 0); background: 14 candidates (6 object tokens with
    # M_0 = 0.9, 8 background tokens with M_0 = 1) → the 7 best, all background tokens
    assert as_sets(seeds)[1] == [0] and all(not is_object[t] for t in as_sets(seeds)[0])
    cue = foreground_cue(torch.tensor([[1.0, 0.0]]), keys)
    carm = minmax_maps(class_aware_region_maps(key_affinity(keys), seeds, cue))
    assert torch.equal(carm[0].argmax(dim=0).bool(), is_object)
