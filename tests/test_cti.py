"""CTI: token layout, min-max normalisation, L_bcam, both infusion operators, the consistency losses,
the token memory, where gradients flow, seeds, and a two-step smoke training on vit_synth.

Expected values are worked out by hand in the comments (eps = 1e-5 is the code's min-max epsilon)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from wsss_core.errors import ConfigError
from wsss_core.losses.cti import background_cam_loss, cam_consistency_loss, minmax_normalize
from wsss_core.methods.base import METHODS, build_method
from wsss_core.training.progress import TrainingProgress
from wsss_core.methods.cti import (
    CTI,
    ClassTokenMemory,
    choose_infused_classes,
    cross_image_infusion,
    intra_image_infusion,
    resolve_blocks,
)
from wsss_core.models.weights import WeightsCatalog
from wsss_core.training.checkpoint import ResumeState
from wsss_core.training.loop import LoopSettings, run_training

EPS = 1e-5
NUM_CLASSES = 3
DIM = 96  # vit_synth embedding width


def synth_config(**losses: object) -> dict:
    """A tiny CTI on vit_synth (4 blocks, patch 8): infuse after block 1, memory of 2 tokens."""
    return {
        "model": {"backbone": "vit_synth", "weights": None, "drop_path": 0.0, "infusion_layer": 1},
        "losses": {"ccti": {"memory_size": 2}, **losses},
        "train": {"crop_size": 32, "lr": 1e-3, "epochs": 1, "warmup_epochs": 0, "batch_size": 2},
    }


@pytest.fixture(scope="module")
def method() -> CTI:
    torch.manual_seed(0)
    return build_method("cti", synth_config(), NUM_CLASSES)  # type: ignore[return-value]


def batch_from_samples(method: CTI, labels: list[list[float]], size: int = 40, seed: int = 0) -> dict:
    """A real batch from ``training_sample`` on random RGB images."""
    generator = np.random.default_rng(seed)
    samples = [
        method.training_sample(
            generator.integers(0, 256, (size, size + 8, 3), dtype=np.uint8),
            np.asarray(label, np.float32),
            np.random.default_rng([seed, index]),
        )
        for index, label in enumerate(labels)
    ]
    return {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}


def layer_norm_by_hand(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    variance = sum((value - mean) ** 2 for value in values) / len(values)
    return [(value - mean) / math.sqrt(variance + 1e-5) for value in values]


# ------------------------------------------------------------------------------------ registry
def test_cti_is_registered() -> None:
    assert METHODS.get("cti") is CTI


# ---------------------------------------------------------------------------------- token layout
def test_tokenizer_and_background_token_layout(method: CTI) -> None:
    torch.manual_seed(0)
    network = method.build_model(WeightsCatalog({}))
    first, _, last = network.tokenizer
    assert (first.in_features, first.out_features) == (DIM, 5 * DIM)
    assert (last.in_features, last.out_features) == (5 * DIM, DIM * (NUM_CLASSES + 1))
    assert torch.equal(network.background_token, torch.zeros(1, 1, DIM))  # zero-initialised
    assert torch.equal(network.cls_token, network.encoder.cls_token)  # the pretrained [CLS]
    assert torch.equal(network.class_pos_embed, network.encoder.cls_pos_embed.expand(1, 4, DIM))

    # With a tokenizer whose last layer outputs only its bias b, token k must be
    # b[k·D:(k+1)·D] + pos_k, plus [CLS] on tokens 1..C and the BG token on token 0.
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.arange(DIM * 4, dtype=torch.float32))
        network.background_token.fill_(-7.0)
        network.cls_token.fill_(0.5)
        network.class_pos_embed.copy_(torch.arange(4, dtype=torch.float32).view(1, 4, 1).expand(1, 4, DIM) * 100)
    tokens = network.class_tokens()
    assert tokens.shape == (1, 4, DIM)
    dims = torch.arange(DIM, dtype=torch.float32)
    assert torch.equal(tokens[0, 0], dims + 0 - 7.0)  # bias block 0, pos 0, BG token
    for k in (1, 2, 3):
        assert torch.equal(tokens[0, k], dims + k * DIM + 0.5 + 100 * k)  # bias block k, [CLS], pos k


def test_logits_read_only_the_foreground(method: CTI) -> None:
    torch.manual_seed(0)
    network = method.build_model(WeightsCatalog({})).eval()
    images = torch.randn(2, 3, 32, 32)
    output = network(images)
    assert output.class_logits.shape == (2, NUM_CLASSES)
    assert output.cams.shape == (2, NUM_CLASSES + 1, 4, 4)
    assert len(output.attentions) == 4 and output.attentions[0].shape == (2, 3, 4 + 16, 4 + 16)
    with torch.no_grad():
        raw = network.head(network.encoder(images, network.class_tokens()).patch_tokens)
    assert torch.allclose(output.patch_logits, raw[:, 1:].mean(dim=(2, 3)))
    assert torch.allclose(output.class_logits, output.class_tokens_per_block[-1][:, 1:].mean(-1))


# ------------------------------------------------------------------------------------ normalisation
def test_minmax_normalize_matches_the_code() -> None:
    # ReLU → [0, 0, 1, 3]; min 0, max 3 → ReLU(x − 0 − eps) / (3 + eps)
    maps = torch.tensor([[[[-1.0, 0.0], [1.0, 3.0]]]])
    expected = torch.tensor([[[[0.0, 0.0], [(1 - EPS) / (3 + EPS), (3 - EPS) / (3 + EPS)]]]])
    assert torch.allclose(minmax_normalize(maps), expected, atol=1e-7)
    # per (image, channel): a constant channel gives zeros, a shifted one the same as unshifted
    two = torch.tensor([[[[2.0, 2.0]], [[5.0, 7.0]]]])
    assert torch.allclose(minmax_normalize(two), torch.tensor([[[[0.0, 0.0]], [[0.0, (2 - EPS) / (2 + EPS)]]]]))


# ------------------------------------------------------------------------------------------ L_bcam
def test_background_cam_loss_by_hand() -> None:
    # one image, C = 2, a 1×3 patch grid; channel 0 is the BG map X_0
    attended = torch.tensor([[[[0.0, 1.0, 4.0]],  # X_0
                              [[3.0, 1.0, 0.0]],  # class 1 (present)
                              [[0.0, 10.0, 0.0]]]])  # class 2 (absent: must be ignored by the max)
    labels = torch.tensor([[1.0, 0.0]])
    # A_pp rows are query patches: patch 1 averages patches 1 and 2
    patch_attention = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]])
    # fg = max over present = [3, 1, 0] → A_pp·fg = [3, 0.5, 0] → N = [(3−eps)/(3+eps), (0.5−eps)/(3+eps), 0]
    # bg = [0, 1, 4] → A_pp·bg = [0, 2.5, 4] → N = [0, (2.5−eps)/(4+eps), (4−eps)/(4+eps)]
    fg = [(3 - EPS) / (3 + EPS), (0.5 - EPS) / (3 + EPS), 0.0]
    bg = [0.0, (2.5 - EPS) / (4 + EPS), (4 - EPS) / (4 + EPS)]
    expected = sum(abs((1 - f) - b) for f, b in zip(fg, bg)) / 3  # ≈ (0 + 0.2083 + 0) / 3
    assert math.isclose(float(background_cam_loss(attended, patch_attention, labels)), expected, rel_tol=1e-6)
    # with class 2 present its 10 dominates the max at patch 1
    both = torch.tensor([[1.0, 1.0]])
    assert not math.isclose(float(background_cam_loss(attended, patch_attention, both)), expected, rel_tol=1e-3)


def test_background_cam_loss_trains_both_maps() -> None:
    attended = torch.tensor([[[[0.0, 1.0, 4.0]], [[3.0, 1.0, 0.0]]]], requires_grad=True)
    patch_attention = torch.eye(3)[None].clone().requires_grad_(True)
    background_cam_loss(attended, patch_attention, torch.tensor([[1.0]])).backward()
    assert attended.grad[0, 0].abs().sum() > 0 and attended.grad[0, 1].abs().sum() > 0
    assert patch_attention.grad.abs().sum() > 0


# -------------------------------------------------------------------------------------- infusion
def test_intra_image_infusion_eq3_keeps_the_positive_view_attached() -> None:
    anchor = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], requires_grad=True)
    positive = torch.tensor([[[5.0, 0.0], [-1.0, 8.0]]], requires_grad=True)
    infused = intra_image_infusion(anchor, positive)
    assert torch.equal(infused, torch.tensor([[[3.0, 1.0], [1.0, 6.0]]]))  # (T + Ṫ)/2 on every token
    infused.sum().backward()
    assert torch.equal(positive.grad, torch.full((1, 2, 2), 0.5))  # not detached, as coded
    assert torch.equal(anchor.grad, torch.full((1, 2, 2), 0.5))


def test_cross_image_infusion_eq6_and_its_detachment() -> None:
    # B = 1, C = 2 (+ BG), D = 2
    tokens = torch.tensor([[[9.0, 9.0], [1.0, 2.0], [3.0, 4.0]]], requires_grad=True)
    own = tokens.detach()[:, 1:].clone().requires_grad_(True)
    memory = torch.tensor([[10.0, 20.0], [30.0, 40.0]], requires_grad=True)
    selected = torch.tensor([[True, False]])
    infused = cross_image_infusion(tokens, own, memory, selected)
    # BG untouched; class 1 selected: (T + g)/2; class 2 not selected: (T + T_own)/2 = T
    assert torch.equal(infused, torch.tensor([[[9.0, 9.0], [5.5, 11.0], [3.0, 4.0]]]))
    infused.sum().backward()
    assert memory.grad is None and own.grad is None  # memory and own tokens are detached
    assert torch.equal(tokens.grad, torch.tensor([[[1.0, 1.0], [0.5, 0.5], [0.5, 0.5]]]))


def test_choose_infused_classes() -> None:
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert torch.equal(choose_infused_classes(labels, "present"), labels > 0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        one = choose_infused_classes(labels, "one_present", generator)
        assert one.sum(dim=1).tolist() == [1, 0, 1]
        assert not (one & ~(labels > 0)).any()  # only present classes


# --------------------------------------------------------------------------------- consistency
def test_cam_consistency_loss_by_hand() -> None:
    reference = torch.tensor([[[[0.0, 2.0]], [[1.0, 1.0]]]])
    infused = torch.tensor([[[[0.0, 4.0]], [[3.0, 0.0]]]])
    # channel 0: N = [0, (2−eps)/(2+eps)] vs [0, (4−eps)/(4+eps)]; channel 1: [0, 0] vs [(3−eps)/(3+eps), 0]
    expected = (abs((2 - EPS) / (2 + EPS) - (4 - EPS) / (4 + EPS)) + (3 - EPS) / (3 + EPS)) / 4
    assert math.isclose(float(cam_consistency_loss(reference, infused)), expected, rel_tol=1e-6)
    # scale-free up to eps: |(2−eps)/(2+eps) − (10−eps)/(10+eps)| / 4
    nearly = abs((2 - EPS) / (2 + EPS) - (10 - EPS) / (10 + EPS)) / 4
    assert math.isclose(float(cam_consistency_loss(reference, reference * 5)), nearly, abs_tol=2e-7)  # float32
    with pytest.raises(ValueError, match="shapes differ"):
        cam_consistency_loss(reference, infused[:, :1])


# ------------------------------------------------------------------------------------- memory
def test_memory_bank_fifo_size_and_full_gate() -> None:
    memory = ClassTokenMemory(num_classes=2, size=2, dim=3)
    a, b, c, d, e = ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 2.0, 1.0])
    # image 0 has class 0 (token a); image 1 has classes 0 and 1 (tokens b, c)
    memory.update(torch.tensor([[a, [5.0, 5.0, 6.0]], [b, c]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    assert memory.counts.tolist() == [2, 1] and memory.num_full() == 1 and not memory.is_full()
    expected_0 = [(x + y) / 2 for x, y in zip(layer_norm_by_hand(a), layer_norm_by_hand(b))]
    assert torch.allclose(memory.means()[0], torch.tensor(expected_0), atol=1e-5)
    assert torch.allclose(memory.means()[1], torch.tensor(layer_norm_by_hand(c)), atol=1e-5)
    # class 0 is full: the oldest (a) leaves when d arrives; class 1 gets e and is full
    memory.update(torch.tensor([[d, e]]), torch.tensor([[1.0, 1.0]]))
    expected_0 = [(x + y) / 2 for x, y in zip(layer_norm_by_hand(b), layer_norm_by_hand(d))]
    expected_1 = [(x + y) / 2 for x, y in zip(layer_norm_by_hand(c), layer_norm_by_hand(e))]
    assert torch.allclose(memory.means(), torch.tensor([expected_0, expected_1]), atol=1e-5)
    assert memory.is_full()
    # three class-1 tokens in one batch (more than the size): only the last two stay
    memory.update(torch.tensor([[a, a], [a, b], [a, d]]), torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]))
    expected_1 = [(x + y) / 2 for x, y in zip(layer_norm_by_hand(b), layer_norm_by_hand(d))]
    assert torch.allclose(memory.means()[1], torch.tensor(expected_1), atol=1e-5)
    assert memory.counts.tolist() == [2, 2]
    # the bank lives in buffers, so a checkpoint restores it
    restored = ClassTokenMemory(num_classes=2, size=2, dim=3)
    restored.load_state_dict(memory.state_dict())
    assert torch.equal(restored.means(), memory.means()) and restored.is_full()


def test_empty_memory_means_are_zero() -> None:
    memory = ClassTokenMemory(num_classes=2, size=3, dim=2)
    memory.update(torch.ones(1, 2, 2), torch.zeros(1, 2))
    assert torch.equal(memory.means(), torch.zeros(2, 2)) and memory.num_full() == 0


# ---------------------------------------------------------------------------------- layer sets
def test_layer_sets_are_relative_to_depth() -> None:
    assert resolve_blocks("last_half", 12, 3, "k") == tuple(range(6, 12))  # training A_cp
    assert resolve_blocks("after_infusion", 12, 3, "k") == tuple(range(4, 12))  # A_pp, C-CTI A_cp
    assert resolve_blocks("all", 12, 3, "k") == tuple(range(12))
    assert resolve_blocks("last:3", 12, 3, "k") == (9, 10, 11)
    assert resolve_blocks("after_infusion", 4, 1, "k") == (2, 3)
    with pytest.raises(ConfigError, match="method.model.blocks.x"):
        resolve_blocks("last:13", 12, 3, "method.model.blocks.x")
    with pytest.raises(ConfigError, match="not a layer set"):
        resolve_blocks("final", 12, 3, "k")


def test_config_errors_name_the_key() -> None:
    config = synth_config()
    del config["train"]["crop_size"]
    with pytest.raises(ConfigError, match="method.train.crop_size"):
        build_method("cti", config, NUM_CLASSES)
    too_deep = synth_config()
    too_deep["model"]["infusion_layer"] = 3  # vit_synth has 4 blocks: block 3 is the last
    with pytest.raises(ConfigError, match="method.model.infusion_layer"):
        build_method("cti", too_deep, NUM_CLASSES).build_model(WeightsCatalog({}))
    with pytest.raises(ConfigError, match="method.losses.ccti.classes"):
        build_method("cti", synth_config(ccti={"classes": "some"}), NUM_CLASSES)


# ------------------------------------------------------------------------------- data samples
def test_training_sample_views_are_reproducible(method: CTI) -> None:
    image = np.random.default_rng(1).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    labels = np.array([0, 1, 0], np.float32)
    first = method.training_sample(image, labels, np.random.default_rng(5))
    again = method.training_sample(image, labels, np.random.default_rng(5))
    assert first["image"].shape == first["image_strong"].shape == (3, 32, 32)
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["image_strong"], again["image_strong"])
    assert not torch.equal(first["image"], first["image_strong"])  # independent crops
    assert torch.equal(first["labels"], torch.tensor([0.0, 1.0, 0.0]))


# ---------------------------------------------------------------------------------- gradients
def gradients(loss: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor | None]:
    return list(torch.autograd.grad(loss, tensors, retain_graph=True, allow_unused=True))


def nonzero(gradient: torch.Tensor | None) -> bool:
    return gradient is not None and bool(gradient.abs().sum() > 0)


def test_gradients_flow_where_the_paper_says() -> None:
    torch.manual_seed(0)
    method = build_method("cti", synth_config(ccti={"memory_size": 1}), NUM_CLASSES)
    network = method.build_model(WeightsCatalog({}))
    batch = batch_from_samples(method, [[1, 0, 1], [0, 1, 1]])
    batch["image_strong"].requires_grad_(True)
    losses = method.training_step(network, batch, TrainingProgress(0, 0, 1, 1))
    assert all(float(losses[name].detach()) > 0 for name in ("cls", "bcam", "icti", "ccti"))
    head_weight, background, strong = network.head.weight, network.background_token, batch["image_strong"]

    # Classification reads no BG logit: the head's BG channel gets no gradient from L_cls.
    (cls_head, cls_background) = gradients(losses["cls"], [head_weight, background])
    assert torch.equal(cls_head[0], torch.zeros_like(cls_head[0])) and nonzero(cls_head[1:])
    # The BG token is a key/value of every block, so L_cls still reaches it through attention (as coded).
    assert nonzero(cls_background)
    # L_bcam trains the BG channel and the BG token.
    bcam_head, bcam_background = gradients(losses["bcam"], [head_weight, background])
    assert nonzero(bcam_head[0]) and nonzero(bcam_background)
    # I-CTI: the positive view's tokens are not detached, so the strong image gets gradient.
    (icti_strong,) = gradients(losses["icti"], [strong])
    assert nonzero(icti_strong)
    # C-CTI uses only the anchor image and the (detached) memory.
    (ccti_strong,) = gradients(losses["ccti"], [strong])
    assert ccti_strong is None
    assert not network.memory.tokens.requires_grad


def test_ccti_waits_for_a_full_memory_and_aux_losses_for_the_warmup() -> None:
    torch.manual_seed(0)
    method = build_method("cti", synth_config(ccti={"memory_size": 2}, aux_warmup_epoch=0), NUM_CLASSES)
    network = method.build_model(WeightsCatalog({}))
    batch = batch_from_samples(method, [[1, 0, 1], [1, 1, 0]])
    warm = method.training_step(network, batch, TrainingProgress(0, 0, 1, 2))  # epoch 0 ≤ warm-up epoch 0
    assert [float(warm[name].detach()) for name in ("bcam", "icti", "ccti")] == [0.0, 0.0, 0.0]
    assert int(network.memory.counts.sum()) == 0  # the memory is not fed during the warm-up
    first = method.training_step(network, batch, TrainingProgress(1, 1, 1, 2))
    assert network.memory.counts.tolist() == [2, 1, 1] and float(first["ccti"].detach()) == 0.0  # not full yet
    second = method.training_step(network, batch, TrainingProgress(1, 2, 1, 2))
    assert network.memory.is_full() and float(second["ccti"].detach()) > 0.0


def test_switches_turn_losses_off() -> None:
    torch.manual_seed(0)
    config = synth_config(bcam={"enabled": False}, icti={"enabled": False}, ccti={"enabled": False})
    method = build_method("cti", config, NUM_CLASSES)
    network = method.build_model(WeightsCatalog({}))
    losses = method.training_step(network, batch_from_samples(method, [[1, 0, 0]]), TrainingProgress(0, 0, 1, 1))
    assert float(losses["loss"].detach()) == float(losses["cls"].detach()) and int(network.memory.counts.sum()) == 0


def test_optimizer_exempts_cls_token_and_1d_tensors(method: CTI) -> None:
    network = method.build_model(WeightsCatalog({}))
    optimizer, _ = method.build_optimizer(network, steps_per_epoch=4)
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert decay_of[id(network.cls_token)] == 0.0 and decay_of[id(network.head.bias)] == 0.0
    # as in the authors' code, the class position embedding and the BG token are decayed
    assert decay_of[id(network.class_pos_embed)] == 0.05 and decay_of[id(network.background_token)] == 0.05


# ------------------------------------------------------------------------------------- seeds
def test_seeds_keep_present_classes_and_are_flip_symmetric(method: CTI) -> None:
    torch.manual_seed(0)
    network = method.build_model(WeightsCatalog({}))
    image = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    labels = np.array([1, 0, 1], np.float32)
    seeds = method.infer_seeds(network, image, labels)
    assert seeds.keys.tolist() == [1, 3] and not seeds.has_background
    assert seeds.maps.shape == (2, 40, 48) and seeds.maps.dtype == np.float32
    assert seeds.maps.min() >= 0.0 and seeds.maps.max() <= 1.0 and seeds.maps.max() > 0.9
    flipped = method.infer_seeds(network, image[:, ::-1].copy(), labels)
    assert np.allclose(flipped.maps, seeds.maps[:, :, ::-1], atol=1e-5)  # single scale + flip is symmetric
    empty = method.infer_seeds(network, image, np.zeros(3, np.float32))
    assert empty.maps.shape == (0, 40, 48)


def test_seed_cams_formula(method: CTI) -> None:
    """M = A_pp(all) · (A_cp(all) ⊙ ReLU(P)) from the raw attentions, written out with einsum."""
    torch.manual_seed(0)
    network = method.build_model(WeightsCatalog({})).eval()
    images = torch.randn(1, 3, 24, 16)
    with torch.no_grad():
        output = network(images)
        mean_attention = torch.stack(output.attentions).mean(dim=2).sum(dim=0)  # [B, N, N]
        class_patch = mean_attention[:, :4, 4:].reshape(1, 4, 3, 2)
        patch_patch = mean_attention[:, 4:, 4:]
        expected = torch.einsum("bij,bkj->bki", patch_patch, (class_patch * output.cams).flatten(2)).reshape(1, 4, 3, 2)
        layers = network.layer_sets
        got = network.seed_cams(images, layers.seed_class_patch, layers.seed_patch_patch)
    assert torch.allclose(got, expected, atol=1e-6)


# -------------------------------------------------------------------------------------- smoke
class TinyDataset(Dataset):
    """Random images through ``training_sample``, indexed by (epoch, index) as the training loop samples."""

    def __init__(self, method: CTI, labels: list[list[float]]) -> None:
        self.method, self.labels = method, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        image = np.random.default_rng([index]).integers(0, 256, (36, 44, 3), dtype=np.uint8)
        return self.method.training_sample(image, np.asarray(self.labels[index], np.float32),
                                           np.random.default_rng([0, epoch, index]))


def test_two_step_smoke_training(tmp_path: Path) -> None:
    torch.manual_seed(0)
    method = build_method("cti", synth_config(ccti={"memory_size": 1}), NUM_CLASSES)
    network = method.build_model(WeightsCatalog({}))
    before = {name: value.clone() for name, value in network.state_dict().items()}
    dataset = TinyDataset(method, [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    optimizer, scheduler = method.build_optimizer(network, steps_per_epoch=2)
    history = run_training(
        task=method, model=network, optimizer=optimizer, scheduler=scheduler, dataset=dataset,
        total_steps=2, settings=LoopSettings(batch_size=2, log_every=1),
        state=ResumeState(tmp_path / "_state", "smoke"), device=torch.device("cpu"),
    )
    assert [record["step"] for record in history] == [1, 2]
    assert all(math.isfinite(record["loss"]) for record in history)
    assert history[-1]["ccti"] > 0 and history[-1]["bcam"] > 0 and history[-1]["icti"] > 0
    after = network.state_dict()
    for name in ("tokenizer.2.weight", "background_token", "class_pos_embed", "head.weight", "encoder.blocks.0.attn.qkv.weight"):
        assert not torch.equal(before[name], after[name]), f"{name} was not updated"
    assert "memory.tokens" in after and int(after["memory.counts"].sum()) == 3
