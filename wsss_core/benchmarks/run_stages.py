"""Benchmark table of a finished run: images/s, wall time and peak memory of every stage it ran.

    python -m wsss_core.benchmarks.run_stages results/synth/mctformer [results/synth/cti ...] \\
        [--benchmarks benchmarks] [--output table.md]

Each stage records its own throughput in its artefact (``images_per_second`` of the model checkpoint
or of the HDF5 store: training images per second for the training stages, images per second for
export, refinement and inference); Snakemake's ``benchmark:`` file of the job that wrote it gives the
wall time and the peak resident memory (``max_rss``, MiB) of the whole job. This command lays them side
by side for every artefact of a run folder that exists, in pipeline order. It measures nothing itself:
the figures are those of the real run (``wsss_core.benchmarks.stages`` times a training step alone,
with the GPU speed options against plain fp32).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import torch

# (artefact pattern under the run folder, benchmark file name pattern, stage); {r} = refinement or route
ARTEFACTS: tuple[tuple[str, str, str], ...] = (
    ("train/model.pt", "train_method", "train_method"),
    ("seeds/cams.h5", "export_seeds", "export_seeds"),
    ("masks/crf/masks.h5", "refine_crf", "refine_crf"),
    ("masks/own/masks.h5", "export_pseudo_labels", "export_pseudo_labels"),
    ("masks/{r}/relation_labels.h5", "affinity_labels_{r}", "affinity_labels"),
    ("masks/{r}/model.pt", "train_affinity_{r}", "train_affinity"),
    ("masks/{r}/masks.h5", "refine_random_walk_{r}", "refine_random_walk"),
    ("seg/{r}/model.pt", "train_segmentation_{r}", "train_segmentation"),
    ("seg/{r}/predictions.h5", "infer_segmentation_{r}", "infer_segmentation"),
    ("decoder/predictions.h5", "infer_decoder", "infer_decoder"),
)


@dataclass(frozen=True)
class StageFigures:
    """One stage job of a run: what it wrote and how fast, how long and how large it ran."""

    run: str
    stage: str
    artefact: str
    images_per_second: float | None
    seconds: float | None
    peak_rss_mib: float | None


def recorded_speed(path: Path) -> float | None:
    """``images_per_second`` recorded by the stage in a checkpoint or an HDF5 store."""
    if path.suffix == ".pt":
        payload = torch.load(path, map_location="cpu", weights_only=False)
        value = payload.get("images_per_second") if isinstance(payload, dict) else None
    else:
        with h5py.File(path, "r") as store:
            value = store.attrs.get("images_per_second")
    return None if value is None or not math.isfinite(float(value)) else float(value)


def benchmark_figures(path: Path) -> tuple[float | None, float | None]:
    """(wall seconds, max_rss MiB) of a Snakemake benchmark TSV (its last repeat), or Nones."""
    if not path.is_file():
        return None, None
    with path.open() as stream:
        rows = list(csv.DictReader(stream, delimiter="\t"))
    if not rows:
        return None, None

    def number(key: str) -> float | None:
        try:
            return float(rows[-1][key])
        except (KeyError, TypeError, ValueError):
            return None

    return number("s"), number("max_rss")


def _expand(run_dir: Path, pattern: str) -> Iterator[tuple[Path, str]]:
    """Existing artefacts matching ``pattern`` and the value of ``{r}`` in each."""
    if "{r}" not in pattern:
        path = run_dir / pattern
        if path.is_file():
            yield path, ""
        return
    head, tail = pattern.split("{r}")
    for folder in sorted((run_dir / head).glob("*")):
        if folder.name in {"crf", "own"} and tail == "/masks.h5":
            continue  # written by refine_crf / export_pseudo_labels, listed above
        if (folder / tail.lstrip("/")).is_file():
            yield folder / tail.lstrip("/"), folder.name


def run_figures(run_dir: Path, benchmarks: Path) -> list[StageFigures]:
    """Every stage figure of one run folder ``results/<dataset>/<run>``."""
    dataset, run = run_dir.parent.name, run_dir.name
    figures = []
    for pattern, benchmark, stage in ARTEFACTS:
        for path, value in _expand(run_dir, pattern):
            seconds, rss = benchmark_figures(benchmarks / dataset / run / (benchmark.format(r=value) + ".tsv"))
            figures.append(StageFigures(run, stage, str(path.relative_to(run_dir)), recorded_speed(path), seconds, rss))
    return figures


def render_markdown(figures: Sequence[StageFigures]) -> str:
    def cell(value: float | None, digits: int) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    lines = ["| run | stage | artefact | images/s | wall s | peak RSS (MiB) |", "|:---|:---|:---|---:|---:|---:|"]
    for item in figures:
        lines.append(f"| {item.run} | {item.stage} | `{item.artefact}` | {cell(item.images_per_second, 1)} | "
                     f"{cell(item.seconds, 0)} | {cell(item.peak_rss_mib, 0)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders results/<dataset>/<run>")
    parser.add_argument("--benchmarks", type=Path, default=Path("benchmarks"), help="Snakemake benchmark root")
    parser.add_argument("--output", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    missing = [str(run) for run in args.runs if not run.is_dir()]
    if missing:
        parser.error(f"run folders {missing} do not exist: run their targets first")
    table = render_markdown([item for run in args.runs for item in run_figures(run, args.benchmarks)])
    print(table, end="")
    if args.output:
        from wsss_core.utils.atomic import write_text

        write_text(args.output, table)


if __name__ == "__main__":
    main()
