"""Wall and CPU seconds per run of a finished synthetic summary, from Snakemake's benchmark files
(``benchmarks/<dataset>/<run>/**/*.tsv``), grouped by stage kind, as one Markdown row per run:

    python scripts/diagnostics/walltimes.py [ROOT] [DATASET]

ROOT is the checkout that ran the workflow (default: .), DATASET default ``synth``. The last row of each
benchmark file counts (a rerun replaces an earlier one).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

GROUPS = {
    "train": ("train_method",),
    "seeds": ("export_seeds",),
    "refine": ("refine", "train_affinity", "affinity_labels", "export_pseudo_labels"),
    "segmentation": ("train_segmentation",),
    "inference": ("infer_",),
    "evaluation": ("evaluate", "final_result"),
    "figures": ("sample_grid", "training_curves"),
}


def seconds(path: Path) -> tuple[float, float]:
    with path.open() as handle:
        row = list(csv.DictReader(handle, delimiter="\t"))[-1]
    return float(row["s"]), float(row["cpu_time"])


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    dataset = sys.argv[2] if len(sys.argv) > 2 else "synth"
    folder = root / "benchmarks" / dataset
    total_wall = total_cpu = 0.0
    print("| run | " + " | ".join(GROUPS) + " | total wall | CPU |")
    print("|:---|" + "---:|" * (len(GROUPS) + 2))
    for run in sorted(path for path in folder.iterdir() if path.is_dir()):
        stages = {str(path.relative_to(run).with_suffix("")): seconds(path) for path in run.rglob("*.tsv")}
        wall = sum(value[0] for value in stages.values())
        cpu = sum(value[1] for value in stages.values())
        cells = [sum(v[0] for k, v in stages.items() if k.startswith(prefixes)) for prefixes in GROUPS.values()]
        print(f"| {run.name} | " + " | ".join(f"{cell:.0f}" for cell in cells) + f" | {wall:.0f} | {cpu:.0f} |")
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
    for path in sorted(folder.glob("*.tsv")):  # dataset-level jobs (summary, figures index, pretraining)
        wall, cpu = seconds(path)
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
    print(f"\ntotal: {total_wall:.0f} s wall, {total_cpu:.0f} s CPU")


if __name__ == "__main__":
    main()
