"""Stage ``summary``: the results table of a dataset (Markdown + CSV), one row per run × route.

    python -m wsss_core.stages.summary --config JSON --runs results/voc/cti results/voc/mcc ... \\
        --benchmarks benchmarks/voc --output results/voc/summary.md

writes ``summary.md``, ``summary.csv`` and ``summary.html`` (for the Snakemake report) side by side.
Each ``--runs`` entry is a run folder
``results/{ds}/{run}`` whose ``miou.json`` (and the seed, mask and result JSONs it was made from)
exist; ``--benchmarks`` is the dataset's benchmark folder (``benchmarks/{ds}``, one sub-folder per run).

Configuration keys read: ``dataset.name`` (the table's title), ``dataset.roles`` (split names in the
text), ``dataset.classes`` (``voc``/``coco``
print the papers' reported numbers beside the measured ones), ``stage.routes`` (``stages.reporting.routes``,
read as ``ReportingStage``: ``{run: ["irn.deeplab_v1", ...]}``, further multi-stage routes of a run to list
besides its configured one) and ``stage.methods`` (``{run: method name}``, which the rule adds, for variants;
else taken from the seed evaluation's provenance).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wsss_core.errors import ConfigError
from wsss_core.reporting.reported_numbers import DATASETS
from wsss_core.reporting.summary import (
    SummaryRow, flag_lines, read_rows, render_csv, render_html, render_markdown,
)
from wsss_core.stages._cli import run, stage_parser
from wsss_core.stages._shared import section_settings, stage_config
from wsss_core.stages.settings import ReportingStage
from wsss_core.utils.atomic import write_text
from wsss_core.utils.provenance import provenance

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.summary"


def _mapping(stage: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = stage.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"stage.{key} must be a mapping {{run: ...}}, got {type(value).__name__}")
    return value


def build_rows(config: Mapping[str, Any], run_dirs: Sequence[Path], benchmarks: Path | None) -> list[SummaryRow]:
    """Every row of the summary, in the order of ``run_dirs``."""
    dataset = config.get("dataset") or {}
    if "name" not in dataset:
        raise ConfigError("the stage configuration has no dataset.name; pass the dataset block of config.yaml")
    stage = stage_config(config)
    routes, methods = section_settings(stage, ReportingStage).routes, _mapping(stage, "methods")
    unknown = set(routes) - {path.name for path in run_dirs}
    if unknown:
        raise ConfigError(
            f"stage.routes names runs {sorted(unknown)} that are not in --runs; add them or fix the names"
        )
    rows: list[SummaryRow] = []
    for run_dir in run_dirs:
        rows += read_rows(
            run_dir,
            dataset=str(dataset["name"]),
            label_space=str(dataset.get("classes", dataset["name"])),
            method=methods.get(run_dir.name),
            extra_routes=list(routes.get(run_dir.name, [])),
            benchmarks=None if benchmarks is None else benchmarks / run_dir.name,
        )
    return rows


def write_summary(config: Mapping[str, Any], rows: Sequence[SummaryRow], output: Path) -> None:
    """Write ``output`` (.md) and its ``.csv`` and ``.html`` siblings atomically."""
    dataset = config["dataset"]
    name, splits = str(dataset["name"]), dataset.get("roles") or {}
    with_reported = str(dataset.get("classes", name)) in DATASETS
    origin = provenance(dict(config), STAGE)
    footer = (
        f"\n<!-- provenance: stage {origin['stage']}, code {origin['code_fingerprint']}, "
        f"commit {origin['git_commit']}, config {origin['config_hash']} -->\n"
    )
    write_text(output, render_markdown(rows, name, with_reported, splits, footer))
    write_text(output.with_suffix(".csv"), render_csv(rows))
    write_text(output.with_suffix(".html"), render_html(rows, name, with_reported, splits, footer))
    LOG.info("wrote %s (+ .csv, .html; %d rows)", output, len(rows))
    for note in flag_lines(rows):
        LOG.warning("%s", note)


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True, metavar="RUN_DIR", help="results/{ds}/{run}")
    parser.add_argument("--benchmarks", type=Path, default=None, help="benchmarks/{ds} (wall times; optional)")
    parser.add_argument("--output", type=Path, required=True, help="Markdown file; the CSV gets the same stem")
    args = parser.parse_args(argv)

    def execute() -> None:
        if args.output.suffix != ".md":
            raise ConfigError(f"--output '{args.output}' must end in .md (the CSV is written next to it)")
        write_summary(args.config, build_rows(args.config, args.runs, args.benchmarks), args.output)

    run(execute)


if __name__ == "__main__":
    main()
