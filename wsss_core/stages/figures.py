"""Stage ``figures``: the PNGs of the results, one subcommand per kind of figure.

    python -m wsss_core.stages.figures samples --config JSON --seeds results/{ds}/{m}/seeds/cams.h5 \\
        --seed-eval results/{ds}/{m}/seeds/eval.json [--masks results/{ds}/{m}/masks/{r}/masks.h5] \\
        --predictions results/{ds}/{m}/seg/{r}.{net}/predictions.h5 --output results/{ds}/{m}/figures/samples.png

    python -m wsss_core.stages.figures class-iou --config JSON \\
        --scores cti=results/{ds}/cti/miou.json mcc=results/{ds}/mcc/miou.json \\
        --output results/{ds}/figures/class_iou.png

    python -m wsss_core.stages.figures training --config JSON --model results/{ds}/{m}/train/model.pt \\
        [--seed-eval results/{ds}/{m}/seeds/eval.json] [--segmentation-model .../seg/{r}.{net}/model.pt] \\
        --output results/{ds}/{m}/figures/training_curves.png

Configuration keys read: ``dataset`` (the reader; ``roles.score`` and ``roles.evaluate`` name the splits
the default sample is drawn from), ``run`` (titles), and ``stage`` (keys of ``stages.reporting``, read as
its type ``wsss_core.stages.settings.ReportingStage``, whose defaults are the only ones):

* ``sample_ids``: the images of the sample grid, a list of ids of the score split (rows with seeds and
  pseudo-masks) and/or of the evaluation split (rows with predictions); empty = the first
  ``num_samples`` ids of each of the two splits, so the sample is the same for every method;
* ``num_samples``;
* ``classes_per_panel`` for the class IoU chart;
* ``diagnostics``: logged values that are not losses, drawn on a second axis of the training-curve loss
  panel.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from wsss_core.data import open_dataset
from wsss_core.errors import ConfigError, InputError, StoreError
from wsss_core.evaluation.metrics import seeds_to_labels
from wsss_core.io.seed_store import MaskStore, SeedStore
from wsss_core.registry import Registry
from wsss_core.reporting import figures
from wsss_core.reporting.summary import read_json
from wsss_core.stages._cli import parse_config, run
from wsss_core.stages._shared import section_settings, stage_config
from wsss_core.stages.settings import ReportingStage

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.figures"

# subcommand name → (add its arguments, draw the figure)
SUBCOMMANDS: Registry[tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]] = (
    Registry("figure")
)


def _settings(config: Mapping[str, Any]) -> ReportingStage:
    """The ``stage`` keys of ``stages.reporting`` that this job got, as their type."""
    return section_settings(stage_config(config), ReportingStage)


def _title(config: Mapping[str, Any], what: str) -> str:
    dataset = (config.get("dataset") or {}).get("name", "")
    run_name = config.get("run", "")
    return " · ".join(part for part in (run_name, dataset, what) if part)


# ------------------------------------------------------------------------------------------ samples
def sample_ids(config: Mapping[str, Any], reader: Any) -> list[tuple[str, str]]:
    """(image id, split) of the grid's rows: ``stage.sample_ids``, or the first ``num_samples`` of the
    score split and of the evaluation split."""
    settings = _settings(config)
    roles = (config.get("dataset") or {}).get("roles") or {}
    splits = [roles[role] for role in ("score", "evaluate") if role in roles]
    if not splits:
        raise ConfigError("dataset.roles has neither 'score' nor 'evaluate': pass the dataset block of config.yaml")
    members = {split: reader.ids(split) for split in dict.fromkeys(splits)}
    requested = settings.sample_ids
    if not requested:
        return [(image_id, split) for split, ids in members.items() for image_id in ids[:settings.num_samples]]
    chosen = []
    for image_id in requested:
        split = next((split for split, ids in members.items() if image_id in ids), None)
        if split is None:
            raise ConfigError(
                f"stage.sample_ids: image '{image_id}' is in neither split {list(members)}; pick ids from "
                f"{', '.join(f'{reader.name} {split}' for split in members)}"
            )
        chosen.append((str(image_id), split))
    return chosen


def _seed_threshold(path: Path | None) -> float | None:
    return None if path is None else read_json(path).get("best_threshold")


def sample_rows(
    config: Mapping[str, Any],
    seeds: Path,
    seed_eval: Path | None,
    masks: Path | None,
    predictions: Path | None,
) -> tuple[list[figures.SampleRow], list[str]]:
    """The grid's rows and the dataset's class names."""
    reader = open_dataset(config["dataset"])
    seed_store = SeedStore(seeds)
    threshold = _seed_threshold(seed_eval)
    if not seed_store.has_background and threshold is None:
        raise StoreError(f"{seeds} has no background channel: pass --seed-eval with its best_threshold")
    mask_store = MaskStore(masks) if masks is not None else None
    prediction_store = MaskStore(predictions) if predictions is not None else None
    roles = config["dataset"].get("roles") or {}
    train_split, evaluate_split = roles.get("train", "train"), roles.get("evaluate", "val")
    rows = []
    for image_id, split in sample_ids(config, reader):
        missing = {
            "CAM seed": f"seeds are exported\nfor {train_split} only",
            "pseudo-mask": (f"pseudo-masks are made\nfor {train_split} only" if mask_store is not None
                            else "no pseudo-masks:\nend-to-end route"),
            "prediction": f"predictions are made\nfor {evaluate_split} only",
        }
        rows.append(
            figures.SampleRow(
                label=f"{image_id}\n({split})",
                image=reader.image(image_id),
                ground_truth=reader.mask(image_id),
                seed=seeds_to_labels(seed_store.get(image_id), threshold) if image_id in seed_store else None,
                pseudo_mask=mask_store.get(image_id) if mask_store is not None and image_id in mask_store else None,
                prediction=(prediction_store.get(image_id)
                            if prediction_store is not None and image_id in prediction_store else None),
                missing=missing,
            )
        )
    return rows, list(reader.class_names)


def _samples_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=Path, required=True, help="seed store (seeds/cams.h5)")
    parser.add_argument("--seed-eval", type=Path, default=None, help="seed evaluation (best background threshold)")
    parser.add_argument("--masks", type=Path, default=None, help="pseudo-mask store (multi-stage route)")
    parser.add_argument("--predictions", type=Path, default=None, help="prediction store of the evaluation split")


def _samples(args: argparse.Namespace) -> None:
    rows, class_names = sample_rows(args.config, args.seeds, args.seed_eval, args.masks, args.predictions)
    size = figures.sample_grid(rows, class_names, args.output, title=_title(args.config, "samples"))
    LOG.info("wrote %s (%d rows, %dx%d px)", args.output, len(rows), *size)


SUBCOMMANDS.register("samples")((_samples_arguments, _samples))


# ---------------------------------------------------------------------------------------- class IoU
def parse_score_argument(value: str) -> tuple[str, Path]:
    """``LABEL=path/to/miou.json`` → (label, path)."""
    label, separator, path = value.partition("=")
    if not separator or not label.strip() or not path.strip():
        raise ConfigError(
            f"--scores entry '{value}' is not LABEL=path/to/miou.json, e.g. cti=results/voc/cti/miou.json"
        )
    return label.strip(), Path(path.strip())


def class_iou(arguments: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """Per-class IoU of each ``LABEL=scores.json`` (``iou``, or ``best.iou`` of a seed evaluation)."""
    result: dict[str, dict[str, float | None]] = {}
    for argument in arguments:
        label, path = parse_score_argument(argument)
        payload = read_json(path)
        iou = payload.get("iou") or (payload.get("best") or {}).get("iou")
        if not isinstance(iou, Mapping) or not iou:
            raise InputError(f"'{path}' has no per-class 'iou' mapping: pass a miou.json or an evaluation JSON")
        if label in result:
            raise ConfigError(f"--scores names the label '{label}' twice; give each run its own label")
        result[label] = {str(name): (None if value is None else float(value)) for name, value in iou.items()}
    return result


def _class_iou_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scores", nargs="+", required=True, metavar="LABEL=SCORES_JSON", help="one per run")


def _class_iou(args: argparse.Namespace) -> None:
    iou = class_iou(args.scores)
    per_panel = _settings(args.config).classes_per_panel
    size = figures.class_iou_chart(iou, args.output, title=_title(args.config, "per-class IoU"),
                                   classes_per_panel=per_panel)
    LOG.info("wrote %s (%d runs, %dx%d px)", args.output, len(iou), *size)


SUBCOMMANDS.register("class-iou")((_class_iou_arguments, _class_iou))


# ------------------------------------------------------------------------------------------ training
def training_history(path: Path) -> list[dict[str, float]]:
    """The ``history`` of a model file written by train_method or train_segmentation."""
    if not path.is_file():
        raise InputError(f"model file '{path}' does not exist: build it first (snakemake {path})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises several types for a truncated or foreign file
        raise InputError(f"model file '{path}' cannot be read ({type(error).__name__}); delete it and re-run") from None
    if not isinstance(payload, Mapping) or "history" not in payload:
        raise InputError(f"'{path}' has no 'history': it must be a model file written by train_method")
    return list(payload["history"])


def _training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="train/model.pt of the run")
    parser.add_argument("--seed-eval", type=Path, default=None, help="seed evaluation JSON (marks the seed mIoU)")
    parser.add_argument("--segmentation-model", type=Path, default=None, help="seg/{r}.{net}/model.pt (extra panel)")


def _training(args: argparse.Namespace) -> None:
    seed_miou = None
    if args.seed_eval is not None:
        evaluation = read_json(args.seed_eval)
        seed_miou = (evaluation.get("best") or evaluation).get("miou")
    segmentation = training_history(args.segmentation_model) if args.segmentation_model else None
    diagnostics = _settings(args.config).diagnostics
    size = figures.training_curves(training_history(args.model), args.output, title=_title(args.config, "training"),
                                   seed_miou=seed_miou, segmentation_history=segmentation,
                                   diagnostics=frozenset(diagnostics))
    LOG.info("wrote %s (%dx%d px)", args.output, *size)


SUBCOMMANDS.register("training")((_training_arguments, _training))


# ----------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="figure", required=True)
    for name in SUBCOMMANDS.names():
        add_arguments, _ = SUBCOMMANDS.get(name)
        command = commands.add_parser(name)
        command.add_argument("--config", type=parse_config, required=True, help="stage configuration (JSON or @file)")
        command.add_argument("--output", type=Path, required=True, help="PNG to write")
        add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    def execute() -> None:
        if args.output.suffix != ".png":
            raise ConfigError(f"--output '{args.output}' must end in .png")
        _, draw = SUBCOMMANDS.get(args.figure)
        draw(args)

    run(execute)


if __name__ == "__main__":
    main()
