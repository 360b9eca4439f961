"""Stage ``train_affinity``: train IRNet (IRN) or AffinityNet (PSA) on relation labels.

    python -m wsss_core.stages.train_affinity --config JSON --labels LABELS.h5 --output model.pt

Stage keys (``config["stage"]``; their types: ``AffinityTrain`` in ``wsss_core/stages/settings.py``, the
refiner's ``IRNSettings`` / ``PSASettings`` in ``wsss_core/refine/settings.py``):

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
from wsss_core.errors import StoreError
from wsss_core.io.seed_store import MaskStore
from wsss_core.models.weights import WeightsCatalog
from wsss_core.segmentation import NORMALIZATIONS, InputNormalization
from wsss_core.stages import _cli
from wsss_core.stages.affinity_labels import refiner_from_stage
from wsss_core.stages._shared import missing_ids, section_settings, source_record, stage_config
from wsss_core.stages.settings import AffinityTrain
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


def sample_from_settings(train: AffinityTrain, stride: int) -> AffinitySample:
    """The training sample of ``stages.refine.<refine>.train`` (its type checked the pairs and their order)."""
    return AffinitySample(
        crop_size=train.crop_size, stride=stride, normalization=NORMALIZATIONS["imagenet"],
        scale_range=train.scale_range, long_side_range=train.long_side_range, flip=train.flip,
        jitter=tuple(train.color_jitter) if train.color_jitter is not None else None,  # type: ignore[arg-type]
    )


def total_steps(train: AffinityTrain, size: int) -> int:
    """``iterations`` when set, else ``epochs`` × the batches of ``size`` images (at least one)."""
    if train.iterations is not None:
        return train.iterations
    return train.epochs * max(1, size // train.batch_size)  # type: ignore[operator]  (the type: one is set)


def train(config: dict[str, Any], labels_path: Path, output: Path) -> dict[str, Any]:
    """Train the configured affinity network and write ``output``; returns the payload."""
    run_time = runtime.settings(config, SECTION)  # how it runs: not in the resume key or the provenance hash
    config = runtime.identity(config, SECTION)
    stage = stage_config(config)
    refiner = refiner_from_stage(stage)
    settings = refiner.settings(stage)
    train = section_settings(stage, AffinityTrain)
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
    optimizer = torch.optim.SGD(refiner.parameter_groups(model, train.lr, train.weight_decay), lr=train.lr,
                                momentum=train.momentum, weight_decay=train.weight_decay)
    batch_size = train.batch_size
    steps = total_steps(train, len(ids))
    scheduler = PolyLRScheduler(optimizer, steps, power=train.poly_power)
    from wsss_core.data.datasets import SegmentationTrainingDataset

    sample = sample_from_settings(train, refiner.feature_stride)
    dataset = SegmentationTrainingDataset(reader, split, labels.get, sample, seed)
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
        "settings": settings.model_dump(),
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
