"""Stage ``compare_seeds``: the paper comparisons (a method against its baseline) over repeated seeds.

    python -m wsss_core.stages.compare_seeds --config JSON --runs 'TITLE|RUN=miou.json,miou.json|RUN=...' \\
        --output results/synth/comparisons.md

Each ``--runs`` entry is one comparison: its title, then for each run (the baseline first) the
``miou.json`` of each seed (``results/<dataset>/<run>@seed<k>/miou.json``). Writes a markdown table per
comparison (mean ± std of seed, pseudo-mask and final mIoU; the difference and whether it is
distinguishable) — :mod:`wsss_core.reporting.comparison`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from wsss_core.errors import InputError
from wsss_core.reporting.comparison import RULE, comparison_table
from wsss_core.stages._cli import run, stage_parser
from wsss_core.utils.atomic import write_text


def parse_comparison(text: str) -> tuple[str, dict[str, list[Path]]]:
    title, *parts = text.split("|")
    runs: dict[str, list[Path]] = {}
    for part in parts:
        name, _, files = part.partition("=")
        if not files:
            raise InputError(f"--runs entry '{part}' is not RUN=file,file")
        runs[name] = [Path(f) for f in files.split(",")]
    return title, runs


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="TITLE|RUN=miou.json,...|RUN=...")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    def execute() -> None:
        dataset = (args.config.get("dataset") or {}).get("name", "")
        sections = [f"# Method comparisons over seeds ({dataset})", "", RULE, ""]
        for entry in args.runs:
            title, runs = parse_comparison(entry)
            results = {name: [json.loads(path.read_text()) for path in paths] for name, paths in runs.items()}
            sections.append(comparison_table(title, results))
        sections.append("Seed and pseudo-mask mIoU on the score split, final mIoU on the evaluation split "
                        f"({', '.join(f'{k}: {v}' for k, v in (args.config.get('stage') or {}).get('splits', {}).items())}).")
        write_text(args.output, "\n".join(sections) + "\n")

    run(execute)


if __name__ == "__main__":
    main()
