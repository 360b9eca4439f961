"""Class names of the supported label spaces and the PASCAL VOC colour palette.

Label space convention everywhere in ``wsss_core``: 0 is background, ``1..C`` the foreground classes
in the order listed here, 255 is "ignore" (VOC's object-boundary band, COCO's crowd/unlabelled pixels).
Image-level labels are multi-hot vectors over the C foreground classes (class ``c`` → label ``c + 1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from wsss_core.errors import ConfigError

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)

# COCO 2014 category-id order with the gaps removed (the order of CTI, MCTformer and RIB).
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic_light", "fire_hydrant", "stop_sign", "parking_meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag",
    "tie", "suitcase", "frisbee", "skis", "snowboard", "sports_ball", "kite", "baseball_bat",
    "baseball_glove", "skateboard", "surfboard", "tennis_racket", "bottle", "wine_glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot_dog",
    "pizza", "donut", "cake", "chair", "couch", "potted_plant", "bed", "dining_table", "toilet", "tv",
    "laptop", "mouse", "remote", "keyboard", "cell_phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy_bear", "hair_drier", "toothbrush",
)

# The synthetic benchmark's 20 classes (wsss_core.data.synth draws each as a family of shapes).
SYNTH_CLASSES: tuple[str, ...] = (
    "sunflower", "lollipop", "sailboat", "fish", "kite", "mushroom", "starfish", "tyre", "cactus",
    "ladybird", "moon", "signpost", "cookie", "gem", "pinwheel", "jellyfish", "lamp", "shield",
    "crab", "clover",
)

# The second synthetic style's 20 classes (wsss_core.data.synth_styles.b: other shapes, textures and backgrounds).
SYNTH_B_CLASSES: tuple[str, ...] = (
    "butterfly", "leaf", "acorn", "mug", "teapot", "umbrella", "balloon", "bolt", "rocket", "owl",
    "bell", "guitar", "key", "padlock", "hammer", "horseshoe", "anchor", "snowman", "fir", "mitten",
)

CLASS_SETS: dict[str, tuple[str, ...]] = {
    "voc": VOC_CLASSES, "coco": COCO_CLASSES, "synth": SYNTH_CLASSES, "synth_b": SYNTH_B_CLASSES,
}

IGNORE_INDEX = 255


def class_names(class_set: str, config_key: str = "datasets.<name>.classes") -> tuple[str, ...]:
    """The foreground class names of ``class_set`` (``voc``, ``coco``, ``synth`` or ``synth_b``), in label order;
    ``config_key`` is named in the error for an unknown set."""
    try:
        return CLASS_SETS[class_set]
    except KeyError:
        known = ", ".join(sorted(CLASS_SETS))
        raise ConfigError(
            f"unknown class set '{class_set}' in {config_key}; use one of: {known}"
        ) from None


def dataset_class_names(config: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """The foreground classes of a ``datasets.<name>`` block: a named set (``classes: voc``) or a
    dataset's own list (``class_names: [...]``), exactly one of them, so a label space is never guessed."""
    has_set, has_list = config.get("classes") is not None, config.get("class_names") is not None
    if has_set == has_list:
        raise ConfigError(
            f"datasets.{name} needs exactly one of classes (voc, coco, synth or synth_b) and class_names (your own "
            f"list, e.g. [cell, nucleus]); it has {'both' if has_set else 'neither'}"
        )
    if has_set:
        return class_names(str(config["classes"]), f"datasets.{name}.classes")
    names = config["class_names"]
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
        raise ConfigError(f"datasets.{name}.class_names must be a non-empty list of class names, got {names!r}")
    names = tuple(str(item).strip() for item in names)
    if "" in names or len(set(names)) != len(names) or "background" in names:
        raise ConfigError(
            f"datasets.{name}.class_names {list(names)} must be distinct, non-empty names of the foreground "
            "classes (background is label 0 and is not listed)"
        )
    if len(names) > IGNORE_INDEX - 1:
        raise ConfigError(f"datasets.{name}.class_names lists {len(names)} classes; at most {IGNORE_INDEX - 1} fit in a mask")
    return names


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map, ``uint8 [256, 3]``: the bit-interleaved palette of VOC's PNGs
    (index 0 black, 1 dark red, ..., 255 cream for the ignore band)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (red, green, blue)
    return palette
