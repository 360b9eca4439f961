"""The synthetic pretraining pool, the supervised and DINO objectives, k-NN evaluation, and the exported
weights loading through the same verified path as real checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss_core.data.synth_pretrain import HUE_BINS, PoolParams, pool_classes, pool_image, read_pool, write_pool
from wsss_core.errors import ConfigError
from wsss_core.training.progress import TrainingProgress
from wsss_core.models.backbones import BackboneWeightsError, create_backbone
from wsss_core.models.weights import PretrainedWeights
from wsss_core.losses.dino import dino_loss
from wsss_core.pretraining.dino import DinoModel, DinoPretraining, DinoSettings, cosine
from wsss_core.pretraining.initialisation import apply_init, factor
from wsss_core.pretraining.recipe import Recipe
from wsss_core.pretraining.networks import pooled_features
from wsss_core.stages.pretrain_backbone import knn_top1, pretrain
from wsss_core import workflow_config as resolve


# ------------------------------------------------------------------------------------------ pool
def test_pool_classes_are_distinct_families():
    styles = pool_classes(seed=1, num_classes=100)
    triples = {(s.shape, s.texture, int(s.hue * HUE_BINS)) for s in styles}
    assert len(styles) == 100 and len(triples) == 100
    assert pool_classes(seed=1, num_classes=100) == styles  # deterministic
    assert pool_classes(seed=2, num_classes=100) != styles


def test_pool_images_are_deterministic_labelled_and_disjoint_between_splits():
    params = PoolParams(num_classes=8, train_per_class=2, val_per_class=1, image_size=32)
    styles = pool_classes(params.seed, params.num_classes)
    image, label = pool_image(styles, params, "train", 11)
    again, _ = pool_image(styles, params, "train", 11)
    assert label == 11 % 8 and image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert np.array_equal(image, again)
    val, val_label = pool_image(styles, params, "val", 11)
    assert val_label == label and not np.array_equal(val, image)


def test_written_pool_reads_back(tmp_path):
    params = PoolParams(num_classes=4, train_per_class=3, val_per_class=2, image_size=32)
    summary = write_pool(tmp_path, params)
    images, labels = read_pool(tmp_path, "train")
    assert summary["counts"] == {"train": 12, "val": 8}
    assert images.shape == (12, 32, 32, 3) and sorted(np.bincount(labels)) == [3, 3, 3, 3]
    with pytest.raises(ConfigError, match="does not exist"):
        read_pool(tmp_path / "missing", "train")


@pytest.mark.parametrize("config, message", [
    ({"num_clases": 10}, r"unknown key 'pretraining.pool.num_clases'"),
    ({"num_classes": 1}, r"pretraining.pool.num_classes = 1: must be greater than or equal to 2"),
    ({"image_size": 16}, r"pretraining.pool.image_size = 16: must be greater than or equal to 32"),
])
def test_pool_params_reject_bad_values(config, message):
    with pytest.raises(ConfigError, match=message):
        PoolParams.load(config, "pretraining.pool")


# -------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize("recipe, message", [
    ({"backbone": "vit_synth", "epoch": 3},
     r"unknown key 'pretraining.backbones.x.epoch' in config \(known keys there: .*epochs, .*log_every"),
    ({"backbone": "vit_synth", "epochs": -1}, r"pretraining.backbones.x.epochs = -1: must be greater than or equal to 1"),
    ({"backbone": "vit_synth", "batch_size": "sixteen"}, r"pretraining.backbones.x.batch_size = 'sixteen': must be a valid integer"),
    ({"backbone": "vit_synth", "lr": 0}, r"pretraining.backbones.x.lr = 0: must be greater than or equal to 0.00000001"),
    ({"backbone": "vit_synth", "lr": 1e-4, "min_lr": 1e-3}, r"pretraining.backbones.x = a mapping: min_lr \(0.001\) must not exceed lr"),
    ({"backbone": "vit_synth", "epochs": 2, "warmup_epochs": 2}, r"warmup_epochs \(2\) must be below epochs \(2\)"),
    ({"epochs": 2}, r"config key pretraining.backbones.x.backbone is missing"),
    ({"backbone": "vit_synth", "objective": "simclr"}, r"unknown pretraining objective 'simclr'"),
    ({"backbone": "vit_synth", "objective": "dino", "objective_args": {"momentum": 1.5}},
     r"pretraining.backbones.x.objective_args.momentum = 1.5: must be less than or equal to 1"),
    ({"backbone": "vit_synth", "objective": "dino", "objective_args": {"student_temperature": 0}},
     r"objective_args.student_temperature = 0: must be greater than or equal to 0.001"),
    ({"backbone": "vit_synth", "objective_args": {"label_smoothing": 0.9}}, r"objective_args.label_smoothing = 0.9"),
    ({"backbone": "vit_synth", "init": {"mimetic": {}}},
     r"pretraining.backbones.x.init: unknown backbone initialisation 'mimetic'; known: mimetic_attention, "),
    ({"backbone": "vit_synth", "init": {"mimetic_attention": {"beta_qk": -1}}},
     r"pretraining.backbones.x.init.mimetic_attention.beta_qk = -1: must be greater than or equal to 0"),
    ({"backbone": "vit_synth", "init": {"sincos_position_embedding": {"scale": 2}}},
     r"unknown key 'pretraining.backbones.x.init.sincos_position_embedding.scale'"),
    ({"backbone": "resnet_synth", "init": {"mimetic_attention": {}}},
     r"pretraining.backbones.x.init: mimetic_attention need a timm VisionTransformer .* this backbone is a ResNet: remove"),
])
def test_recipes_reject_bad_values_before_any_job(recipe, message):
    with pytest.raises(ConfigError, match=message):
        resolve.check_pretraining({"pool": {}, "backbones": {"x": recipe}})


def test_log_every_is_a_run_time_key_of_a_recipe():
    """``log_every`` is checked by ``runtime.check``, not the recipe type, and left out of the job's identity."""
    from wsss_core import runtime

    config = {"seed": 3, "pretraining": {"pool": {"num_classes": 4, "workers": 2},
                                         "backbones": {"x": {"backbone": "vit_synth", "epochs": 2, "log_every": 5}}}}
    resolve.check_pretraining(config["pretraining"])  # the type does not see it
    runtime.check(config)
    assert resolve.pretrain_backbone_job(config, "x") == {
        "stage": {"backbone": "vit_synth", "epochs": 2}, "pool": {"num_classes": 4}, "seed": 3}
    passed = runtime.workflow_runtime(config)
    assert passed["sections"] == {"pretraining.backbones.x": {"log_every": 5}}
    attached = runtime.attach({"stage": resolve.pretrain_backbone_job(config, "x")["stage"]}, passed,
                              "pretraining.backbones.x")
    assert runtime.settings(attached, runtime.PRETRAINING_BACKBONE)["log_every"] == 5
    config["pretraining"]["backbones"]["x"]["log_every"] = 0
    with pytest.raises(ConfigError, match=r"pretraining.backbones.x.log_every is 0; a run-time setting"):
        runtime.check(config)


# ----------------------------------------------------------------------------- initialisation
def _vit(**args):
    torch.manual_seed(0)
    return create_backbone("vit_synth", None, **{"img_size": 32, **args})


def test_factor_is_the_best_low_rank_split_of_a_product():
    product = torch.diag(torch.tensor([4.0, 1.0, 0.25]))
    left, right = factor(product, 2)
    assert torch.allclose(left @ right, torch.diag(torch.tensor([4.0, 1.0, 0.0])), atol=1e-6)
    assert torch.allclose(left.abs().sum(0), torch.tensor([2.0, 1.0])) and left.shape == (3, 2) == right.T.shape


def test_mimetic_attention_writes_the_products_it_names():
    """One head spanning the width: W_qᵀW_k = α₁Z₁ + β₁I exactly; without noise the identities themselves."""
    net = _vit(num_heads=1, embed_dim=12, depth=1)
    apply_init(net, {"mimetic_attention": {"alpha_qk": 0.0, "beta_qk": 0.5, "alpha_vo": 0.0, "beta_vo": 0.25}}, "x")
    q, k, v = net.blocks[0].attn.qkv.weight.detach().split(12)
    proj = net.blocks[0].attn.proj.weight.detach()
    assert torch.allclose(q.T @ k, 0.5 * torch.eye(12), atol=1e-5)
    assert torch.allclose(v.T @ proj.T, -0.25 * torch.eye(12), atol=1e-5)
    net = _vit(num_heads=1, embed_dim=12, depth=1)
    torch.manual_seed(3)
    apply_init(net, {"mimetic_attention": {}}, "x")
    torch.manual_seed(3)
    noise = torch.randn(12, 12) / 12 ** 0.5
    q, k, _ = net.blocks[0].attn.qkv.weight.detach().split(12)
    assert torch.allclose(q.T @ k, 0.7 * noise + 0.7 * torch.eye(12), atol=1e-5)


def test_sincos_position_embedding_makes_neighbouring_patches_alike():
    net = apply_init(_vit(), {"sincos_position_embedding": {}}, "x")  # 4 x 4 patches of 8 px
    table = net.pos_embed.detach()[0]
    assert torch.equal(table[0], torch.zeros(96)) and net.pos_embed.requires_grad
    patches = table[1:]
    similarity = patches @ patches.T
    similarity.fill_diagonal_(-math.inf)
    nearest = similarity.argmax(1)
    rows, cols = torch.arange(16) // 4, torch.arange(16) % 4
    steps = (rows[nearest] - rows).abs() + (cols[nearest] - cols).abs()
    assert steps.tolist() == [1] * 16  # every patch's most similar position is a 4-neighbour
    assert not torch.allclose(_vit().pos_embed[0, 1:], patches)


def test_mimetic_heads_attend_locally_before_any_training():
    """The reason for the two: patch-to-patch attention of a fresh ViT is flat; initialised, it is local."""
    from wsss_core.evaluation.diagnostics import mean_row_perplexity
    from wsss_core.models.multi_token_vit import block_with_attention

    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def perplexity(net):
        with torch.no_grad():
            _, attention = block_with_attention(net.blocks[0], net.norm_pre(net._pos_embed(net.patch_embed(images))))
        return mean_row_perplexity(attention[:, :, 1:, 1:].mean(1))

    plain = perplexity(_vit())
    initialised = perplexity(apply_init(_vit(), {"mimetic_attention": {}, "sincos_position_embedding": {}}, "x"))
    assert plain > 15.0 and initialised < 0.6 * plain


# ------------------------------------------------------------------------------------------ k-NN
def test_knn_votes_with_exponential_similarity_weights():
    train = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=1)
    labels = torch.tensor([0, 0, 1])
    test = F.normalize(torch.tensor([[1.0, 0.05], [0.05, 1.0]]), dim=1)
    assert knn_top1(train, labels, test, torch.tensor([0, 1]), num_classes=2, k=1) == 1.0
    # k = 3, temperature 1: the first query sees class 0 twice with high similarity -> class 0
    assert knn_top1(train, labels, test[:1], torch.tensor([0]), num_classes=2, k=3, temperature=1.0) == 1.0
    # the second query: one class-1 neighbour at similarity ~1 vs two class-0 ones at ~0.05 and ~0.16;
    # at temperature 0.07 the exponential weight of the close one wins, at temperature 100 the count wins
    assert knn_top1(train, labels, test[1:], torch.tensor([1]), num_classes=2, k=3, temperature=0.07) == 1.0
    assert knn_top1(train, labels, test[1:], torch.tensor([1]), num_classes=2, k=3, temperature=100.0) == 0.0


# ------------------------------------------------------------------------------------------ DINO
def test_dino_loss_matches_a_hand_computed_pairing():
    torch.manual_seed(0)
    batch, dim = 2, 5
    teacher = torch.randn(2 * batch, dim)
    student = torch.randn(3 * batch, dim)  # 2 global + 1 local view
    center = torch.randn(1, dim)
    loss = dino_loss(student, teacher, center, num_global=2, student_temperature=0.1, teacher_temperature=0.04)
    t = F.softmax((teacher - center) / 0.04, dim=-1).chunk(2)
    s = F.log_softmax(student / 0.1, dim=-1).chunk(3)
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]  # teacher view i against every other student view
    expected = sum((-t[i] * s[v]).sum(-1).mean() for i, v in pairs) / len(pairs)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_cosine_schedule_endpoints():
    assert cosine(0.99, 1.0, 0, 100) == pytest.approx(0.99)
    assert cosine(0.99, 1.0, 50, 100) == pytest.approx(0.995)
    assert cosine(0.99, 1.0, 100, 100) == pytest.approx(1.0)


def _dino(image_size=32):
    recipe = Recipe.load({"backbone": "vit_synth", "objective": "dino", "image_size": image_size,
                                 "clip_grad_norm": 3.0, "objective_args": {"local_size": 16, "num_local": 2, "out_dim": 16,
                                                    "hidden_dim": 16, "bottleneck_dim": 8}}, "r")
    objective = recipe.build_objective(num_classes=4)
    backbone = create_backbone("vit_synth", None, img_size=image_size, dynamic_img_size=True)
    model = objective.build_model(backbone, backbone.num_features)
    optimizer = torch.optim.AdamW(objective.parameters_to_train(model), lr=1e-2)
    objective.attach_optimizer(optimizer)
    return objective, model, optimizer


def test_dino_step_trains_the_student_only_and_the_teacher_follows_by_ema():
    objective, model, optimizer = _dino()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(4, 32, 32, 3), dtype=np.uint8)
    batch = torch.utils.data.default_collate([objective.training_sample(im, 0, rng) for im in images])
    assert batch["global"].shape == (4, 2, 3, 32, 32) and batch["local"].shape == (4, 2, 3, 16, 16)
    teacher_before = [p.clone() for p in model.teacher.parameters()]
    last_before = model.student_head.last_layer.weight.clone()
    progress = TrainingProgress(epoch=0, step=0, steps_per_epoch=10, total_steps=20)
    center_before = model.center.clone()
    losses = objective.training_step(model, batch, progress)
    # the logged per-image teacher entropy, recomputed from the teacher's outputs with the centre it used
    with torch.no_grad():
        views = batch["global"].transpose(0, 1).reshape(-1, 3, 32, 32)
        targets = torch.softmax((model.teacher_head(pooled_features(model.teacher, views)) - center_before) / 0.04, dim=-1)
    expected = -(targets * targets.clamp_min(1e-12).log()).sum(-1).mean()
    assert float(losses["teacher_sample_entropy"]) == pytest.approx(float(expected), rel=1e-4)
    optimizer.zero_grad()
    losses["loss"].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.student_head.last_layer.weight.grad is not None  # backward reaches it...
    objective.before_optimizer_step(model, progress)
    # ...but in epoch 0 < freeze_last_layer_epochs the gradient is dropped, as the authors' code does: AdamW
    # then skips the layer, so it is neither moved nor weight-decayed (a zero gradient would still decay it)
    assert model.student_head.last_layer.weight.grad is None
    optimizer.step()
    assert torch.equal(model.student_head.last_layer.weight, last_before)
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, model.teacher.parameters()))
    objective.training_step(model, batch, TrainingProgress(1, 11, 10, 20))  # EMA of step 10's update
    moved = [not torch.equal(a, b) for a, b in zip(teacher_before, model.teacher.parameters())]
    assert any(moved)
    momentum = cosine(objective.settings.momentum, 1.0, 10, 20)
    student = next(model.student.parameters())
    teacher = next(model.teacher.parameters())
    assert torch.allclose(teacher, momentum * teacher_before[0] + (1 - momentum) * student, atol=1e-6)


def test_dino_clips_each_parameter_by_its_own_norm_and_keeps_the_last_layer_after_epoch_one():
    objective, model, _ = _dino()
    assert objective.clips_gradients and objective.clip == 3.0  # the recipe's clip_grad_norm
    parameters = [*model.student.parameters(), *model.student_head.parameters()]
    for index, parameter in enumerate(parameters):
        parameter.grad = torch.full_like(parameter, 1.0 if index % 2 else 1e-4)
    big = [p for i, p in enumerate(parameters) if i % 2 and p.numel() > 9]
    small = [p for i, p in enumerate(parameters) if not i % 2]
    objective.before_optimizer_step(model, TrainingProgress(epoch=1, step=10, steps_per_epoch=10, total_steps=20))
    # a gradient of norm sqrt(n) > 3 is scaled to norm 3; a small one is left alone; no global rescaling
    assert all(float(p.grad.norm()) == pytest.approx(3.0, rel=1e-4) for p in big)
    assert all(torch.equal(p.grad, torch.full_like(p, 1e-4)) for p in small)
    assert model.student_head.last_layer.weight.grad is not None  # epoch 1: the last layer trains


def test_dino_teacher_temperature_warms_up_as_the_authors_schedule():
    settings = DinoSettings(warmup_teacher_temperature=0.01, teacher_temperature=0.04,
                            warmup_teacher_temperature_epochs=4)
    # main_dino.py: np.concatenate((np.linspace(0.01, 0.04, 4), np.ones(epochs - 4) * 0.04))[epoch]
    expected = [0.01, 0.02, 0.03, 0.04, 0.04, 0.04]
    got = [settings.teacher_temperature_at(TrainingProgress(epoch, epoch * 10, 10, 60)) for epoch in range(6)]
    assert got == pytest.approx(expected)
    assert DinoSettings().teacher_temperature_at(TrainingProgress(0, 0, 10, 60)) == 0.04  # no warm-up by default


def test_dino_weight_decay_follows_its_cosine():
    objective, model, optimizer = _dino()
    optimizer.param_groups[0]["regularized"] = True
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, size=(2, 32, 32, 3), dtype=np.uint8)
    batch = torch.utils.data.default_collate([objective.training_sample(im, 0, rng) for im in images])
    objective.training_step(model, batch, TrainingProgress(0, 5, 10, 10))
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(cosine(0.05, 0.4, 5, 10))
    assert isinstance(DinoSettings().momentum, float) and isinstance(objective, DinoPretraining)


# ------------------------------------------------------------------------ the stage, end to end
@pytest.mark.slow
@pytest.mark.parametrize("name, recipe", [
    ("vit_synth", {"backbone": "vit_synth", "backbone_args": {"img_size": 32},
                   "init": {"mimetic_attention": {}, "sincos_position_embedding": {}}}),
    ("mit_synth", {"backbone": "mit_synth"}),
    ("resnet38_synth", {"backbone": "resnet38",
                        "backbone_args": {"width": 0.0625, "freeze_batch_norm": False, "frozen_stages": []}}),
    ("dino", {"backbone": "vit_synth", "backbone_args": {"img_size": 32, "dynamic_img_size": True},
              "objective": "dino", "objective_args": {"local_size": 16, "num_local": 1, "out_dim": 32,
                                                      "hidden_dim": 16, "bottleneck_dim": 8}}),
])
def test_pretrained_file_loads_through_the_real_path(tmp_path, name, recipe):
    pool = tmp_path / "pool"
    write_pool(pool, PoolParams(num_classes=4, train_per_class=4, val_per_class=2, image_size=32))
    stage = {**recipe, "image_size": 32, "epochs": 2, "batch_size": 8, "warmup_epochs": 0, "log_every": 1}
    output = tmp_path / f"{name}.safetensors"
    report = pretrain({"stage": stage, "seed": 0, "device": "cpu", "num_workers": 0}, pool, output,
                      tmp_path / f"{name}.json")
    assert output.is_file() and 0.0 <= report["metrics"]["knn_top1"] <= 1.0
    assert len(report["history"]) == 4 and all(math.isfinite(r["loss"]) for r in report["history"])
    if recipe.get("objective", "supervised") == "supervised":
        assert 0.0 <= report["metrics"]["top1"] <= 1.0
    # loads as a real checkpoint: every backbone tensor equals the file's
    args = recipe.get("backbone_args", {})
    loaded = create_backbone(recipe["backbone"], PretrainedWeights(name, output, False), **args)
    fresh = create_backbone(recipe["backbone"], None, **args)
    differs = [k for k, v in loaded.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, fresh.state_dict()[k])]
    assert differs, "the loaded backbone equals a random one"
    # and a file of another network is refused by the same path
    if recipe["backbone"] == "vit_synth":
        with pytest.raises(BackboneWeightsError):
            create_backbone("mit_synth", PretrainedWeights(name, output, False))
