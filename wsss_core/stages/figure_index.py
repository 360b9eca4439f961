"""Stage ``figure_index``: one Markdown page that shows a dataset's summary table and every figure.

    python -m wsss_core.stages.figure_index --config JSON --summary results/synth/summary.md \\
        --figures results/synth/figures/class_iou.png results/synth/cti/figures/samples.png ... \\
        --output results/synth/figures/index.md

The page embeds the summary table (the Markdown the summary stage wrote) and links each PNG with a
caption, with paths relative to the page, so ``results/<dataset>/figures/index.md`` reads well in any
Markdown viewer. Its rule depends on every reporting output, so the same target also makes
``snakemake --report report.html results/<dataset>/figures/index.md`` collect all of them.
Figures are grouped by run (``results/<dataset>/<run>/figures/<name>.png``); the caption comes from the
figure's file name (``samples``, ``training_curves``, ``class_iou``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsss_core.errors import ConfigError, InputError
from wsss_core.stages._cli import run, stage_parser
from wsss_core.utils.atomic import write_text
from wsss_core.utils.provenance import provenance

STAGE = "wsss_core.stages.figure_index"
CAPTIONS = {
    "class_iou": "Per-class IoU of the final segmentation on the evaluation split, one colour per run.",
    "samples": "Image, ground truth, CAM seed, pseudo-mask and prediction for a fixed sample of images.",
    "training_curves": "Training losses, learning rate and seed mIoU from the logged history.",
}


class FigureIndexError(InputError):
    """A figure or the summary named on the command line does not exist."""


def _group(figure: Path, dataset_dir: Path) -> str:
    """``results/<ds>/<run>/figures/x.png`` → run; ``results/<ds>/figures/x.png`` → "all runs"."""
    parts = figure.relative_to(dataset_dir).parts if figure.is_relative_to(dataset_dir) else figure.parts
    return parts[0] if len(parts) == 3 and parts[1] == "figures" else "all runs"


def render_index(dataset: str, summary: Path, figures: Sequence[Path], output: Path, footer: str = "") -> str:
    """The page: title, the summary table, then every figure grouped by run, linked relative to ``output``."""
    for path in (summary, *figures):
        if not path.is_file():
            raise FigureIndexError(f"'{path}' does not exist: run the rule that writes it first")
    dataset_dir = output.parent.parent
    summary_text = summary.read_text().split("<!-- provenance")[0].strip()
    # the summary's own "# Results on X" heading becomes a section of this page
    lines = [f"# {dataset}: results and figures", "", summary_text.replace("# Results on", "## Results on", 1), ""]
    groups: dict[str, list[Path]] = {}
    for figure in figures:
        groups.setdefault(_group(figure, dataset_dir), []).append(figure)
    for group in sorted(groups, key=lambda name: (name != "all runs", name)):
        lines += [f"## {group}", ""]
        for figure in groups[group]:
            caption = CAPTIONS.get(figure.stem, figure.stem.replace("_", " "))
            link = os.path.relpath(figure, output.parent)
            lines += [f"**{figure.stem.replace('_', ' ')}** — {caption}", "", f"![{group} {figure.stem}]({link})", ""]
    return "\n".join(lines) + footer


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--summary", type=Path, required=True, help="results/<dataset>/summary.md")
    parser.add_argument("--figures", type=Path, nargs="*", default=[], help="PNG files to show")
    parser.add_argument("--output", type=Path, required=True, help="results/<dataset>/figures/index.md")
    args = parser.parse_args(argv)

    def execute() -> None:
        config: dict[str, Any] = args.config
        if args.output.suffix != ".md":
            raise ConfigError(f"--output '{args.output}' must end in .md")
        name = str((config.get("dataset") or {}).get("name", args.output.parent.parent.name))
        origin = provenance(dict(config), STAGE)
        footer = f"\n<!-- provenance: stage {origin['stage']}, commit {origin['git_commit']} -->\n"
        write_text(args.output, render_index(name, args.summary, args.figures, args.output, footer))

    run(execute)


if __name__ == "__main__":
    main()
