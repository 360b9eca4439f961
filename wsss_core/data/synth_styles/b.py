"""Style ``b`` of the synthetic generator: a second world to check that results carry over.

Why: a method (or a preset) tuned on one generator may only have learnt that generator. Style ``b`` draws
20 classes of its own (:data:`wsss_core.data.classes.SYNTH_B_CLASSES`: tools, kitchenware, garden, winter,
night and sky things) from shape families, plain parts, textures and backgrounds that the default style
does not use, while the scene composition of :mod:`wsss_core.data.synth` (object counts, occlusion,
partners, context backgrounds, ignore band) stays the same, so the difficulties are of the same kinds:

* **Intra-class variation**: every shape has random proportions (wing sizes, number of fir tiers,
  key teeth, umbrella scallops, handle side), on top of the generator's scale / aspect / rotation /
  radial deformation / colour jitter; textures and hues are shared between classes (wood: acorn and
  guitar; brushed metal: bell, key and hammer; plaid: teapot, umbrella and mitten; ...).
* **Co-occurrence partners** (key + padlock, mug + teapot, snowman + fir, ...) and **class-correlated
  backgrounds** (eight new ones: tiles, overcast, snow, carpet, foliage, studio, night, cobbles).
* **Discriminative head + plain part** on 8 of the 20 classes: a handle, crook, tether, trunk, guitar
  neck, cuff or perch in the generator's shared neutral colour.
* Low-contrast classes (the white snowman on snow) and holes in objects (mug and teapot handles, the
  padlock's shackle, the rocket's window) as in the default's tyre and ring.

None of its parameters was chosen by looking at a method's score on it.
"""

from __future__ import annotations

import cv2
import numpy as np

from wsss_core.data.synth import (
    SYNTH_STYLES,
    Background,
    ClassStyle,
    PlainPartFactory,
    Polygon,
    ShapeFactory,
    ShapeOps,
    SynthStyle,
    Texture,
    _circle,
    _colour,
    _mix,
    _poly,
    _smooth_noise,
)

# ------------------------------------------------------------------------------------- classes

CLASSES: dict[str, ClassStyle] = {
    "butterfly": ClassStyle("butterfly", "scales", 0.08, 0.75, "foliage", "leaf", max_rotation=30),
    "leaf": ClassStyle("leaf", "marble", 0.28, 0.2, "foliage", "butterfly", "tether", max_rotation=60),
    "acorn": ClassStyle("acorn", "wood", 0.08, 0.05, "foliage", "leaf", size=(0.15, 0.3), max_rotation=30),
    "mug": ClassStyle("mug", "zigzag", 0.55, 0.0, "tiles", "teapot", max_rotation=10),
    "teapot": ClassStyle("teapot", "plaid", 0.0, 0.6, "tiles", "mug", max_rotation=10),
    "umbrella": ClassStyle("umbrella", "plaid", 0.9, 0.15, "overcast", "balloon", "crook", max_rotation=20),
    "balloon": ClassStyle("balloon", "zigzag", 0.98, 0.12, "overcast", "umbrella", "tether", max_rotation=20,
                          frequency=1.5),
    "bolt": ClassStyle("bolt", "hatching", 0.14, 0.1, "overcast", "umbrella", max_rotation=20,
                       value=(0.8, 0.98)),
    "rocket": ClassStyle("rocket", "camouflage", 0.35, 0.1, "night", "owl", max_rotation=25),
    "owl": ClassStyle("owl", "scales", 0.07, 0.1, "night", "fir", "perch", max_rotation=10,
                      saturation=(0.35, 0.6)),
    "bell": ClassStyle("bell", "brushed_metal", 0.13, 0.13, "studio", "guitar", max_rotation=20),
    "guitar": ClassStyle("guitar", "wood", 0.06, 0.04, "studio", "bell", "neck"),
    "key": ClassStyle("key", "brushed_metal", 0.12, 0.12, "carpet", "padlock", size=(0.18, 0.35)),
    "padlock": ClassStyle("padlock", "hatching", 0.6, 0.6, "carpet", "key", max_rotation=20,
                          saturation=(0.05, 0.3), frequency=1.5),
    "hammer": ClassStyle("hammer", "brushed_metal", 0.6, 0.6, "cobbles", "horseshoe", "handle", max_rotation=45,
                         saturation=(0.0, 0.2), value=(0.45, 0.75)),
    "horseshoe": ClassStyle("horseshoe", "marble", 0.05, 0.08, "cobbles", "hammer", saturation=(0.3, 0.6)),
    "anchor": ClassStyle("anchor", "weave", 0.6, 0.55, "cobbles", "horseshoe", max_rotation=30, frequency=2.0),
    "snowman": ClassStyle("snowman", "weave", 0.6, 0.6, "snow", "fir", max_rotation=10,
                          saturation=(0.0, 0.15), value=(0.75, 0.95)),
    "fir": ClassStyle("fir", "camouflage", 0.33, 0.25, "snow", "snowman", "trunk", max_rotation=8),
    "mitten": ClassStyle("mitten", "plaid", 0.0, 0.33, "snow", "snowman", "cuff", max_rotation=30),
}

# --------------------------------------------------------------------------------------- shapes
# Unit-radius frame, y pointing down, as in wsss_core.data.synth; fill 0 cuts a hole.


def _ellipse(centre: tuple[float, float], rx: float, ry: float, angle: float = 0.0, points: int = 32) -> Polygon:
    """An ellipse with radii (rx, ry) turned by ``angle`` radians about its centre."""
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    local = np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)
    c, s = np.cos(angle), np.sin(angle)
    return local @ np.array([[c, s], [-s, c]]) + np.asarray(centre)


def _band(centre: tuple[float, float], outer: float, inner: float, start: float, stop: float,
          points: int = 24) -> Polygon:
    """An annulus sector between angles ``start`` and ``stop`` (y down: pi/2 is the bottom)."""
    return np.concatenate([_circle(outer, centre, points, start, stop), _circle(inner, centre, points, start, stop)[::-1]])


def _rect(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return _poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def _mirror(polygon: Polygon) -> Polygon:
    return polygon * (-1.0, 1.0)


def _symmetric(right: Polygon) -> Polygon:
    """A closed outline from its right half (listed top to bottom, starting and ending on x = 0)."""
    return np.concatenate([right, _mirror(right)[::-1]])


def _butterfly(rng: np.random.Generator) -> ShapeOps:
    upper, lower, tilt = rng.uniform(0.85, 1.1), rng.uniform(0.75, 1.1), rng.uniform(0.3, 0.6)
    wing = _ellipse((0.48, -0.28), 0.52 * upper, 0.38 * upper, -tilt)
    hind = _ellipse((0.36, 0.38), 0.34 * lower, 0.28 * lower, tilt)
    return [(wing, 1), (_mirror(wing), 1), (hind, 1), (_mirror(hind), 1), (_ellipse((0, 0.05), 0.09, 0.7), 1)]


def _leaf(rng: np.random.Generator) -> ShapeOps:
    width, serration, teeth = rng.uniform(0.38, 0.58), rng.uniform(0.0, 0.06), rng.integers(6, 12)
    s = np.linspace(0, 1, 41)
    right = np.stack([width * np.sin(np.pi * s) * (1 + serration * np.sin(2 * np.pi * teeth * s)), -1 + 1.75 * s], 1)
    return [(_symmetric(right), 1)]


def _acorn(rng: np.random.Generator) -> ShapeOps:
    cap, nut = rng.uniform(0.3, 0.42), rng.uniform(0.6, 0.72)
    return [(_ellipse((0, 0.22), 0.55, nut), 1), (_poly([(-0.2, 0.75), (0.2, 0.75), (0, 0.98)]), 1),
            (_ellipse((0, -0.3), 0.74, cap), 1), (_rect(-0.07, -0.95, 0.07, -0.5), 1)]


def _mug(rng: np.random.Generator) -> ShapeOps:
    side = (rng.choice([-1.0, 1.0]), 1.0)
    body = _poly([(-0.65, -0.75), (0.45, -0.75), (0.45, 0.6), (0.35, 0.75), (-0.55, 0.75), (-0.65, 0.6)])
    return [(_ellipse((0.5, 0.05), 0.42, 0.42) * side, 1), (_ellipse((0.5, 0.05), 0.22, 0.24) * side, 0),
            (body * side, 1)]


def _teapot(rng: np.random.Generator) -> ShapeOps:
    side = (rng.choice([-1.0, 1.0]), 1.0)
    spout = _poly([(0.45, 0.05), (0.92, -0.5), (1.0, -0.42), (0.58, 0.38)])
    ops = [(_ellipse((-0.72, 0.1), 0.3, 0.36), 1), (_ellipse((-0.72, 0.1), 0.15, 0.21), 0),
           (_ellipse((0, 0.2), 0.66, 0.55), 1), (_ellipse((0, -0.35), 0.36, 0.14), 1),
           (_circle(0.1, (0, -0.52), 16), 1), (spout, 1)]
    return [(polygon * side, fill) for polygon, fill in ops]


def _umbrella(rng: np.random.Generator) -> ShapeOps:
    scallops, depth = int(rng.integers(4, 8)), rng.uniform(0.08, 0.16)
    angles = np.linspace(np.pi, 2 * np.pi, 29)
    dome = np.stack([np.cos(angles), 0.45 + 1.15 * np.sin(angles)], 1)
    s = np.linspace(0, 1, 8 * scallops + 1)[1:-1]
    hem = np.stack([1 - 2 * s, 0.45 - depth * np.abs(np.sin(np.pi * scallops * s))], 1)
    return [(np.concatenate([dome, hem]), 1), (_rect(-0.04, -0.95, 0.04, -0.6), 1)]


def _balloon(rng: np.random.Generator) -> ShapeOps:
    taper = rng.uniform(0.15, 0.3)
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    radius = 1 - taper * np.maximum(0, np.sin(t)) ** 3
    outline = np.stack([0.72 * radius * np.cos(t), -0.1 + 0.85 * radius * np.sin(t)], 1)
    return [(outline, 1), (_poly([(0, 0.5), (0.12, 0.72), (-0.12, 0.72)]), 1)]


def _bolt(rng: np.random.Generator) -> ShapeOps:
    outline = _poly([(0.2, -1.0), (-0.5, 0.1), (-0.05, 0.05), (-0.35, 1.0), (0.55, -0.2), (0.1, -0.15), (0.5, -1.0)])
    return [(outline + rng.uniform(-0.06, 0.06, outline.shape), 1)]


def _rocket(rng: np.random.Generator) -> ShapeOps:
    width, fin = rng.uniform(0.26, 0.34), rng.uniform(0.3, 0.45)
    s = np.linspace(0, 1, 10)
    right = np.concatenate([np.stack([width * np.sin(np.pi / 2 * s), -1 + 0.65 * s], 1), _poly([(width, 0.6), (0, 0.6)])])
    fin_right = _poly([(width, 0.15), (width + fin, 0.75), (width, 0.6)])
    return [(_symmetric(right), 1), (fin_right, 1), (_mirror(fin_right), 1),
            (_rect(-0.6 * width, 0.55, 0.6 * width, 0.8), 1), (_circle(0.12, (0, -0.2), 16), 0)]


def _owl(rng: np.random.Generator) -> ShapeOps:
    width, tuft = rng.uniform(0.5, 0.62), rng.uniform(0.85, 1.0)
    ear = _poly([(0.12, -0.45), (0.48, -tuft), (0.5, -0.3)])
    return [(_ellipse((0, 0.1), width, 0.72), 1), (ear, 1), (_mirror(ear), 1)]


def _bell(rng: np.random.Generator) -> ShapeOps:
    flare = rng.uniform(0.8, 0.95)
    dome = _circle(0.38, (0, -0.45), 8, 1.5 * np.pi, 2 * np.pi)
    right = np.concatenate([dome, _poly([(0.42, 0.0), (0.55, 0.4), (flare, 0.6), (flare, 0.7), (0, 0.7)])])
    return [(_symmetric(right), 1), (_rect(-0.1, -1.0, 0.1, -0.75), 1), (_circle(0.16, (0, 0.78), 16), 1)]


def _guitar(rng: np.random.Generator) -> ShapeOps:
    # the neck (plain part "neck") leaves the upper bout, which is the lower one in this frame
    lower, upper = rng.uniform(0.58, 0.66), rng.uniform(0.42, 0.48)
    return [(_circle(lower, (0, -0.35)), 1), (_circle(upper, (0, 0.35)), 1), (_rect(-0.3, -0.3, 0.3, 0.35), 1),
            (_circle(0.15, (0, 0.0), 16), 0)]


def _key(rng: np.random.Generator) -> ShapeOps:
    bow, aspect, teeth = rng.uniform(0.35, 0.45), rng.uniform(0.8, 1.15), int(rng.integers(2, 4))
    ops = [(_ellipse((0, -0.55), bow * aspect, bow), 1), (_ellipse((0, -0.55), 0.5 * bow * aspect, 0.5 * bow), 0),
           (_rect(-0.09, -0.25, 0.09, 0.98), 1)]
    for tooth in range(teeth):
        bottom = 0.98 - 0.18 * tooth
        ops.append((_rect(0.05, bottom - 0.13, 0.09 + rng.uniform(0.18, 0.32), bottom), 1))
    return ops


def _padlock(rng: np.random.Generator) -> ShapeOps:
    shackle = rng.uniform(0.26, 0.32)
    return [(_ellipse((0, -0.25), 0.45, 0.6), 1), (_ellipse((0, -0.25), shackle, shackle + 0.15), 0),
            (_rect(-0.65, -0.15, 0.65, 0.85), 1), (_circle(0.1, (0, 0.3), 12), 0), (_rect(-0.04, 0.3, 0.04, 0.55), 0)]


def _hammer(rng: np.random.Generator) -> ShapeOps:
    face = rng.uniform(0.25, 0.35)
    claw = _poly([(-0.5, -0.05), (-0.95, -0.4), (-1.0, -0.25), (-0.75, 0.15), (-0.5, 0.4)])
    return [(_rect(-0.5, -0.05, 0.55, 0.4), 1), (_rect(0.55, -0.12, 0.55 + face, 0.47), 1), (claw, 1)]


def _horseshoe(rng: np.random.Generator) -> ShapeOps:
    inner, opening = rng.uniform(0.48, 0.56), rng.uniform(0.25, 0.45)
    start, stop = -np.pi / 2 + opening, 1.5 * np.pi - opening
    ops = [(_band((0, 0.05), 0.9, inner, start, stop, 32), 1)]
    for angle in np.linspace(start + 0.35, stop - 0.35, 6):
        middle = (0.9 + inner) / 2
        ops.append((_circle(0.06, (middle * np.cos(angle), 0.05 + middle * np.sin(angle)), 10), 0))
    return ops


def _anchor(rng: np.random.Generator) -> ShapeOps:
    stock = rng.uniform(0.4, 0.5)
    fluke = _poly([(0.62, 0.3), (0.92, 0.3), (0.84, 0.0)])
    return [(_circle(0.2, (0, -0.8), 16), 1), (_circle(0.1, (0, -0.8), 12), 0), (_rect(-0.08, -0.68, 0.08, 0.8), 1),
            (_rect(-stock, -0.58, stock, -0.46), 1), (_band((0, 0.1), 0.78, 0.62, 0.25, np.pi - 0.25), 1),
            (fluke, 1), (_mirror(fluke), 1)]


def _snowman(rng: np.random.Generator) -> ShapeOps:
    bottom = rng.uniform(0.42, 0.48)
    middle = bottom * rng.uniform(0.7, 0.8)
    head = middle * rng.uniform(0.72, 0.82)
    y_bottom = 0.95 - bottom
    y_middle = y_bottom - bottom - middle + 0.12
    y_head = y_middle - middle - head + 0.08
    arm = _poly([(0.8 * middle, y_middle - 0.05), (middle + 0.45, y_middle - 0.35), (middle + 0.48, y_middle - 0.3),
                 (0.8 * middle, y_middle + 0.03)])
    return [(_circle(bottom, (0, y_bottom)), 1), (_circle(middle, (0, y_middle)), 1), (_circle(head, (0, y_head)), 1),
            (arm, 1), (_mirror(arm), 1)]


def _fir(rng: np.random.Generator) -> ShapeOps:
    tiers = int(rng.integers(3, 5))
    step = 1.45 / (tiers + 1)
    ops = []
    for tier in range(tiers):
        apex = -1 + tier * step
        half = 0.35 + 0.55 * (tier + 1) / tiers
        ops.append((_poly([(0, apex), (half, apex + 2 * step), (-half, apex + 2 * step)]), 1))
    return ops


def _mitten(rng: np.random.Generator) -> ShapeOps:
    side = (rng.choice([-1.0, 1.0]), 1.0)
    thumb = _ellipse((-0.52, 0.0), 0.17, 0.36, rng.uniform(0.4, 0.7))
    ops = [(_ellipse((0, -0.2), rng.uniform(0.42, 0.5), 0.75), 1), (_rect(-0.45, -0.2, 0.45, 0.45), 1), (thumb, 1)]
    return [(polygon * side, fill) for polygon, fill in ops]


SHAPES_B: dict[str, ShapeFactory] = {
    "butterfly": _butterfly, "leaf": _leaf, "acorn": _acorn, "mug": _mug, "teapot": _teapot, "umbrella": _umbrella,
    "balloon": _balloon, "bolt": _bolt, "rocket": _rocket, "owl": _owl, "bell": _bell, "guitar": _guitar,
    "key": _key, "padlock": _padlock, "hammer": _hammer, "horseshoe": _horseshoe, "anchor": _anchor,
    "snowman": _snowman, "fir": _fir, "mitten": _mitten,
}

# ---------------------------------------------------------------------------------- plain parts
# Below the head, starting inside it (y = 0.2) so that head and part form one object; drawn in the
# generator's neutral colour.


def _handle(rng: np.random.Generator) -> Polygon:
    end = 0.2 + rng.uniform(1.3, 1.9)
    return _poly([(-0.1, 0.2), (0.1, 0.2), (0.12, end), (-0.12, end)])


def _crook(rng: np.random.Generator) -> Polygon:
    end = 0.2 + rng.uniform(0.9, 1.3)
    outer = _circle(0.38, (0.28, end), 12, 0, np.pi)[::-1]  # from (-0.1, end) round the bottom to (0.66, end)
    inner = _circle(0.18, (0.28, end), 10, 0, np.pi)  # from (0.46, end) back to (0.1, end)
    return np.concatenate([_poly([(-0.1, 0.2)]), outer, _poly([(0.66, end - 0.12), (0.46, end - 0.12)]), inner,
                           _poly([(0.1, 0.2)])])


def _tether(rng: np.random.Generator) -> Polygon:
    length, amplitude, waves, phase = rng.uniform(1.2, 1.8), rng.uniform(0.05, 0.15), rng.uniform(0.7, 1.5), \
        rng.uniform(0, 2 * np.pi)
    s = np.linspace(0, 1, 16)
    x, y = amplitude * np.sin(2 * np.pi * waves * s + phase) * s, 0.2 + length * s
    return np.concatenate([np.stack([x - 0.07, y], 1), np.stack([x + 0.07, y], 1)[::-1]])


def _trunk(rng: np.random.Generator) -> Polygon:
    end = 0.45 + rng.uniform(0.45, 0.7)
    return _poly([(-0.16, 0.2), (0.16, 0.2), (0.2, end), (-0.2, end)])


def _neck(rng: np.random.Generator) -> Polygon:
    end = 0.2 + rng.uniform(1.2, 1.6)
    return _poly([(-0.1, 0.2), (0.1, 0.2), (0.1, end), (0.17, end), (0.17, end + 0.3), (-0.17, end + 0.3),
                  (-0.17, end), (-0.1, end)])


def _cuff(rng: np.random.Generator) -> Polygon:
    return _rect(-0.55, 0.2, 0.55, 0.45 + rng.uniform(0.35, 0.5))


def _perch(rng: np.random.Generator) -> Polygon:
    tilt = rng.uniform(-0.1, 0.1)
    return _poly([(-1.15, 0.62 - tilt), (1.15, 0.62 + tilt), (1.15, 0.8 + tilt), (-1.15, 0.8 - tilt)])


PLAIN_PARTS_B: dict[str, PlainPartFactory] = {
    "handle": _handle, "crook": _crook, "tether": _tether, "trunk": _trunk, "neck": _neck, "cuff": _cuff,
    "perch": _perch,
}

# ------------------------------------------------------------------------------------- textures
# (x, y) are pixel offsets from the object's centre, ``scale`` its head radius in px.


def _turn(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates along and across the direction ``angle``."""
    return x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)


def _texture_wood(x, y, primary, accent, scale, rng):
    u, v = _turn(x, y, rng.uniform(0, np.pi))
    distance = np.hypot(u - rng.uniform(-1, 1) * scale, v + rng.uniform(2, 4) * scale)
    warp = 0.08 * scale * _smooth_noise(x.shape, rng, max(3.0, 0.4 * scale))
    rings = ((distance + warp) / (scale * rng.uniform(0.1, 0.18))) % 1.0
    choice = (0.5 + 0.5 * np.cos(2 * np.pi * rings)) ** 3 + 0.08 * rng.standard_normal(x.shape)
    return _mix(np.clip(choice, 0, 1).astype(np.float32), primary, accent)


def _texture_marble(x, y, primary, accent, scale, rng):
    u, _ = _turn(x, y, rng.uniform(0, np.pi))
    turbulence = _smooth_noise(x.shape, rng, max(3.0, 0.35 * scale)) + \
        0.5 * _smooth_noise(x.shape, rng, max(2.0, 0.15 * scale))
    wave = np.sin(2 * np.pi * u / (scale * rng.uniform(0.6, 1.0)) + 2.5 * turbulence)
    return _mix(((1 - np.abs(wave)) ** rng.uniform(5, 9)).astype(np.float32), primary, accent)


def _texture_hatching(x, y, primary, accent, scale, rng):
    period, width, angle = scale * rng.uniform(0.16, 0.26), rng.uniform(0.15, 0.25), rng.uniform(0, np.pi)
    first, second = _turn(x, y, angle)
    lines = ((first / period) % 1.0 < width) | ((second / period) % 1.0 < width)
    return _mix(lines.astype(np.float32), primary, accent)


def _texture_plaid(x, y, primary, accent, scale, rng):
    period = scale * rng.uniform(0.5, 0.8)
    u, v = _turn(x, y, rng.uniform(0, np.pi / 2))
    band = ((u / period) % 1.0 < 0.4).astype(np.float32) + ((v / period) % 1.0 < 0.4)
    fine = (((u / period) + 0.7) % 1.0 < 0.08) | (((v / period) + 0.7) % 1.0 < 0.08)
    return _mix((0.35 * band + 0.3 * fine).astype(np.float32), primary, accent)


def _texture_camouflage(x, y, primary, accent, scale, rng):
    cell = max(3.0, 0.3 * scale)
    blotches, shadows = _smooth_noise(x.shape, rng, cell), _smooth_noise(x.shape, rng, cell)
    choice = np.where(blotches > 0.3, 1.0, np.where(blotches < -0.4, 0.0, 0.5)).astype(np.float32)
    paint = _mix(choice, primary, accent)
    paint[shadows > 0.6] *= 0.45
    return paint


def _texture_brushed_metal(x, y, primary, accent, scale, rng):
    along, across = _turn(x, y, rng.uniform(0, np.pi))
    count = int(4 * scale) + 8
    streaks = rng.standard_normal(count).astype(np.float32)[
        np.clip(((across / scale + 1.5) * count / 3).astype(int), 0, count - 1)]
    highlight = np.exp(-(((along / scale) - rng.uniform(-0.5, 0.5)) / 0.35) ** 2).astype(np.float32)
    paint = _mix(np.clip(0.45 + 0.12 * streaks - 0.45 * highlight, 0, 1), primary, accent)
    return paint + highlight[..., None] * 0.35 * (255 - paint)


def _texture_weave(x, y, primary, accent, scale, rng):
    period = scale * rng.uniform(0.22, 0.32)
    u, v = _turn(x, y, rng.uniform(0, np.pi / 2))
    parity = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    across = np.where(parity > 0, (u / period) % 1.0, (v / period) % 1.0)
    threads = 0.5 - 0.5 * np.cos(2 * np.pi * 3 * across)
    return _mix(0.4 * parity, primary, accent) * (0.7 + 0.3 * threads)[..., None].astype(np.float32)


def _texture_scales(x, y, primary, accent, scale, rng):
    period = scale * rng.uniform(0.25, 0.38)
    u, v = _turn(x, y, rng.uniform(-0.3, 0.3))
    row = np.floor(v / period)
    dx = (u + (row % 2) * period / 2) % period - period / 2
    distance = np.hypot(dx, v % period) / period
    return _mix(np.clip((distance - 0.25) * 1.6, 0, 1).astype(np.float32), primary, accent)


def _texture_zigzag(x, y, primary, accent, scale, rng):
    period, amplitude = scale * rng.uniform(0.3, 0.45), rng.uniform(0.3, 0.6)
    u, v = _turn(x, y, rng.uniform(0, np.pi))
    triangle = np.abs((u / period) % 1.0 - 0.5) * 2
    return _mix(((v / period + amplitude * triangle) % 1.0 < 0.5).astype(np.float32), primary, accent)


TEXTURES_B: dict[str, Texture] = {
    "wood": _texture_wood, "marble": _texture_marble, "hatching": _texture_hatching, "plaid": _texture_plaid,
    "camouflage": _texture_camouflage, "brushed_metal": _texture_brushed_metal, "weave": _texture_weave,
    "scales": _texture_scales, "zigzag": _texture_zigzag,
}

# ----------------------------------------------------------------------------------- backgrounds


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return y, x


def _grain(height: int, width: int, rng: np.random.Generator, amount: float) -> np.ndarray:
    return amount * rng.standard_normal((height, width, 1)).astype(np.float32)


def _background_tiles(height, width, rng):
    y, x = _grid(height, width)
    size = rng.uniform(0.12, 0.2) * min(height, width)
    if rng.uniform() < 0.5:  # diagonal tiles
        x, y = (x + y) / np.sqrt(2), (x - y) / np.sqrt(2)
    column, row = np.floor(x / size).astype(int), np.floor(y / size).astype(int)
    light = _colour(rng.uniform(0, 1), rng.uniform(0.1, 0.35), rng.uniform(0.7, 0.9))
    dark = light * rng.uniform(0.75, 0.9)
    image = np.where(((column + row) % 2 == 0)[..., None], light, dark).astype(np.float32)
    image += rng.uniform(-10, 10, (64, 64)).astype(np.float32)[row % 64, column % 64][..., None]
    grout = ((x % size) < 1.5) | ((y % size) < 1.5)
    image[grout] = _colour(0.0, 0.0, rng.uniform(0.5, 0.65))
    return image + _grain(height, width, rng, 4)


def _background_overcast(height, width, rng):
    base = _colour(rng.uniform(0.55, 0.65), rng.uniform(0.05, 0.2), rng.uniform(0.55, 0.75))
    clouds = sum(weight * _smooth_noise((height, width), rng, cell) for weight, cell in ((1.0, 32), (0.5, 16), (0.25, 8)))
    light = np.linspace(20, -15, height, dtype=np.float32)[:, None, None]
    return base + 45 * clouds[..., None] + light


def _background_snow(height, width, rng):
    base = _colour(rng.uniform(0.55, 0.62), rng.uniform(0.03, 0.12), rng.uniform(0.85, 0.97))
    shade = np.linspace(0, -15, height, dtype=np.float32)[:, None, None]
    image = base + 12 * _smooth_noise((height, width), rng, 20)[..., None] + shade + _grain(height, width, rng, 3)
    image[rng.uniform(size=(height, width)) < 0.004] = 255.0
    for _ in range(int(rng.integers(15, 50))):
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        cv2.circle(image, centre, int(rng.integers(1, 3)), (255.0, 255.0, 255.0), -1)
    return image


def _background_carpet(height, width, rng):
    y, x = _grid(height, width)
    image = _colour(rng.uniform(0, 1), rng.uniform(0.45, 0.75), rng.uniform(0.35, 0.55)) + \
        10 * _smooth_noise((height, width), rng, 3)[..., None] + _grain(height, width, rng, 18)
    period = rng.uniform(0.15, 0.25) * min(height, width)
    lattice = (np.abs(((x + y) / period) % 1.0 - 0.5) < 0.06) | (np.abs(((x - y) / period) % 1.0 - 0.5) < 0.06)
    image[lattice] += 25
    return image


def _background_foliage(height, width, rng):
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = _colour(rng.uniform(0.25, 0.38), rng.uniform(0.5, 0.8), rng.uniform(0.15, 0.3))
    short = min(height, width)
    for _ in range(int(rng.integers(15, 35))):
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        colour = _colour(rng.uniform(0.15, 0.35), rng.uniform(0.3, 0.8), rng.uniform(0.4, 0.9))
        cv2.circle(image, centre, max(1, int(rng.uniform(0.04, 0.12) * short)), colour.tolist(), -1)
    return cv2.GaussianBlur(image, (0, 0), 0.04 * short)


def _background_studio(height, width, rng):
    y, x = _grid(height, width)
    centre_x, centre_y = rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height
    distance = ((x - centre_x) / width) ** 2 + ((y - centre_y) / height) ** 2
    colour = _colour(rng.uniform(0, 1), rng.uniform(0.1, 0.45), rng.uniform(0.6, 0.85))
    return colour * np.clip(1 - rng.uniform(0.9, 1.4) * distance, 0.1, 1)[..., None] + _grain(height, width, rng, 4)


def _background_night(height, width, rng):
    top = _colour(rng.uniform(0.6, 0.7), rng.uniform(0.6, 0.9), rng.uniform(0.08, 0.15))
    bottom = _colour(rng.uniform(0.6, 0.7), rng.uniform(0.4, 0.7), rng.uniform(0.2, 0.3))
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image = top + t * (bottom - top) + _grain(height, width, rng, 3)
    stars = rng.uniform(size=(height, width)) < 0.006
    image[stars] = rng.uniform(150, 255, (int(stars.sum()), 1)).astype(np.float32)
    return image


def _background_cobbles(height, width, rng):
    y, x = _grid(height, width)
    count = int(rng.integers(25, 45))
    centres = rng.uniform(0, 1, (count, 2)) * (width, height)
    distances = np.hypot(x[..., None] - centres[:, 0], y[..., None] - centres[:, 1])
    nearest = np.argmin(distances, axis=-1)
    two = np.partition(distances, 1, axis=-1)
    stones = np.stack([_colour(rng.uniform(0.05, 0.12), rng.uniform(0.05, 0.3), rng.uniform(0.35, 0.6))
                       for _ in range(count)])
    image = stones[nearest] - 0.6 * 128 / min(height, width) * two[..., :1] + _grain(height, width, rng, 8)
    image[(two[..., 1] - two[..., 0]) < rng.uniform(1.2, 2.0) * min(height, width) / 128] = _colour(0.08, 0.2, 0.2)
    return image.astype(np.float32)


BACKGROUNDS_B: dict[str, Background] = {
    "tiles": _background_tiles, "overcast": _background_overcast, "snow": _background_snow,
    "carpet": _background_carpet, "foliage": _background_foliage, "studio": _background_studio,
    "night": _background_night, "cobbles": _background_cobbles,
}

STYLE_B: SynthStyle = SYNTH_STYLES.register("b")(
    SynthStyle(class_set="synth_b", classes=CLASSES, shapes=SHAPES_B, plain_parts=PLAIN_PARTS_B, textures=TEXTURES_B,
               backgrounds=BACKGROUNDS_B, id_prefix="synthb", stream=(20, 2)).check("b")
)
