"""Stage ``compare_seeds``: the paper comparisons (a method against its baseline) over repeated seeds.

    python -m wsss_core.stages.compare_seeds --config JSON --runs 'TITLE|RUN=miou.json,miou.json|RUN=...' \\
        --output results/synth/comparisons.md

Each ``--runs`` entry is one comparison: its title, then for each run (the baseline first) the
``miou.json`` of each seed (``results/<dataset>/<run>@seed<k>/miou.json``), or its ``seeds/eval.json`` for
a comparison of the seed level alone (``comparisons_seeds.md``: minutes instead of whole chains). The
classification mAP of ``train/classification.json`` beside them is a level too. Writes a markdown table
per comparison (mean ± std of each level; the difference and whether it is distinguishable) —
:mod:`wsss_core.reporting.comparison`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from wsss_core import artefacts as paths
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


def load_result(path: Path) -> dict[str, object]:
    """The levels of one seed's run: ``miou.json`` as written by final_result, or ``seeds/eval.json``
    (seed mIoU only); plus ``classification_map`` (the best head's) from the run's ``train/classification.json``."""
    payload = json.loads(path.read_text())
    run_dir = paths.run_dir_of(path, paths.SEED_EVAL)
    if run_dir is not None:
        result: dict[str, object] = {"seed_miou": (payload.get("best") or {}).get("miou")}
    else:
        result, run_dir = dict(payload), path.parent
    classification = paths.in_run(run_dir, paths.CLASSIFICATION)
    if classification.is_file():
        heads = json.loads(classification.read_text()).get("heads") or {}
        maps = [block["map"] for block in heads.values() if block.get("map") is not None]
        result["classification_map"] = max(maps) if maps else None
    return result


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
            results = {name: [load_result(path) for path in paths] for name, paths in runs.items()}
            sections.append(comparison_table(title, results))
        sections.append("Seed and pseudo-mask mIoU on the score split, final mIoU on the evaluation split "
                        f"({', '.join(f'{k}: {v}' for k, v in (args.config.get('stage') or {}).get('splits', {}).items())}).")
        write_text(args.output, "\n".join(sections) + "\n")

    run(execute)


if __name__ == "__main__":
    main()
