"""Stage ``train_affinity``: train IRNet (IRN) or AffinityNet (PSA) on relation labels.

    python -m wsss_core.stages.train_affinity --config JSON --labels LABELS.h5 --output model.pt

Stage keys (``config["stage"]``):

* ``refine`` (``irn`` | ``psa``) and the method block ``irn`` / ``psa`` (network, radius, ...).
* ``split`` (default ``train_aug``), ``batch_size``, ``epochs`` or ``iterations``, ``lr``,
  ``weight_decay``, ``momentum`` (0: the authors' poly optimiser passes the weight decay into SGD's
  momentum slot, so they train without momentum, G19), ``poly_power`` (0.9), ``crop_size``.
* Augmentation: ``scale_range`` ``[lo, hi]`` (IRN: a random rescale factor, ``[0.5, 1.5]``) or
  ``long_side_range`` ``[lo, hi]`` (PSA: the long side resized to a random length, ``[448, 768]``);
  ``flip`` (true); ``color_jitter`` ``[brightness, contrast, saturation, hue]`` or null (PSA:
  ``[0.3, 0.3, 0.3, 0.1]``, applied in that fixed order).
* Run-time (``--runtime``, section ``refine.<refine>.train``, :mod:`wsss_core.runtime`; not in the resume
  key): ``num_workers``, ``log_every`` (20), ``checkpoint_every`` (0 = epoch ends), ``device`` (the
  section's, else the top-level one).

Each sample: the augmented image, ImageNet-normalised and zero-padded (labels padded with 255) to a
random ``crop_size`` crop; labels sampled at the feature stride by nearest neighbour (pixel centres, as
PIL's nearest downscale in IRN) to ``crop_size / stride``. Resume state lives in
``<output dir>/_state/`` and is removed when the model is written. The model file holds ``refine``,
``settings``, ``num_classes``, ``model`` (state dict), ``stage_config``, ``history``,
``images_per_second``, ``seconds`` and ``provenance``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

import wsss_core.data
from wsss_core import runtime
from wsss_core.errors import ConfigError, StoreError
from wsss_core.io.seed_store import MaskStore
from wsss_core.models.weights import WeightsCatalog
from wsss_core.segmentation import NORMALIZATIONS, InputNormalization
from wsss_core.stages import _cli
from wsss_core.stages.affinity_labels import refiner_from_stage
from wsss_core.stages._shared import missing_ids, source_record, stage_config
from wsss_core.training.checkpoint import ResumeState
from wsss_core.training.loop import LoopSettings, images_per_second, run_training
from wsss_core.training.schedulers import PolyLRScheduler
from wsss_core.utils.atomic import save_torch
from wsss_core.utils.device import resolve_device
from wsss_core.utils.provenance import code_fingerprint, config_hash, provenance
from wsss_core.utils.seeding import seed_everything

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.train_affinity"
SECTION = "refine.*.train"  # its run-time keys (wsss_core.runtime)
IGNORE_LABEL = 255
REQUIRED_KEYS = ("refine", "batch_size", "lr", "weight_decay", "crop_size")


def color_jitter(image: np.ndarray, strengths: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation (factors in ``[1 − s, 1 + s]``) and hue (shift in ``[−h, h]``
    turns) of an RGB ``uint8`` image, in that order."""
    brightness, contrast, saturation, hue = (float(value) for value in strengths)
    pixels = image.astype(np.float32)
    pixels *= rng.uniform(1 - brightness, 1 + brightness)
    gray = (pixels @ np.array([0.299, 0.587, 0.114], np.float32)).mean()
    pixels = (pixels - gray) * rng.uniform(1 - contrast, 1 + contrast) + gray
    gray_map = (pixels @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    pixels = (pixels - gray_map) * rng.uniform(1 - saturation, 1 + saturation) + gray_map
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    if hue > 0:
        hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV)  # hue in 0..179
        shift = int(round(rng.uniform(-hue, hue) * 180))
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 180).astype(np.uint8)
        pixels = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return pixels


@dataclass(frozen=True)
class AffinitySample:
    """One training example for an affinity network; randomness only from ``rng``."""

    crop_size: int
    stride: int
    normalization: InputNormalization
    scale_range: tuple[float, float] | None = None
    long_side_range: tuple[int, int] | None = None
    flip: bool = True
    jitter: tuple[float, float, float, float] | None = None

    def __call__(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if image.shape[:2] != labels.shape:
            raise StoreError(f"relation labels {labels.shape} and image {image.shape[:2]} differ in size; the "
                             "label store belongs to another dataset: re-run affinity_labels")
        height, width = labels.shape
        if self.scale_range is not None:
            scale = rng.uniform(*self.scale_range)
        elif self.long_side_range is not None:
            scale = rng.integers(self.long_side_range[0], self.long_side_range[1] + 1) / max(height, width)
        else:
            scale = 1.0
        size = (max(1, round(width * scale)), max(1, round(height * scale)))  # cv2 takes (w, h)
        if size != (width, height):
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        if self.jitter is not None:
            image = color_jitter(image, self.jitter, rng)
        pixels = self.normalization(image)
        target = torch.from_numpy(labels.astype(np.int64))
        pad_bottom = max(0, self.crop_size - target.shape[0])
        pad_right = max(0, self.crop_size - target.shape[1])
        if pad_bottom or pad_right:
            pixels = F.pad(pixels, (0, pad_right, 0, pad_bottom), value=0.0)
            target = F.pad(target, (0, pad_right, 0, pad_bottom), value=IGNORE_LABEL)
        top = int(rng.integers(target.shape[0] - self.crop_size + 1))
        left = int(rng.integers(target.shape[1] - self.crop_size + 1))
        pixels = pixels[:, top : top + self.crop_size, left : left + self.crop_size]
        target = target[top : top + self.crop_size, left : left + self.crop_size]
        if self.flip and rng.random() < 0.5:
            pixels, target = pixels.flip(-1), target.flip(-1)
        grid = (self.crop_size - 1) // self.stride + 1
        centre = self.stride // 2
        reduced = target[centre :: self.stride, centre :: self.stride]
        reduced = F.pad(reduced, (0, grid - reduced.shape[1], 0, grid - reduced.shape[0]), value=IGNORE_LABEL)
        return {"image": pixels.contiguous(), "labels": reduced.contiguous()}


def _pair(stage: dict[str, Any], key: str) -> tuple[float, float] | None:
    value = stage.get(key)
    if value is None:
        return None
    if not isinstance(value, Sequence) or len(value) != 2 or not value[0] <= value[1]:
        raise ConfigError(f"stage.{key} must be [low, high] with low <= high, got {value!r}")
    return (value[0], value[1])


def sample_from_stage(stage: dict[str, Any], stride: int) -> AffinitySample:
    if stage.get("scale_range") is not None and stage.get("long_side_range") is not None:
        raise ConfigError("stage.scale_range and stage.long_side_range are exclusive; set one (IRN: scale_range, "
                          "PSA: long_side_range)")
    jitter = stage.get("color_jitter")
    if jitter is not None and (not isinstance(jitter, Sequence) or len(jitter) != 4):
        raise ConfigError(f"stage.color_jitter must be [brightness, contrast, saturation, hue] or null, got {jitter!r}")
    long_side = _pair(stage, "long_side_range")
    return AffinitySample(
        crop_size=int(stage["crop_size"]), stride=stride, normalization=NORMALIZATIONS["imagenet"],
        scale_range=_pair(stage, "scale_range"),
        long_side_range=(int(long_side[0]), int(long_side[1])) if long_side else None,
        flip=bool(stage.get("flip", True)), jitter=tuple(float(v) for v in jitter) if jitter else None,  # type: ignore[arg-type]
    )


def total_steps(stage: dict[str, Any], size: int, batch_size: int) -> int:
    if stage.get("iterations"):
        return int(stage["iterations"])
    if not stage.get("epochs"):
        raise ConfigError("set stage.epochs (IRN 3, PSA 8, MCTformer 5) or stage.iterations")
    return int(stage["epochs"]) * max(1, size // batch_size)


def train(config: dict[str, Any], labels_path: Path, output: Path) -> dict[str, Any]:
    """Train the configured affinity network and write ``output``; returns the payload."""
    run_time = runtime.settings(config, SECTION)  # how it runs: not in the resume key or the provenance hash
    config = runtime.identity(config, SECTION)
    stage = stage_config(config)
    missing = [key for key in REQUIRED_KEYS if key not in stage]
    if missing:
        raise ConfigError(f"stage keys {missing} are missing for train_affinity; set them in config.yaml")
    refiner = refiner_from_stage(stage)
    settings = refiner.settings(stage)
    seed = int(config.get("seed", 0))
    seed_everything(seed)
    reader = wsss_core.data.open_dataset(config["dataset"])
    split = stage.get("split", "train_aug")
    ids = reader.ids(split)
    labels = MaskStore(labels_path)
    labels.check(num_classes=reader.num_classes)
    missing_ids(labels, ids, "relation-label store")
    stored_refiner = labels.attrs.get("refine")
    if stored_refiner not in (None, refiner.name):
        raise StoreError(f"{labels_path} holds {stored_refiner} relation labels but stage.refine is {refiner.name}; "
                         "re-run affinity_labels with this refiner")

    model = refiner.build_model(settings, WeightsCatalog.from_config(config.get("weights")))
    lr, weight_decay = float(stage["lr"]), float(stage["weight_decay"])
    optimizer = torch.optim.SGD(refiner.parameter_groups(model, lr, weight_decay), lr=lr,
                                momentum=float(stage.get("momentum", 0.0)), weight_decay=weight_decay)
    batch_size = int(stage["batch_size"])
    steps = total_steps(stage, len(ids), batch_size)
    scheduler = PolyLRScheduler(optimizer, steps, power=float(stage.get("poly_power", 0.9)))
    from wsss_core.data.datasets import SegmentationTrainingDataset

    dataset = SegmentationTrainingDataset(reader, split, labels.get, sample_from_stage(stage, refiner.feature_stride), seed)
    loop = LoopSettings(
        batch_size=batch_size, num_workers=int(run_time.get("num_workers", 0)), seed=seed,
        log_every=int(run_time.get("log_every", 20)), checkpoint_every=int(run_time.get("checkpoint_every", 0)),
    )
    device = resolve_device(run_time.get("device", "auto"))
    state = ResumeState(output.parent / "_state", config_hash(config), code_fingerprint(STAGE))
    LOG.info("training %s on %d images of %s for %d steps on %s", refiner.name, len(ids), split, steps, device)
    started = time.perf_counter()
    history = run_training(task=refiner.training_task(settings), model=model, optimizer=optimizer, scheduler=scheduler,
                           dataset=dataset, total_steps=steps, settings=loop, state=state, device=device)
    payload = {
        "refine": refiner.name,
        "settings": dataclasses.asdict(settings),
        "num_classes": reader.num_classes,
        "model": {key: value.cpu() for key, value in model.state_dict().items()},
        "stage_config": stage,
        "history": history,
        "images_per_second": images_per_second(history, batch_size),
        "seconds": round(time.perf_counter() - started, 2),
        "labels": source_record(labels_path),
        "provenance": provenance(config, STAGE),
    }
    save_torch(payload, output)
    shutil.rmtree(state.state_dir, ignore_errors=True)
    return payload


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True, type=Path, help="relation-label store (HDF5) of the split")
    parser.add_argument("--output", required=True, type=Path, help="model file to write")
    args = parser.parse_args(argv)
    _cli.run(lambda: train(args.config, args.labels, args.output))


if __name__ == "__main__":
    main()
