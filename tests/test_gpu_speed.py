"""GPU speed options, checked on CPU: the fused-attention (SDPA) path of MultiTokenViT, the precision and
channels-last switches of the training loop, and the training-step benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wsss_core.errors import ConfigError
from wsss_core.training.progress import TrainingProgress
from wsss_core.models.backbones import create_backbone
from wsss_core.models.multi_token_vit import MultiTokenViT
from wsss_core.training.checkpoint import ResumeState
from wsss_core.training.loop import LoopSettings, move_to_device, resolve_precision, run_training

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("training", [False, True])
def test_fused_attention_path_matches_the_explicit_one(training):
    torch.manual_seed(0)
    encoder = MultiTokenViT(create_backbone("vit_synth", None, drop_path_rate=0.0)).train(training)
    images = torch.randn(2, 3, 40, 48)
    tokens = torch.randn(1, 3, encoder.embed_dim)
    hooks = {1: lambda class_tokens: class_tokens * 0.5}
    explicit = encoder(images, tokens, block_hooks=hooks)
    fused = encoder(images, tokens, block_hooks=hooks, need_attentions=False)
    assert fused.attentions == () and len(explicit.attentions) == encoder.depth
    torch.testing.assert_close(fused.class_tokens, explicit.class_tokens, rtol=0, atol=2e-5)
    torch.testing.assert_close(fused.patch_tokens, explicit.patch_tokens, rtol=0, atol=2e-5)
    for a, b in zip(fused.class_tokens_per_block, explicit.class_tokens_per_block):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-5)


def test_precision_switch():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("auto", cpu) is None  # off on CPU
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(ConfigError, match="precision 'fp16' is not one of"):
        resolve_precision("fp16", cpu)


def test_channels_last_applies_to_four_dimensional_float_tensors_only():
    batch = {"image": torch.randn(2, 3, 4, 5), "mask": torch.zeros(2, 1, 4, 5, dtype=torch.long),
             "labels": torch.ones(2, 3), "ids": ["a", "b"]}
    moved = move_to_device(batch, torch.device("cpu"), channels_last=True)
    assert moved["image"].is_contiguous(memory_format=torch.channels_last)
    assert not moved["image"].is_contiguous()
    assert moved["mask"].is_contiguous() and moved["ids"] == ["a", "b"]
    assert torch.equal(moved["image"], batch["image"])


class _Pairs(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, key):
        _, index = key
        return {"x": torch.full((3,), float(index))}


class _RecordingTask:
    def __init__(self):
        self.dtypes = []

    def training_step(self, model, batch, progress: TrainingProgress):
        output = model(batch["x"])
        self.dtypes.append(output.dtype)
        return {"loss": output.float().pow(2).mean()}


def test_bf16_autocast_runs_the_step_in_bfloat16_and_keeps_fp32_parameters(tmp_path):
    model = torch.nn.Linear(3, 2)
    task = _RecordingTask()
    run_training(
        task=task, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scheduler=None,
        dataset=_Pairs(), total_steps=2, settings=LoopSettings(batch_size=2, precision="bf16"),
        state=ResumeState(tmp_path, "h"), device=torch.device("cpu"),
    )
    assert task.dtypes == [torch.bfloat16, torch.bfloat16]
    assert model.weight.dtype == torch.float32


def test_benchmark_step_reports_the_four_pass_cti_step():
    from wsss_core.benchmarks import stages

    settings = stages.method_settings(REPOSITORY / "config.yaml", "cti", "synth", crop_size=32)
    args = {"method": "cti", "dataset": "synth", "method_config": settings, "num_classes": 20, "image_size": 40,
            "batch_size": 2, "steps": 1, "warmup": 0, "precision": "bf16", "channels_last": False,
            "device": "cpu", "threads": 1, "seed": 0}
    reports: list[dict] = []

    class ListQueue:
        put = reports.append

    stages._measure("plain", args, ListQueue())
    report = reports[0]
    assert report["precision"] == "fp32" and report["images_per_second"] > 0
    assert report["losses"]["ccti"] > 0 and report["losses"]["memory_full_classes"] == 20.0  # C-CTI pass ran
    assert report["memory_kind"].startswith("peak RSS") and report["peak_memory_mib"] > 0


def test_benchmark_table_shows_the_ratios():
    from wsss_core.benchmarks.stages import markdown_table

    variant = {"precision": "fp32", "channels_last": False, "seconds_per_step": 0.5, "step_memory_mib": 40.0}
    report = {
        "settings": {"method": "cti", "dataset": "synth", "image_size": 64, "batch_size": 4, "steps": 2},
        "device": "cpu",
        "variants": {"plain": {**variant, "variant": "plain", "images_per_second": 8.0, "peak_memory_mib": 900.0},
                     "fast": {**variant, "variant": "fast", "images_per_second": 2.0, "peak_memory_mib": 450.0}},
        "fast_over_plain": {"images_per_second": 0.25, "peak_memory": 0.5, "step_memory": 1.0},
    }
    table = markdown_table(report)
    assert "| plain | fp32 | False | 8.00 | 0.500 | 900 | 40 |" in table
    assert "| fast / plain | | | 0.25× | | 0.50× | 1.00× |" in table
    assert np.isclose(report["fast_over_plain"]["images_per_second"], 2.0 / 8.0)


class _CountingReader:
    """A reader of three random images of different shapes that counts its decodes."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.images = {f"im{i}": rng.integers(0, 256, (5 + i, 7, 3), dtype=np.uint8) for i in range(3)}
        self.decodes = 0
        self.num_classes = 4

    def ids(self, split):
        return list(self.images)

    def image(self, image_id):
        self.decodes += 1
        return self.images[image_id].copy()

    def labels(self, image_id):
        return np.full(4, 0.5, np.float32)


def test_decoded_image_cache_returns_the_decoded_images_and_is_built_once(tmp_path):
    import pickle

    from wsss_core.training.image_cache import CachedReader, DecodedImageCache

    reader = _CountingReader()
    cache = DecodedImageCache.build(reader, ["im0", "im2"], tmp_path / "cache", source={"split": "a"})
    assert reader.decodes == 2 and len(cache) == 2 and "im1" not in cache
    cached = CachedReader(reader, cache)
    for image_id in ("im0", "im2"):
        assert np.array_equal(cached.image(image_id), reader.images[image_id])
        assert cached.image(image_id).flags.writeable
    assert reader.decodes == 2  # served from the file
    assert np.array_equal(cached.image("im1"), reader.images["im1"]) and reader.decodes == 3  # not cached: read
    assert cached.num_classes == 4 and cached.labels("im0").tolist() == [0.5] * 4
    clone = pickle.loads(pickle.dumps(cached))  # what a DataLoader worker receives
    assert np.array_equal(clone.image("im2"), reader.images["im2"])
    DecodedImageCache.build(reader, ["im0", "im2"], tmp_path / "cache", source={"split": "a"})
    assert reader.decodes == 3  # same source: reused
    rebuilt = DecodedImageCache.build(reader, ["im1"], tmp_path / "cache", source={"split": "b"})
    assert reader.decodes == 4 and "im1" in rebuilt and "im0" not in rebuilt
