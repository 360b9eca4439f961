"""Figures of the results (matplotlib, Agg backend): sample grids, per-class IoU bars, training curves.

Every function draws into a figure of a fixed size (``figsize`` × ``dpi``, no tight bounding box, so
the PNG size is predictable) and writes it atomically. Label maps use the VOC palette of
``wsss_core.data.visualize.colorize`` (0 black background, 255 cream "ignore"), the colours the
dataset's own PNGs use, so a grid reads like the papers' qualitative figures.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from wsss_core.data.classes import IGNORE_INDEX, voc_palette  # noqa: E402
from wsss_core.data.visualize import colorize  # noqa: E402
from wsss_core.utils.atomic import atomic_path  # noqa: E402

GRID_COLUMNS: tuple[str, ...] = ("image", "ground truth", "CAM seed", "pseudo-mask", "prediction")
# history keys that are not loss terms
HISTORY_BOOKKEEPING = frozenset({"step", "epoch", "lr", "seconds"})
_MISSING_CELL = 0.85  # grey level of a cell whose artefact does not exist for that image


@dataclass(frozen=True)
class SampleRow:
    """One image of a sample grid; a ``None`` map is drawn as a grey "not computed" cell (e.g. the
    seeds of an evaluation-split image, or the pseudo-mask of an end-to-end method)."""

    label: str
    image: np.ndarray  # uint8 [H, W, 3]
    ground_truth: np.ndarray  # uint8 [H, W], 0..C or 255
    seed: np.ndarray | None = None  # uint8 label map of the seeds (argmax at the background threshold)
    pseudo_mask: np.ndarray | None = None
    prediction: np.ndarray | None = None
    # why a cell is empty, by column name ("CAM seed", "pseudo-mask", "prediction")
    missing: Mapping[str, str] = field(default_factory=dict)


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int) -> None:
    """Write ``figure`` as PNG atomically and close it."""
    try:
        with atomic_path(path, suffix=".png") as temporary:
            figure.savefig(temporary, format="png", dpi=dpi)
    finally:
        plt.close(figure)


# ------------------------------------------------------------------------------------ sample grid
def _legend_labels(rows: Sequence[SampleRow]) -> list[int]:
    """Label ids that appear in any label map of the grid, sorted (ignore last)."""
    present: set[int] = set()
    for row in rows:
        for label_map in (row.ground_truth, row.seed, row.pseudo_mask, row.prediction):
            if label_map is not None:
                present.update(int(value) for value in np.unique(label_map))
    return sorted(present, key=lambda value: (value == IGNORE_INDEX, value))


def sample_grid(
    rows: Sequence[SampleRow],
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "",
    tile_inches: float = 1.8,
    dpi: int = 100,
) -> tuple[int, int]:
    """Write the grid image | ground truth | CAM seed | pseudo-mask | prediction, one row per sample,
    with the row labels on the left and a legend of the class colours that appear; returns the PNG
    size (width, height) in pixels. ``class_names`` are the C foreground names (label 1..C)."""
    if not rows:
        raise ValueError("a sample grid needs at least one row")
    names = ["background", *class_names]
    palette = voc_palette() / 255.0
    legend_rows = math.ceil(len(_legend_labels(rows)) / 5)
    legend_inches = 0.25 * legend_rows + 0.3
    width = tile_inches * len(GRID_COLUMNS) + 1.2
    height = tile_inches * len(rows) + legend_inches + (0.4 if title else 0.2)
    figure, axes = plt.subplots(len(rows), len(GRID_COLUMNS), figsize=(width, height), squeeze=False)
    bottom = legend_inches / height
    figure.subplots_adjust(left=1.1 / width, right=0.99, top=1 - (0.45 if title else 0.25) / height,
                           bottom=bottom, wspace=0.04, hspace=0.06)
    for index, row in enumerate(rows):
        cells = (row.image, row.ground_truth, row.seed, row.pseudo_mask, row.prediction)
        for column, cell in enumerate(cells):
            axis = axes[index, column]
            axis.set_xticks([])
            axis.set_yticks([])
            if cell is None:
                shape = row.image.shape[:2]
                axis.imshow(np.full(shape + (3,), _MISSING_CELL))
                axis.text(0.5, 0.5, row.missing.get(GRID_COLUMNS[column], "not computed\nfor this image"),
                          ha="center", va="center", fontsize=7,
                          color="0.35", transform=axis.transAxes)
            else:
                axis.imshow(cell if column == 0 else colorize(cell), interpolation="nearest")
            if index == 0:
                axis.set_title(GRID_COLUMNS[column], fontsize=9)
        axes[index, 0].set_ylabel(row.label, fontsize=8, rotation=0, ha="right", va="center")
    handles = [
        Patch(facecolor=palette[label], edgecolor="0.5",
              label="ignore" if label == IGNORE_INDEX else (names[label] if label < len(names) else str(label)))
        for label in _legend_labels(rows)
    ]
    figure.legend(handles=handles, loc="lower center", ncol=5, fontsize=7, frameon=False,
                  bbox_to_anchor=(0.5, 0.0))
    if title:
        figure.suptitle(title, fontsize=10, y=1 - 0.08 / height, va="top")
    size = (round(width * dpi), round(height * dpi))
    save_figure(figure, path, dpi)
    return size


# ------------------------------------------------------------------------------- class IoU chart
def class_iou_chart(
    iou_by_run: Mapping[str, Mapping[str, float | None]],
    path: str | os.PathLike[str],
    title: str = "",
    classes_per_panel: int = 21,
    dpi: int = 100,
) -> tuple[int, int]:
    """Grouped bars of per-class IoU (percent), one colour per run, classes in the order of the first
    run's ``iou`` mapping, ``classes_per_panel`` classes per panel (COCO's 81 take four panels).
    Classes a run cannot score (absent from prediction and ground truth, ``None``/NaN) get "n/a"
    instead of a bar, so they are not mistaken for an IoU of 0.
    Returns the PNG size (width, height) in pixels."""
    if not iou_by_run:
        raise ValueError("a class IoU chart needs at least one run")
    runs = list(iou_by_run)
    classes = list(next(iter(iou_by_run.values())))
    panels = max(1, math.ceil(len(classes) / classes_per_panel))
    width, panel_height = 14.0, 3.6
    legend_rows = math.ceil(len(runs) / 5)  # the legend sits above the first panel, below the title
    top_inches = (0.35 if title else 0.1) + 0.22 * legend_rows
    height = panel_height * panels + top_inches
    figure, axes = plt.subplots(panels, 1, figsize=(width, height), squeeze=False)
    figure.subplots_adjust(left=0.06, right=0.99, top=1 - top_inches / height, bottom=1.0 / height, hspace=0.9)
    colours = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    bar_width = 0.8 / len(runs)
    for panel in range(panels):
        axis = axes[panel, 0]
        names = classes[panel * classes_per_panel : (panel + 1) * classes_per_panel]
        positions = np.arange(len(names))
        for index, run in enumerate(runs):
            values = np.array([_as_percent(iou_by_run[run].get(name)) for name in names], dtype=np.float64)
            mean = np.nanmean([_as_percent(value) for value in iou_by_run[run].values()])
            offsets = positions - 0.4 + (index + 0.5) * bar_width
            axis.bar(offsets, np.nan_to_num(values, nan=0.0), width=bar_width, color=colours(index),
                     label=f"{run} (mIoU {mean:.1f})" if panel == 0 else None)
            for offset in offsets[np.isnan(values)]:  # not scored: absent from prediction and ground truth
                axis.text(offset, 1.0, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color="0.3")
        axis.set_xticks(positions)
        axis.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        axis.set_xlim(-0.6, len(names) - 0.4)
        axis.set_ylim(0, 100)
        axis.set_ylabel("IoU (%)")
        axis.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=min(len(runs), 5), fontsize=8, frameon=False)
    if title:
        figure.suptitle(title, fontsize=11, y=1 - 0.06 / height, va="top")
    size = (round(width * dpi), round(height * dpi))
    save_figure(figure, path, dpi)
    return size


def _as_percent(value: float | None) -> float:
    return math.nan if value is None else 100.0 * float(value)


# ---------------------------------------------------------------------------------- training curves
def loss_terms(history: Sequence[Mapping[str, float]]) -> list[str]:
    """Names of the logged loss terms (every numeric key but bookkeeping and mIoU), total first."""
    names: list[str] = []
    for record in history:
        for name, value in record.items():
            if name in HISTORY_BOOKKEEPING or "miou" in name or name in names:
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                names.append(name)
    return sorted(names, key=lambda name: name != "loss")


def training_curves(
    history: Sequence[Mapping[str, float]],
    path: str | os.PathLike[str],
    title: str = "",
    seed_miou: float | None = None,
    segmentation_history: Sequence[Mapping[str, float]] | None = None,
    diagnostics: Collection[str] = (),
    dpi: int = 100,
) -> tuple[int, int]:
    """Loss terms, learning rate and mIoU against the optimiser step of a training history (records
    of ``wsss_core.training.loop``: step, epoch, loss terms, lr, seconds, and any ``*miou*`` values
    evaluated during training). ``seed_miou`` (fraction) marks the exported seeds' score at the last
    step; ``segmentation_history`` adds a panel with the segmentation network's losses. Logged values
    named in ``diagnostics`` (counts such as CTI's ``memory_full_classes``) are drawn dashed on a second
    y axis of the loss panel, so they do not squash the losses. Returns the PNG size (width, height)."""
    if not history:
        raise ValueError("the training history is empty: was the model trained with log_every > 0?")
    panels = 4 if segmentation_history else 3
    width, height = 4.6 * panels, 3.8
    figure, axes = plt.subplots(1, panels, figsize=(width, height), squeeze=False)
    figure.subplots_adjust(left=0.05, right=0.99, top=1 - (0.55 if title else 0.35) / height, bottom=0.16,
                           wspace=0.36)
    steps = np.array([record["step"] for record in history], dtype=np.float64)
    _plot_losses(axes[0, 0], history, "classifier / network losses", diagnostics)

    axis = axes[0, 1]
    rates = [record.get("lr") for record in history]
    if any(rate is not None for rate in rates):
        axis.plot(steps, [math.nan if rate is None else rate for rate in rates], color="tab:purple")
        axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    axis.set_title("learning rate", fontsize=9)
    axis.set_xlabel("step")

    axis = axes[0, 2]
    evaluated = sorted({name for record in history for name in record if "miou" in name})
    for name in evaluated:
        points = [(record["step"], 100.0 * record[name]) for record in history if record.get(name) is not None]
        axis.plot(*zip(*points), marker="o", markersize=3, label=name)
    if seed_miou is not None:
        axis.plot([steps[-1]], [100.0 * seed_miou], marker="*", markersize=12, linestyle="none", color="tab:red",
                  label=f"exported seeds {100.0 * seed_miou:.1f}")
    if evaluated or seed_miou is not None:
        axis.legend(fontsize=7)
        axis.set_ylim(0, 100)
    else:
        axis.text(0.5, 0.5, "no mIoU evaluated\nduring training", ha="center", va="center", color="0.4",
                  transform=axis.transAxes)
    axis.set_title("seed mIoU (%)", fontsize=9)
    axis.set_xlabel("step")
    axis.set_xlim(axes[0, 0].get_xlim())

    if segmentation_history:
        _plot_losses(axes[0, 3], segmentation_history, "segmentation network losses", diagnostics)
    if title:
        figure.suptitle(title, fontsize=10, y=1 - 0.06 / height, va="top")
    size = (round(width * dpi), round(height * dpi))
    save_figure(figure, path, dpi)
    return size


def _plot_losses(
    axis: plt.Axes, history: Sequence[Mapping[str, float]], title: str, diagnostics: Collection[str]
) -> None:
    steps = [record["step"] for record in history]
    terms = loss_terms(history)
    for name in (name for name in terms if name not in diagnostics):
        values = [record.get(name, math.nan) for record in history]
        total = name == "loss"  # drawn on top: a single-term loss equals its term
        axis.plot(steps, values, label=name, linewidth=2.5 if total else 1.0, color="black" if total else None,
                  zorder=3 if total else 2, alpha=0.8 if total else 1.0)
    axis.set_title(title, fontsize=9)
    axis.set_xlabel("step")
    axis.legend(fontsize=7, loc="upper right")
    axis.grid(alpha=0.3)
    shown = [name for name in terms if name in diagnostics]
    if shown:
        second = axis.twinx()
        for name in shown:
            second.plot(steps, [record.get(name, math.nan) for record in history], linestyle="--", linewidth=1.0,
                        color="0.5", label=f"{name} (right axis)")
        second.legend(fontsize=7, loc="center right")
