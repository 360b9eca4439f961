"""The synthetic pretraining pool: the stand-in for ImageNet on the synthetic default.

Why: every method of this project starts from an ImageNet-pretrained backbone (ECA also from a DINO
one). On a machine without those weights the synthetic presets would otherwise train tiny backbones
from scratch on 600 segmentation images, whose attention and features are not yet semantic. This pool
gives each backbone family the same kind of start the papers' networks have: supervised classification
(or DINO self-supervision) on many object-centric images of many classes, disjoint from the
segmentation images.

The pool has ``num_classes`` (default 128) classes, each a random family drawn from the generator's
primitives (:mod:`wsss_core.data.synth`: a head shape, a texture, a primary and an accent hue, an
optional plain part, a size and rotation range), so its classes overlap the segmentation classes' cues
the way ImageNet's overlap VOC's, but no two pool classes share (shape, texture, hue bin). Each image
shows one object of its class near the centre, on a background drawn independently of the class (any
of the generator's backgrounds or a plain noisy colour), and with probability ``distractor_probability``
a smaller object of another class behind it. Images depend only on ``(seed, split, index)``; the
segmentation images use another seed stream, so the two sets never share an image.

Stored as ``<dir>/{train,val}.npz`` with ``images`` uint8 ``[N, S, S, 3]`` and ``labels`` int64 ``[N]``,
plus ``classes.json`` (each class's family).
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import cv2
import numpy as np
from pydantic import Field

from wsss_core.data.synth import BACKGROUNDS, PLAIN_PARTS, SHAPES, TEXTURES, ClassStyle, _colour, draw_object
from wsss_core.errors import ConfigError
from wsss_core.settings import NonNegativeInt, PositiveInt, Probability, Settings
from wsss_core.utils.atomic import atomic_path, write_json

SPLITS = ("train", "val")
HUE_BINS = 12  # pool classes differ in (shape, texture, hue bin)


MAX_POOL_CLASSES = len(SHAPES) * len(TEXTURES) * HUE_BINS  # distinct (shape, texture, hue bin) triples


class PoolParams(Settings):
    """Size and seed of the pretraining pool (``pretraining.pool`` in config.yaml); every default here only.
    ``workers`` (processes drawing the images; the images do not depend on it) is a run-time key: the
    workflow keeps it out of the pool's identity (``workflow_config.pool_identity``)."""

    num_classes: Annotated[int, Field(ge=2, le=MAX_POOL_CLASSES)] = 128
    train_per_class: PositiveInt = 64
    val_per_class: PositiveInt = 16
    image_size: Annotated[int, Field(ge=32)] = 64
    seed: int = 1
    distractor_probability: Probability = 0.3
    workers: NonNegativeInt = 1  # 0 or 1: in this process


def pool_classes(seed: int, num_classes: int) -> list[ClassStyle]:
    """The families of the pool's classes: distinct (shape, texture, hue bin) triples, drawn from ``seed``."""
    rng = np.random.default_rng([seed, 1000])
    shapes, textures = sorted(SHAPES), sorted(TEXTURES)
    combos = [(s, t, h) for s in shapes for t in textures for h in range(HUE_BINS)]
    chosen = rng.permutation(len(combos))[:num_classes]
    styles = []
    for index in chosen:
        shape, texture, hue_bin = combos[int(index)]
        hue = (hue_bin + rng.uniform(0.15, 0.85)) / HUE_BINS
        accent = (hue + rng.choice([0.0, 0.08, 0.33, 0.5])) % 1.0
        plain = rng.choice(["none", "none", "stem", "base"])
        low_saturation = rng.uniform() < 0.15
        styles.append(ClassStyle(
            shape=shape, texture=texture, hue=float(hue), accent_hue=float(accent),
            context="grass",  # unused: backgrounds are drawn independently of the class
            plain_part=None if plain == "none" else str(plain),
            size=(0.26, 0.4), max_rotation=float(rng.choice([15.0, 45.0, 180.0])),
            saturation=(0.05, 0.25) if low_saturation else (0.5, 0.95),
            value=(0.3, 0.9) if low_saturation else (0.55, 0.95),
            dark_accent=bool(rng.uniform() < 0.1),
        ))
    return styles


def _plain_background(size: int, rng: np.random.Generator) -> np.ndarray:
    colour = _colour(rng.uniform(), rng.uniform(0.0, 0.6), rng.uniform(0.2, 0.9))
    return np.broadcast_to(colour, (size, size, 3)).astype(np.float32) + \
        12 * rng.standard_normal((size, size, 1)).astype(np.float32)


def pool_image(styles: list[ClassStyle], params: PoolParams, split: str, index: int) -> tuple[np.ndarray, int]:
    """Image ``index`` of ``split`` and its class: a function of ``(seed, split, index)`` only."""
    rng = np.random.default_rng([params.seed, SPLITS.index(split), index, 31])
    label = index % params.num_classes
    size = params.image_size
    names = sorted(BACKGROUNDS)
    choice = int(rng.integers(len(names) + 2))
    canvas = (BACKGROUNDS[names[choice]](size, size, rng) if choice < len(names) else
              _plain_background(size, rng)).astype(np.float32)
    labels = np.zeros((size, size), dtype=np.uint8)
    instances = np.zeros((size, size), dtype=np.int32)
    placed = 0
    if rng.uniform() < params.distractor_probability:
        other = int(rng.integers(params.num_classes - 1))
        other += other >= label
        corner = rng.choice([0.2, 0.8], size=2) * size
        if draw_object(styles[other], 2, rng.uniform(0.12, 0.2) * size, corner, canvas, labels, instances, 1, rng):
            placed = 1
    style = styles[label]
    for _ in range(10):
        centre = size * (0.5 + rng.uniform(-0.1, 0.1, size=2))
        radius = rng.uniform(*style.size) * size
        if draw_object(style, 1, radius, centre, canvas, labels, instances, placed + 1, rng):
            break
    canvas += 4 * rng.standard_normal(canvas.shape).astype(np.float32)
    image = np.clip(cv2.GaussianBlur(canvas, (3, 3), 0.6), 0, 255).astype(np.uint8)
    return image, label


def _generate(args: tuple[PoolParams, str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    params, split, start, stop = args
    styles = pool_classes(params.seed, params.num_classes)
    images, labels = zip(*(pool_image(styles, params, split, index) for index in range(start, stop)))
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def generate_split(params: PoolParams, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All images and labels of one split (``workers`` processes; the result does not depend on them)."""
    count = params.num_classes * (params.train_per_class if split == "train" else params.val_per_class)
    chunk = max(1, count // (4 * max(1, params.workers)))
    jobs = [(params, split, start, min(start + chunk, count)) for start in range(0, count, chunk)]
    if params.workers > 1:
        with ProcessPoolExecutor(params.workers) as pool:
            parts = list(pool.map(_generate, jobs))
    else:
        parts = [_generate(job) for job in jobs]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def write_pool(directory: str | Path, params: PoolParams) -> dict[str, Any]:
    """Write ``train.npz``, ``val.npz`` and ``classes.json`` into ``directory`` (each file atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in SPLITS:
        images, labels = generate_split(params, split)
        with atomic_path(directory / f"{split}.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, images=images, labels=labels)
        counts[split] = int(len(labels))
    styles = pool_classes(params.seed, params.num_classes)
    summary = {"params": params.model_dump(), "counts": counts, "classes": [asdict(style) for style in styles]}
    write_json(directory / "classes.json", summary)
    return summary


def read_pool(directory: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of one split of a written pool."""
    path = Path(directory) / f"{split}.npz"
    if not path.is_file():
        raise ConfigError(f"pretraining pool file '{path}' does not exist; run: snakemake {Path(directory)}")
    with np.load(path) as data:
        return data["images"], data["labels"]
