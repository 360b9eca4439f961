"""A synthetic WSSS benchmark written in the exact PASCAL VOC 2012 layout.

Why: the pipeline must run end to end (and be tested) without the real datasets, on a benchmark that is
not trivial for CAM methods. The generator therefore reproduces the difficulties that WSSS papers
address, with 20 classes (:data:`wsss_core.data.classes.SYNTH_CLASSES`):

* **Intra-class variation**: each class is a family (a shape, a texture, a hue) drawn with random scale,
  aspect, rotation, radial deformation and colour jitter; some classes share shapes (mushroom /
  jellyfish caps), textures or hues, so no single cue separates them.
* **Several objects** (1-4, mostly 1-2 as in VOC) that **occlude** one another (painter's order; an
  object stays only if at least 35 % of it is visible).
* **Co-occurrence bias**: each class has a partner that often appears with it (sailboat + fish,
  tyre + signpost, ...), so a classifier can lean on the partner.
* **Class-correlated backgrounds**: each class mostly appears on its context background (water, sky,
  grass, road, ...), so CAMs over-activate on the context.
* **Discriminative + plain parts**: half of the classes have a distinctive head (textured, coloured)
  and a plain part (a stem or a base) in a neutral colour shared by all classes, so CAMs tend to cover
  only the head while the GT mask covers both.

The files: ``JPEGImages/<id>.jpg``; ``SegmentationClassAug/<id>.png`` for every id and
``SegmentationClass/<id>.png`` for train + val ids (palette PNGs, VOC palette) with a 255 ignore band on
object boundaries (VOC's ~5 px band scaled to the image size); ``Annotations/<id>.xml`` (VOC XML, one
``<object>`` per visible instance with its box); ``ImageSets/Segmentation/{train_aug,train,val}.txt``
(train ⊂ train_aug, val disjoint); and a PSA-style ``cls_labels.npy``.

Every image depends only on ``(seed, index)``, so generation is deterministic and can run in any number
of processes.

**Styles.** What is drawn (class names, shape families, plain parts, textures, backgrounds) is a
:class:`SynthStyle`, looked up by name in :data:`SYNTH_STYLES` (``generator.style``). This module defines
and registers ``default`` (the classes above); :mod:`wsss_core.data.synth_styles` holds the others (``b``).
How a scene is composed (object counts, occlusion, partners, context backgrounds, ignore band) is the
same for every style, so a second style changes the look of the world and not its difficulties.
"""

from __future__ import annotations

import colorsys
import io
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from wsss_core.data.classes import CLASS_SETS, IGNORE_INDEX, SYNTH_CLASSES, voc_palette
from wsss_core.errors import ConfigError
from wsss_core.registry import Registry

# ----------------------------------------------------------------------------------- parameters

PRESETS: dict[str, dict[str, Any]] = {
    # The pipeline's default benchmark: small enough to train on a CPU in minutes.
    "default": {"image_size": 128, "num_train_aug": 2000, "num_train": 400, "num_val": 400},
    # The split sizes and image size of PASCAL VOC 2012 + SBD, for benchmarks on a GPU.
    "voc_scale": {"image_size": [375, 500], "num_train_aug": 10582, "num_train": 1464, "num_val": 1449},
}


@dataclass(frozen=True)
class SynthParams:
    """Generator parameters (``stage`` block of the ``synth_dataset`` rule)."""

    image_size: tuple[int, int] = (128, 128)  # (height, width); an int in config means square
    num_train_aug: int = 2000
    num_train: int = 400
    num_val: int = 400
    seed: int = 0
    max_objects: int = 4
    ignore_band: int | None = None  # half-width of the 255 band in px; None = VOC's 5 px scaled to size
    jpeg_quality: int = 90
    workers: int = 1
    preset: str = "default"
    style: str = "default"  # key of SYNTH_STYLES: which world is drawn

    @property
    def band_radius(self) -> int:
        """Half-width of the ignore band: VOC's ~5 px band on ~375 px images, scaled, at least 1 px."""
        if self.ignore_band is not None:
            return int(self.ignore_band)
        return max(1, int(round(2.5 * min(self.image_size) / 375)))


def synth_params(stage: Mapping[str, Any], default_seed: int = 0) -> SynthParams:
    """Parameters from a ``stage`` config block: ``preset`` values, then the explicit keys."""
    stage = dict(stage)
    preset_name = str(stage.pop("preset", "default"))
    if preset_name not in PRESETS:
        raise ConfigError(
            f"stage.preset '{preset_name}' of synth_dataset is unknown; use one of: {', '.join(PRESETS)}"
        )
    values: dict[str, Any] = {"seed": default_seed, **PRESETS[preset_name], **stage, "preset": preset_name}
    known = set(SynthParams.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"synth_dataset stage keys {unknown} are unknown; known keys: {', '.join(sorted(known))}"
        )
    size = values["image_size"]
    values["image_size"] = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    params = SynthParams(**values)
    if min(params.image_size) < 32:
        raise ConfigError(f"synth_dataset stage.image_size {params.image_size} is too small; use at least 32")
    if not 0 < params.num_train <= params.num_train_aug or params.num_val <= 0:
        raise ConfigError(
            "synth_dataset needs 0 < stage.num_train <= stage.num_train_aug and stage.num_val > 0; got "
            f"{params.num_train}, {params.num_train_aug}, {params.num_val}"
        )
    if not 1 <= params.max_objects <= 6:
        raise ConfigError(f"synth_dataset stage.max_objects must be in 1..6; got {params.max_objects}")
    synth_style(params.style)  # an unknown style stops here, naming the key
    return params


# ------------------------------------------------------------------------------- class families

@dataclass(frozen=True)
class ClassStyle:
    """How one class is drawn: its distinctive head and the context it tends to appear in."""

    shape: str  # key of SHAPES (unit-radius polygons of the head)
    texture: str  # key of TEXTURES
    hue: float  # primary hue in [0, 1)
    accent_hue: float  # second colour of the texture
    context: str  # key of BACKGROUNDS: the background it mostly appears on
    partner: str | None = None  # a class that often appears with it
    plain_part: str | None = None  # "stem" or "base": an extra part in a neutral colour
    size: tuple[float, float] = (0.22, 0.42)  # head radius range as a fraction of the short side
    max_rotation: float = 180.0  # degrees; small for classes with a stem (they stand upright)
    frequency: float = 1.0  # relative frequency as an image's first object
    saturation: tuple[float, float] = (0.55, 0.95)
    value: tuple[float, float] = (0.55, 0.95)
    dark_accent: bool = False  # the texture's second colour is near black (ladybird spots)


CLASS_STYLES: dict[str, ClassStyle] = {
    "sunflower": ClassStyle("star12", "dots", 0.14, 0.07, "grass", "ladybird", "stem", max_rotation=20),
    "lollipop": ClassStyle("disc", "rings", 0.92, 0.0, "indoor", "cookie", "stem", max_rotation=30),
    "sailboat": ClassStyle("triangle", "stripes", 0.0, 0.6, "water", "fish", "base", max_rotation=15),
    "fish": ClassStyle("fish", "checker", 0.07, 0.12, "water", "jellyfish", frequency=1.5),
    "kite": ClassStyle("diamond", "checker", 0.98, 0.6, "sky", "moon", "stem", max_rotation=30),
    "mushroom": ClassStyle("cap", "dots", 0.0, 0.15, "forest", "ladybird", "stem", max_rotation=15),
    "starfish": ClassStyle("star5", "speckle", 0.04, 0.09, "sand", "crab"),
    "tyre": ClassStyle("ring", "stripes", 0.6, 0.6, "road", "signpost", saturation=(0.0, 0.15),
                       value=(0.15, 0.35), frequency=1.5),
    "cactus": ClassStyle("cactus", "stripes", 0.33, 0.28, "sand", "starfish", max_rotation=15),
    "ladybird": ClassStyle("ellipse", "dots", 0.0, 0.0, "grass", "clover", size=(0.15, 0.3),
                           dark_accent=True),
    "moon": ClassStyle("crescent", "solid", 0.15, 0.15, "sky", "kite", saturation=(0.15, 0.4)),
    "signpost": ClassStyle("arrow", "stripes", 0.15, 0.15, "road", "tyre", "stem", max_rotation=20,
                           frequency=2.0),
    "cookie": ClassStyle("blob", "dots", 0.08, 0.06, "indoor", "lollipop", saturation=(0.4, 0.7)),
    "gem": ClassStyle("hexagon", "gradient", 0.5, 0.62, "bricks", "shield", size=(0.15, 0.3)),
    "pinwheel": ClassStyle("pinwheel", "gradient", 0.75, 0.95, "sky", "kite", "stem", max_rotation=180),
    "jellyfish": ClassStyle("cap", "rings", 0.8, 0.9, "water", "fish", "base", max_rotation=25),
    "lamp": ClassStyle("trapezoid", "solid", 0.12, 0.12, "indoor", "gem", "stem", max_rotation=10),
    "shield": ClassStyle("shield", "checker", 0.6, 0.0, "bricks", "gem", max_rotation=25,
                         saturation=(0.5, 0.9), frequency=2.0),
    "crab": ClassStyle("crab", "speckle", 0.0, 0.03, "sand", "starfish", size=(0.18, 0.34)),
    "clover": ClassStyle("trefoil", "solid", 0.3, 0.3, "grass", "ladybird", saturation=(0.5, 0.8)),
}
assert tuple(CLASS_STYLES) == SYNTH_CLASSES, "CLASS_STYLES must follow classes.SYNTH_CLASSES order"

# ------------------------------------------------------------------------------------- shapes
# A shape is a list of (polygon [N, 2] in a unit-radius frame, fill) operations: fill 1 adds area,
# fill 0 cuts a hole (ring, crescent). The y axis points down, as in images.

Polygon = np.ndarray
ShapeOps = list[tuple[Polygon, int]]


def _circle(radius: float = 1.0, centre: tuple[float, float] = (0.0, 0.0), points: int = 40,
            start: float = 0.0, stop: float = 2 * np.pi) -> Polygon:
    angles = np.linspace(start, stop, points, endpoint=stop - start < 2 * np.pi - 1e-6)
    return np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], axis=1)


def _regular(sides: int, rotation: float = -np.pi / 2) -> Polygon:
    return _circle(1.0, points=sides, start=rotation, stop=rotation + 2 * np.pi)


def _star(points: int, inner: float) -> Polygon:
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _poly(points: list[tuple[float, float]]) -> Polygon:
    return np.asarray(points, dtype=np.float64)


SHAPES: dict[str, Callable[[np.random.Generator], ShapeOps]] = {
    "disc": lambda rng: [(_circle(), 1)],
    "ellipse": lambda rng: [(_circle() * (1.0, 0.7), 1)],
    "triangle": lambda rng: [(_poly([(0, -1), (0.8, 0.6), (-0.5, 0.6)]), 1)],
    "diamond": lambda rng: [(_poly([(0, -1), (0.65, -0.1), (0, 1), (-0.65, -0.1)]), 1)],
    "hexagon": lambda rng: [(_regular(6, 0.0), 1)],
    "star5": lambda rng: [(_star(5, rng.uniform(0.35, 0.5)), 1)],
    "star12": lambda rng: [(_star(12, rng.uniform(0.65, 0.8)), 1)],
    "ring": lambda rng: [(_circle(), 1), (_circle(rng.uniform(0.35, 0.55)), 0)],
    "crescent": lambda rng: [(_circle(), 1), (_circle(0.85, (rng.uniform(0.35, 0.55), -0.2)), 0)],
    "cap": lambda rng: [(_circle(1.0, (0, 0.35), 24, np.pi, 2 * np.pi) * (1.0, 1.25), 1)],
    "trapezoid": lambda rng: [(_poly([(-0.45, -0.7), (0.45, -0.7), (1.0, 0.55), (-1.0, 0.55)]), 1)],
    "arrow": lambda rng: [(_poly([(-1, -0.3), (0.3, -0.3), (0.3, -0.65), (1, 0), (0.3, 0.65), (0.3, 0.3),
                                  (-1, 0.3)]), 1)],
    "shield": lambda rng: [(np.concatenate([_poly([(-0.8, -0.9), (0.8, -0.9)]),
                                            _circle(0.8, (0, 0.05), 16, 0.0, np.pi)]), 1)],
    "fish": lambda rng: [(_circle(0.75, (0.2, 0)) * (1.0, 0.6), 1),
                         (_poly([(-0.45, 0), (-1.0, -0.5), (-1.0, 0.5)]), 1)],
    "cactus": lambda rng: [(_poly([(-0.22, -1), (0.22, -1), (0.22, 1), (-0.22, 1)]), 1),
                           (_poly([(-0.75, -0.55), (-0.55, -0.55), (-0.55, 0.05), (-0.22, 0.05),
                                   (-0.22, 0.25), (-0.75, 0.25)]), 1),
                           (_poly([(0.55, -0.75), (0.75, -0.75), (0.75, -0.05), (0.22, -0.05),
                                   (0.22, -0.25), (0.55, -0.25)]), 1)],
    "blob": lambda rng: [(_circle() * (1.0 + 0.15 * np.sin(np.linspace(0, 2 * np.pi, 40) *
                                                              rng.integers(2, 5) + rng.uniform(0, 6)))[:, None], 1)],
    "pinwheel": lambda rng: [(_poly([(0, 0), (0, -1), (0.7, -0.7)]), 1), (_poly([(0, 0), (1, 0), (0.7, 0.7)]), 1),
                             (_poly([(0, 0), (0, 1), (-0.7, 0.7)]), 1), (_poly([(0, 0), (-1, 0), (-0.7, -0.7)]), 1)],
    "crab": lambda rng: [(_circle(0.6, (0, 0.15)) * (1.0, 0.75), 1), (_circle(0.3, (-0.75, -0.45)), 1),
                         (_circle(0.3, (0.75, -0.45)), 1), (_circle(0.1, (-0.75, -0.45)), 0),
                         (_circle(0.1, (0.75, -0.45)), 0)],
    "trefoil": lambda rng: [(_circle(0.48, (0, -0.5)), 1), (_circle(0.48, (-0.45, 0.25)), 1),
                            (_circle(0.48, (0.45, 0.25)), 1)],
}

# Plain parts hang below the head (unit frame), in a neutral colour shared by every class. They start
# inside the head (which is painted over them), so head and plain part always form one connected object.
PLAIN_PARTS: dict[str, Callable[[np.random.Generator], Polygon]] = {
    "stem": lambda rng: _poly([(-0.13, 0.3), (0.13, 0.3), (0.13, 0.5 + rng.uniform(1.0, 1.6)),
                               (-0.13, 0.5 + rng.uniform(1.0, 1.6))]),
    "base": lambda rng: _poly([(-1.0, 0.35), (1.0, 0.35), (0.7, 0.55 + rng.uniform(0.45, 0.7)),
                               (-0.7, 0.55 + rng.uniform(0.45, 0.7))]),
}

# ------------------------------------------------------------------------------------ textures

Texture = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, np.random.Generator], np.ndarray]


def _mix(choice: np.ndarray, primary: np.ndarray, accent: np.ndarray) -> np.ndarray:
    """``primary`` where ``choice`` is 0, ``accent`` where it is 1 (float blend in between)."""
    return primary + choice[..., None] * (accent - primary)


def _texture_solid(x, y, primary, accent, scale, rng):
    return np.broadcast_to(primary, x.shape + (3,)).copy()


def _texture_stripes(x, y, primary, accent, scale, rng):
    angle = rng.uniform(0, np.pi)
    period = scale * rng.uniform(0.35, 0.55)
    phase = (x * np.cos(angle) + y * np.sin(angle)) / period
    return _mix((phase % 1.0 < 0.5).astype(np.float32), primary, accent)


def _texture_checker(x, y, primary, accent, scale, rng):
    angle = rng.uniform(0, np.pi / 2)
    cell = scale * rng.uniform(0.25, 0.4)
    u = np.floor((x * np.cos(angle) + y * np.sin(angle)) / cell)
    v = np.floor((-x * np.sin(angle) + y * np.cos(angle)) / cell)
    return _mix(((u + v) % 2).astype(np.float32), primary, accent)


def _texture_dots(x, y, primary, accent, scale, rng):
    spacing = scale * rng.uniform(0.4, 0.6)
    radius = spacing * rng.uniform(0.18, 0.3)
    offset = rng.uniform(0, spacing, size=2)
    dx = (x + offset[0]) % spacing - spacing / 2
    dy = (y + offset[1]) % spacing - spacing / 2
    return _mix((dx * dx + dy * dy < radius * radius).astype(np.float32), primary, accent)


def _texture_rings(x, y, primary, accent, scale, rng):
    period = scale * rng.uniform(0.25, 0.4)
    return _mix((np.hypot(x, y) / period % 1.0 < 0.5).astype(np.float32), primary, accent)


def _texture_gradient(x, y, primary, accent, scale, rng):
    angle = rng.uniform(0, 2 * np.pi)
    t = (x * np.cos(angle) + y * np.sin(angle)) / (2 * scale) + 0.5
    return _mix(np.clip(t, 0, 1).astype(np.float32), primary, accent)


def _texture_speckle(x, y, primary, accent, scale, rng):
    noise = _smooth_noise(x.shape, rng, cell=max(2.0, scale * 0.2))
    return _mix((noise > rng.uniform(-0.2, 0.3)).astype(np.float32), primary, accent)


TEXTURES: dict[str, Texture] = {
    "solid": _texture_solid, "stripes": _texture_stripes, "checker": _texture_checker,
    "dots": _texture_dots, "rings": _texture_rings, "gradient": _texture_gradient, "speckle": _texture_speckle,
}


def _smooth_noise(shape: tuple[int, int], rng: np.random.Generator, cell: float) -> np.ndarray:
    """Zero-mean, unit-ish noise with features about ``cell`` pixels wide (bicubic-upsampled grid)."""
    height, width = shape
    small = rng.standard_normal((max(2, int(height / cell) + 2), max(2, int(width / cell) + 2))).astype(np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _colour(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32) * 255


# --------------------------------------------------------------------------------- backgrounds

def _background_grass(height, width, rng):
    base = _colour(rng.uniform(0.22, 0.3), rng.uniform(0.5, 0.7), rng.uniform(0.45, 0.6))
    return base + 35 * _smooth_noise((height, width), rng, 12)[..., None] + \
        12 * rng.standard_normal((height, width, 1)).astype(np.float32)


def _background_water(height, width, rng):
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    waves = np.sin(y * rng.uniform(0.25, 0.45) + 2.5 * np.sin(x * rng.uniform(0.04, 0.08)))
    base = _colour(rng.uniform(0.53, 0.6), rng.uniform(0.5, 0.8), rng.uniform(0.5, 0.7))
    return base + 22 * waves[..., None]


def _background_sky(height, width, rng):
    top = _colour(rng.uniform(0.55, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.75, 0.95))
    bottom = _colour(0.58, 0.1, 0.95)
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    clouds = np.clip(_smooth_noise((height, width), rng, 24) - 0.4, 0, 1)[..., None]
    return top + t * (bottom - top) + clouds * (250 - top)


def _background_sand(height, width, rng):
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    ripples = np.sin((x * 0.3 + y) * rng.uniform(0.15, 0.3))
    base = _colour(rng.uniform(0.09, 0.13), rng.uniform(0.25, 0.45), rng.uniform(0.75, 0.9))
    return base + 10 * ripples[..., None] + 14 * rng.standard_normal((height, width, 1)).astype(np.float32)


def _background_bricks(height, width, rng):
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    brick_height = rng.uniform(0.07, 0.11) * height
    row = np.floor(y / brick_height)
    shifted = x + (row % 2) * brick_height
    mortar = ((y % brick_height) < 2) | ((shifted % (2.2 * brick_height)) < 2)
    base = _colour(rng.uniform(0.0, 0.05), rng.uniform(0.45, 0.65), rng.uniform(0.45, 0.65))
    image = base + 18 * _smooth_noise((height, width), rng, 6)[..., None]
    image[mortar] = _colour(0.1, 0.1, 0.8)
    return image


def _background_indoor(height, width, rng):
    wall = _colour(rng.uniform(0.08, 0.15), rng.uniform(0.05, 0.25), rng.uniform(0.7, 0.9))
    floor = _colour(rng.uniform(0.05, 0.1), rng.uniform(0.3, 0.5), rng.uniform(0.35, 0.55))
    horizon = int(height * rng.uniform(0.55, 0.8))
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:horizon] = wall
    image[horizon:] = floor
    return image + 6 * rng.standard_normal((height, width, 1)).astype(np.float32)


def _background_forest(height, width, rng):
    image = _background_grass(height, width, rng) * 0.6
    for _ in range(rng.integers(2, 6)):
        left = int(rng.uniform(0, width))
        image[:, left:left + max(2, int(rng.uniform(0.03, 0.08) * width))] = _colour(0.07, 0.5, 0.3)
    return image


def _background_road(height, width, rng):
    image = np.full((height, width, 3), rng.uniform(70, 110), dtype=np.float32)
    image += 10 * rng.standard_normal((height, width, 1)).astype(np.float32)
    centre, thickness = int(height * rng.uniform(0.4, 0.7)), max(1, height // 40)
    dash = max(4, width // 8)
    x = np.arange(width)
    image[centre:centre + thickness, (x // dash) % 2 == 0] = _colour(0.14, rng.uniform(0, 0.8), 0.95)
    return image


BACKGROUNDS: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "grass": _background_grass, "water": _background_water, "sky": _background_sky, "sand": _background_sand,
    "bricks": _background_bricks, "indoor": _background_indoor, "forest": _background_forest,
    "road": _background_road,
}

# ------------------------------------------------------------------------------------- styles

ShapeFactory = Callable[[np.random.Generator], ShapeOps]
PlainPartFactory = Callable[[np.random.Generator], Polygon]
Background = Callable[[int, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class SynthStyle:
    """A world the generator can draw: its 20 classes (in label order) and the shape families, plain
    parts, textures and backgrounds their :class:`ClassStyle` entries name."""

    class_set: str  # key of classes.CLASS_SETS: the class names, in label order
    classes: Mapping[str, ClassStyle]
    shapes: Mapping[str, ShapeFactory]
    plain_parts: Mapping[str, PlainPartFactory]
    textures: Mapping[str, Texture]
    backgrounds: Mapping[str, Background]
    id_prefix: str  # image ids are <id_prefix>_000000, ...; also the XML <folder>
    stream: tuple[int, ...]  # appended to (seed, index) to seed each image's generator

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.classes)

    def check(self, name: str) -> SynthStyle:
        """Itself, after checking that every key a class names exists (a broken style fails on import)."""
        expected = CLASS_SETS.get(self.class_set)
        if expected != self.class_names:
            raise ConfigError(f"synthetic style '{name}': its classes must be classes.CLASS_SETS['{self.class_set}'], "
                              "in that order")
        for class_name, style in self.classes.items():
            for key, table in (("shape", self.shapes), ("texture", self.textures), ("context", self.backgrounds)):
                if getattr(style, key) not in table:
                    raise ConfigError(f"synthetic style '{name}': class '{class_name}' names unknown {key} "
                                      f"'{getattr(style, key)}'; known: {', '.join(table)}")
            if style.plain_part is not None and style.plain_part not in self.plain_parts:
                raise ConfigError(f"synthetic style '{name}': class '{class_name}' names unknown plain part "
                                  f"'{style.plain_part}'; known: {', '.join(self.plain_parts)}")
            if style.partner is not None and style.partner not in self.classes:
                raise ConfigError(f"synthetic style '{name}': class '{class_name}' names unknown partner "
                                  f"'{style.partner}'")
        return self


# Styles register here; the modules of wsss_core.data.synth_styles are imported on first look-up.
SYNTH_STYLES: Registry[SynthStyle] = Registry("synthetic style", package="wsss_core.data.synth_styles")


def synth_style(name: str) -> SynthStyle:
    """The registered style ``name``; an unknown name stops with the config key and the known names."""
    if name not in SYNTH_STYLES:
        raise ConfigError(
            f"synth_dataset stage.style (datasets.<name>.generator.style) '{name}' is unknown; "
            f"use one of: {', '.join(SYNTH_STYLES.names())}"
        )
    return SYNTH_STYLES.get(name)


# The default style: the classes of CLASS_STYLES drawn from SHAPES, PLAIN_PARTS, TEXTURES and BACKGROUNDS.
DEFAULT_STYLE: SynthStyle = SYNTH_STYLES.register("default")(
    SynthStyle(class_set="synth", classes=CLASS_STYLES, shapes=SHAPES, plain_parts=PLAIN_PARTS, textures=TEXTURES,
               backgrounds=BACKGROUNDS, id_prefix="synth", stream=(20,)).check("default")
)

# ---------------------------------------------------------------------------------- one sample

CONTEXT_PROBABILITY = 0.7  # chance that the first class's context background is used
PARTNER_PROBABILITY = 0.45  # chance that an extra object is the first class's partner
SAME_CLASS_PROBABILITY = 0.2  # chance that an extra object is another instance of the first class
OBJECT_COUNT_PROBABILITIES = (0.45, 0.3, 0.15, 0.1)  # 1, 2, 3, 4 objects
MIN_VISIBLE_FRACTION = 0.35


@dataclass
class SyntheticSample:
    """One generated image with its ground truth."""

    image: np.ndarray  # uint8 [H, W, 3] RGB
    mask: np.ndarray  # uint8 [H, W] 0..20 + 255 band
    objects: list[tuple[int, tuple[int, int, int, int]]] = field(default_factory=list)  # (class, box x0,y0,x1,y1)
    background: str = ""  # key of the style's backgrounds
    class_names: tuple[str, ...] = SYNTH_CLASSES  # the style's classes, in label order

    @property
    def labels(self) -> np.ndarray:
        """Multi-hot float32 [20] over the classes of the visible objects."""
        labels = np.zeros(len(self.class_names), dtype=np.float32)
        for class_index, _ in self.objects:
            labels[class_index] = 1.0
        return labels


def _jittered_colour(hue: float, style: ClassStyle, rng: np.random.Generator) -> np.ndarray:
    return _colour(hue + rng.normal(0, 0.025), rng.uniform(*style.saturation), rng.uniform(*style.value))


def _object_polygons(style: ClassStyle, radius: float, centre: np.ndarray, rng: np.random.Generator,
                     world: SynthStyle) -> tuple[ShapeOps, Polygon | None]:
    """The head's fill operations and the plain part's polygon, in image coordinates."""
    head = world.shapes[style.shape](rng)
    plain = world.plain_parts[style.plain_part](rng) if style.plain_part else None
    aspect = rng.uniform(0.8, 1.25)
    angle = np.deg2rad(rng.uniform(-style.max_rotation, style.max_rotation))
    shear = rng.uniform(-0.15, 0.15)
    transform = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ \
        np.array([[aspect, shear], [0.0, 1.0 / aspect]]) * radius
    wobble = rng.uniform(0, 2 * np.pi, size=2)
    wobble_amount = rng.uniform(0.0, 0.12)

    def place(polygon: Polygon) -> Polygon:
        # radial deformation: a smooth bump around the shape, then the affine map and translation
        angles = np.arctan2(polygon[:, 1], polygon[:, 0])
        factor = 1.0 + wobble_amount * np.sin(2 * angles + wobble[0]) * np.cos(3 * angles + wobble[1])
        return (polygon * factor[:, None]) @ transform.T + centre

    return [(place(polygon), fill) for polygon, fill in head], (None if plain is None else place(plain))


def _draw_object(class_index: int, canvas: np.ndarray, labels: np.ndarray, instances: np.ndarray,
                 instance_id: int, short_side: int, rng: np.random.Generator, world: SynthStyle) -> bool:
    """Paint one object of ``class_index`` on top; False (nothing changed) when it would not be
    visible enough or would hide an earlier object too much."""
    height, width = labels.shape
    style = world.classes[world.class_names[class_index]]
    radius = rng.uniform(*style.size) * short_side
    centre = np.array([rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.8) * height])
    return draw_object(style, class_index + 1, radius, centre, canvas, labels, instances, instance_id, rng, world)


def draw_object(style: ClassStyle, label: int, radius: float, centre: np.ndarray, canvas: np.ndarray,
                labels: np.ndarray, instances: np.ndarray, instance_id: int, rng: np.random.Generator,
                world: SynthStyle | None = None) -> bool:
    """Paint one object drawn as ``style`` (head radius ``radius`` px at ``centre`` = (x, y)) on top of
    ``canvas``, writing ``label`` into ``labels``; False (nothing changed) when it would not be visible
    enough or would hide an earlier object too much. Shared by the segmentation images and the
    pretraining pool (``synth_pretrain``). ``world`` is the style whose shapes, plain parts and textures
    ``style`` names (None: the default style's :data:`SHAPES`, :data:`PLAIN_PARTS`, :data:`TEXTURES`)."""
    world = DEFAULT_STYLE if world is None else world
    height, width = labels.shape
    head_ops, plain = _object_polygons(style, radius, centre, rng, world)
    points = np.concatenate([polygon for polygon, _ in head_ops] + ([plain] if plain is not None else []))
    x0, y0 = np.maximum(np.floor(points.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(points.max(axis=0)).astype(int) + 1, (width, height))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return False
    offset = np.array([x0, y0])
    head = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    for polygon, fill in head_ops:
        cv2.fillPoly(head, [np.round(polygon - offset).astype(np.int32)], int(fill))
    body = head.copy()
    if plain is not None:
        cv2.fillPoly(body, [np.round(plain - offset).astype(np.int32)], 1)
    body = body.astype(bool)
    area = int(body.sum())
    if area < max(24, 0.004 * height * width):
        return False
    region = instances[y0:y1, x0:x1]
    covered = np.bincount(region[body], minlength=instance_id)
    if instance_id > 1:
        totals = np.bincount(instances.ravel(), minlength=instance_id)
        remaining = totals[1:instance_id] - covered[1:instance_id]
        if np.any(remaining < MIN_VISIBLE_FRACTION * totals[1:instance_id]):
            return False
    y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    primary = _jittered_colour(style.hue, style, rng)
    accent = _jittered_colour(style.accent_hue, style, rng) if style.accent_hue != style.hue else \
        primary * rng.uniform(0.35, 0.6)
    if style.dark_accent:
        accent = np.full(3, rng.uniform(10, 40), dtype=np.float32)
    texture = world.textures[style.texture](x - centre[0], y - centre[1], primary, accent, radius, rng)
    shading = 1.0 + 0.15 * _smooth_noise(head.shape, rng, max(4.0, radius / 2))[..., None]
    paint = texture * shading
    if plain is not None:
        neutral = _colour(rng.uniform(0.05, 0.12), rng.uniform(0.05, 0.3), rng.uniform(0.35, 0.75))
        plain_only = body & ~head.astype(bool)
        paint[plain_only] = neutral + 5 * rng.standard_normal((int(plain_only.sum()), 1)).astype(np.float32)
    canvas[y0:y1, x0:x1][body] = paint[body]
    labels[y0:y1, x0:x1][body] = label
    region[body] = instance_id
    return True


def _choose_classes(rng: np.random.Generator, max_objects: int, world: SynthStyle) -> list[int]:
    """Classes of the objects to draw: first by frequency, then partner / same class / any."""
    names = world.class_names
    frequencies = np.array([style.frequency for style in world.classes.values()])
    frequencies /= frequencies.sum()
    probabilities = np.asarray(OBJECT_COUNT_PROBABILITIES[:max_objects])
    count = 1 + int(rng.choice(len(probabilities), p=probabilities / probabilities.sum()))
    first = int(rng.choice(len(names), p=frequencies))
    partner = world.classes[names[first]].partner
    classes = [first]
    for _ in range(count - 1):
        draw = rng.uniform()
        if draw < PARTNER_PROBABILITY and partner is not None:
            classes.append(names.index(partner))
        elif draw < PARTNER_PROBABILITY + SAME_CLASS_PROBABILITY:
            classes.append(first)
        else:
            classes.append(int(rng.choice(len(names), p=frequencies)))
    return classes


def ignore_band(labels: np.ndarray, radius: int) -> np.ndarray:
    """``labels`` with 255 on every pixel within ``radius`` px (chessboard distance) of a label change,
    like VOC's void band around objects."""
    if radius <= 0:
        return labels.copy()
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), dtype=np.uint8)
    boundary = cv2.dilate(labels, kernel) != cv2.erode(labels, kernel)
    banded = labels.copy()
    banded[boundary] = IGNORE_INDEX
    return banded


def generate_sample(seed: int, index: int, params: SynthParams) -> SyntheticSample:
    """The image of ``index``: a function of ``(seed, index)``, the style and the image size only."""
    world = synth_style(params.style)
    rng = np.random.default_rng([seed, index, *world.stream])
    height, width = params.image_size
    classes = _choose_classes(rng, params.max_objects, world)
    first_context = world.classes[world.class_names[classes[0]]].context
    background = first_context if rng.uniform() < CONTEXT_PROBABILITY else \
        list(world.backgrounds)[int(rng.integers(len(world.backgrounds)))]
    canvas = world.backgrounds[background](height, width, rng).astype(np.float32)
    labels = np.zeros((height, width), dtype=np.uint8)
    instances = np.zeros((height, width), dtype=np.int32)
    placed: list[int] = []
    for position, class_index in enumerate(classes):
        attempts = 10 if position == 0 else 3
        for _ in range(attempts):
            if _draw_object(class_index, canvas, labels, instances, len(placed) + 1, min(height, width), rng,
                            world):
                placed.append(class_index)
                break
    canvas += 4 * rng.standard_normal(canvas.shape).astype(np.float32)
    image = np.clip(cv2.GaussianBlur(canvas, (3, 3), 0.6), 0, 255).astype(np.uint8)
    mask = ignore_band(labels, params.band_radius)
    objects = []
    kept = instances * (mask != IGNORE_INDEX)
    for instance_id, class_index in enumerate(placed, start=1):
        rows, columns = np.nonzero(instances == instance_id)
        if not np.any(kept == instance_id):
            continue  # entirely inside the ignore band: not an object of the ground truth
        objects.append((class_index, (int(columns.min()), int(rows.min()), int(columns.max()), int(rows.max()))))
    return SyntheticSample(image=image, mask=mask, objects=objects, background=background,
                           class_names=world.class_names)


# ------------------------------------------------------------------------------------- writing

_PALETTE = voc_palette().reshape(-1).tolist()


def encode_mask(mask: np.ndarray) -> bytes:
    """A palette PNG with the VOC palette (what VOC's SegmentationClass files are)."""
    image = Image.fromarray(mask, mode="P")
    image.putpalette(_PALETTE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def annotation_xml(image_id: str, sample: SyntheticSample, folder: str = "synth") -> bytes:
    """A VOC annotation: size, and one object per visible instance with a 1-based inclusive box."""
    height, width = sample.mask.shape
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "folder").text = folder
    ElementTree.SubElement(root, "filename").text = f"{image_id}.jpg"
    size = ElementTree.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ElementTree.SubElement(size, tag).text = str(value)
    ElementTree.SubElement(root, "segmented").text = "1"
    for class_index, (x0, y0, x1, y1) in sample.objects:
        element = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(element, "name").text = sample.class_names[class_index]
        ElementTree.SubElement(element, "pose").text = "Unspecified"
        ElementTree.SubElement(element, "truncated").text = str(int(x0 == 0 or y0 == 0 or x1 == width - 1
                                                                   or y1 == height - 1))
        ElementTree.SubElement(element, "difficult").text = "0"
        box = ElementTree.SubElement(element, "bndbox")
        for tag, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1 + 1), ("ymax", y1 + 1)):
            ElementTree.SubElement(box, tag).text = str(value)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="utf-8") + b"\n"


def image_id_of(index: int, prefix: str = "synth") -> str:
    """The id of image ``index`` (``<prefix>_000042``; the prefix is the style's ``id_prefix``)."""
    return f"{prefix}_{index:06d}"


def _write_range(root: str, params: SynthParams, indices: list[int], segmentation_class: frozenset[int]
                 ) -> dict[str, list[float]]:
    """Generate and write the given images; returns their labels (run in one process)."""
    root_path = Path(root)
    prefix = synth_style(params.style).id_prefix
    labels = {}
    for index in indices:
        image_id = image_id_of(index, prefix)
        sample = generate_sample(params.seed, index, params)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality])
        assert ok, "JPEG encoding failed"
        (root_path / "JPEGImages" / f"{image_id}.jpg").write_bytes(jpeg.tobytes())
        png = encode_mask(sample.mask)
        (root_path / "SegmentationClassAug" / f"{image_id}.png").write_bytes(png)
        if index in segmentation_class:
            (root_path / "SegmentationClass" / f"{image_id}.png").write_bytes(png)
        (root_path / "Annotations" / f"{image_id}.xml").write_bytes(annotation_xml(image_id, sample, prefix))
        labels[image_id] = sample.labels.tolist()
    return labels


def split_indices(params: SynthParams) -> dict[str, list[int]]:
    """train_aug = 0..N-1, train = a seeded subset of it, val = N..N+V-1 (disjoint), as in VOC."""
    train_aug = list(range(params.num_train_aug))
    rng = np.random.default_rng([params.seed, 1464])
    train = sorted(int(index) for index in rng.choice(params.num_train_aug, params.num_train, replace=False))
    val = list(range(params.num_train_aug, params.num_train_aug + params.num_val))
    return {"train_aug": train_aug, "train": train, "val": val}


def write_dataset(root: str | os.PathLike[str], params: SynthParams) -> dict[str, Any]:
    """Write the whole dataset under ``root`` (which must be empty or absent); returns a summary
    (counts, class names and per-class image counts) for the manifest."""
    root = Path(root)
    world = synth_style(params.style)
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "Annotations",
                   "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    splits = split_indices(params)
    segmentation_class = frozenset(splits["train"]) | frozenset(splits["val"])
    everything = splits["train_aug"] + splits["val"]
    workers = max(1, int(params.workers))
    chunks = [everything[start::workers] for start in range(workers)]
    labels: dict[str, list[float]] = {}
    if workers == 1:
        labels.update(_write_range(str(root), params, everything, segmentation_class))
    else:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_write_range, [str(root)] * workers, [params] * workers, chunks,
                                 [segmentation_class] * workers):
                labels.update(part)
    for split, indices in splits.items():
        text = "".join(f"{image_id_of(index, world.id_prefix)}\n" for index in indices)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(text)
    table = {image_id: np.asarray(vector, dtype=np.float32) for image_id, vector in sorted(labels.items())}
    np.save(root / "cls_labels.npy", table, allow_pickle=True)
    per_class = np.sum([table[image_id_of(index, world.id_prefix)] for index in splits["train_aug"]], axis=0)
    return {
        "params": {**asdict(params), "band_radius": params.band_radius},
        "counts": {split: len(indices) for split, indices in splits.items()},
        "style": params.style,
        "class_set": world.class_set,
        "class_names": list(world.class_names),
        "train_aug_images_per_class": {name: int(count) for name, count in zip(world.class_names, per_class)},
    }
