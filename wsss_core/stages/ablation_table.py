"""Stage: the ablation table of seed quality (CTI, CVPR 2024, Table 1 and Table 2).

Each row is one trained variant whose seeds were scored by ``evaluate_seeds``; this stage only reads
those evaluation JSONs and lays them out like the paper:

    python -m wsss_core.stages.ablation_table --config '<json>' \\
        --rows "Baseline=results/voc/mctformer/seeds/eval_train.json" "(a)=.../eval_train.json" ... \\
        --output results/voc/cti_ablation.md

writes ``cti_ablation.md`` and ``cti_ablation.csv``. From each evaluation JSON it reads
``best.mean_precision``, ``best.mean_recall``, ``best.miou`` (fractions, printed as percent) and
``best_threshold``.

A row may instead name a run's final ``miou.json`` (written by ``final_result``; ``levels: final`` in
config): the seed scores are then read from the seed evaluation it names (``sources.seeds``) and the
table gains the pseudo-mask mIoU (``mask_miou``) and the final mIoU (``miou``) columns — the layout of
MCC's Table III and ECA's Table 4 (CAM, pseudo-label, segmentation).

Stage parameters (``config["stage"]``: the ``stages.ablations.<name>`` block, read as its type
``wsss_core.stages.settings.AblationTable``, whose defaults are the only ones; ``rows`` may be left out here):

* ``title``: a heading above the Markdown table.
* ``components``: ordered column names for the ✓ marks, e.g. ``["L_bcam", "L_i-cti", "L_c-cti"]``.
* ``rows``: per row label, ``{"run": ..., "components": [...names that are on...], "paper": {"precision": 75.2,
  "recall": 81.8, "miou": 64.7}}``; ``paper`` values (percent) add a "paper mIoU" column to compare with.
* ``percent_scale``: factor from the JSON values to the printed ones (100: fractions).

Table 2 (the infusion-layer sweep) is the same stage with one row per infusion layer and no components.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsss_core.errors import ConfigError, InputError
from wsss_core.stages._cli import run, stage_parser
from wsss_core.stages._shared import section_settings, stage_config
from wsss_core.stages.settings import AblationRow as RowSettings
from wsss_core.stages.settings import AblationTable
from wsss_core.utils.atomic import write_text
from wsss_core.utils.provenance import provenance

STAGE_MODULE = "wsss_core.stages.ablation_table"
SCORE_KEYS = {"precision": "mean_precision", "recall": "mean_recall", "miou": "miou"}


class EvaluationFileError(InputError):
    """A seed-evaluation JSON named in ``--rows`` is missing, unreadable or lacks a score."""


@dataclass(frozen=True)
class AblationRow:
    """One variant: its label, the components it enables, and its seed scores in percent."""

    label: str
    source: Path
    precision: float
    recall: float
    miou: float
    threshold: float | None  # None for seeds with their own background map (no sweep)
    components: frozenset[str] = field(default_factory=frozenset)
    paper_miou: float | None = None
    mask_miou: float | None = None  # pseudo-mask mIoU (rows read from a final miou.json)
    final_miou: float | None = None  # final segmentation mIoU on the evaluation split


def parse_row_argument(value: str) -> tuple[str, Path]:
    """``LABEL=path/to/eval.json`` → (label, path); the label is everything before the first '='."""
    label, separator, path = value.partition("=")
    if not separator or not label.strip() or not path.strip():
        raise ConfigError(f"--rows entry '{value}' is not LABEL=path/to/eval.json: write e.g. '(a)=eval.json'")
    return label.strip(), Path(path.strip())


def _lookup(payload: Mapping[str, Any], dotted: str, source: Path) -> float:
    node: Any = payload
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise EvaluationFileError(
                f"{source} has no key '{dotted}': it must be a seed-evaluation JSON written by "
                "evaluate_seeds (keys best_threshold and best.{miou,mean_precision,mean_recall})"
            )
        node = node[part]
    try:
        number = float(node)
    except (TypeError, ValueError):
        raise EvaluationFileError(f"{source}: '{dotted}' is {node!r}, not a number; re-run evaluate_seeds") from None
    if not math.isfinite(number):
        raise EvaluationFileError(f"{source}: '{dotted}' is {number}; re-run evaluate_seeds on valid seeds")
    return number


def _read_json(source: Path, label: str) -> dict[str, Any]:
    if not source.is_file():
        raise EvaluationFileError(f"evaluation file '{source}' (row '{label}') does not exist: run evaluate_seeds first")
    try:
        payload = json.loads(source.read_text())
    except json.JSONDecodeError as error:
        raise EvaluationFileError(f"evaluation file '{source}' is not valid JSON ({error}); re-run evaluate_seeds") from None
    if not isinstance(payload, dict):
        raise EvaluationFileError(f"evaluation file '{source}' holds {type(payload).__name__}, not a JSON object")
    return payload


def _optional_fraction(payload: Mapping[str, Any], key: str, source: Path, percent_scale: float) -> float | None:
    return None if payload.get(key) is None else _lookup(payload, key, source) * percent_scale


def table_settings(stage: Mapping[str, Any]) -> AblationTable:
    """``stage`` as its type; the stage lays out any ``--rows`` label, so ``rows`` (the workflow's list of
    runs, and each label's components and paper numbers) may be missing here."""
    return section_settings({"rows": {}, **stage}, AblationTable)


def read_row(
    label: str, source: Path, row_config: RowSettings | None, percent_scale: float
) -> AblationRow:
    """Scores of one variant in percent, from its seed evaluation JSON or from its final ``miou.json``."""
    payload = _read_json(source, label)
    seed_source, later = source, {}
    if "seed_miou" in payload:  # a final_result summary: follow it to the seed evaluation
        seeds = (payload.get("sources") or {}).get("seeds")
        if not seeds:
            raise EvaluationFileError(f"{source} names no sources.seeds: re-run the final_result stage")
        later = {"mask_miou": _optional_fraction(payload, "mask_miou", source, percent_scale),
                 "final_miou": _lookup(payload, "miou", source) * percent_scale}
        seed_source = Path(seeds)
        payload = _read_json(seed_source, label)
    scores = {name: _lookup(payload, f"best.{key}", seed_source) * percent_scale for name, key in SCORE_KEYS.items()}
    checked = [(seed_source, name, value) for name, value in scores.items()]
    checked += [(source, name, value) for name, value in later.items() if value is not None]
    for origin, name, value in checked:
        if not 0.0 <= value <= 100.0 + 1e-6:
            raise ConfigError(
                f"{origin}: {name} prints as {value:.2f} %, outside 0..100: set stage.percent_scale to 1 "
                "when the evaluation JSON stores percent instead of fractions"
            )
    paper = row_config.paper if row_config is not None else {}
    return AblationRow(
        label=label,
        source=source,
        **later,
        threshold=None if payload.get("best_threshold", 0.0) is None else _lookup(payload, "best_threshold", seed_source),
        components=frozenset(row_config.components if row_config is not None else ()),
        paper_miou=float(paper["miou"]) if "miou" in paper else None,
        **scores,
    )


def _with_later_levels(rows: Sequence[AblationRow]) -> bool:
    return any(row.final_miou is not None for row in rows)


def _header(components: Sequence[str], with_paper: bool, with_later: bool = False) -> list[str]:
    header = ["variant", *components, "P (%)", "R (%)", "mIoU (%)", "bg threshold"]
    if with_later:
        header = header[:-4] + ["seed P (%)", "seed R (%)", "seed mIoU (%)", "bg threshold",
                                "pseudo-mask mIoU (%)", "final mIoU (%)"]
    return header + (["paper mIoU (%)"] if with_paper else [])


def _cells(row: AblationRow, components: Sequence[str], with_paper: bool, mark: str, with_later: bool = False) -> list[str]:
    cells = [row.label, *(mark if name in row.components else "" for name in components)]
    threshold = "–" if row.threshold is None else f"{row.threshold:.2f}"
    cells += [f"{row.precision:.1f}", f"{row.recall:.1f}", f"{row.miou:.1f}", threshold]
    if with_later:
        cells += ["" if row.mask_miou is None else f"{row.mask_miou:.1f}",
                  "" if row.final_miou is None else f"{row.final_miou:.1f}"]
    if with_paper:
        cells.append("" if row.paper_miou is None else f"{row.paper_miou:.1f}")
    return cells


def render_markdown(rows: Sequence[AblationRow], components: Sequence[str], title: str | None) -> str:
    """The table as Markdown; the best P, R and mIoU are bold, as in the paper."""
    with_paper = any(row.paper_miou is not None for row in rows)
    with_later = _with_later_levels(rows)
    header = _header(components, with_paper, with_later)
    first_score = 1 + len(components)
    columns = {"precision": 0, "recall": 1, "miou": 2}
    if with_later:
        columns.update(mask_miou=4, final_miou=5)
    best = {name: max((getattr(row, name) for row in rows if getattr(row, name) is not None), default=None)
            for name in columns}
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join([":---"] + [":---:"] * (len(header) - 1)) + "|")
    for row in rows:
        cells = _cells(row, components, with_paper, "✓", with_later)
        for name, offset in columns.items():
            value = getattr(row, name)
            if value is not None and best[name] is not None and math.isclose(value, best[name]):
                cells[first_score + offset] = f"**{cells[first_score + offset]}**"
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Seeds scored on the dataset's score split (VOC: train, 1,464 images) at each variant's "
                  "best background threshold"
              + ("; pseudo-masks on the same split; the final mIoU on the evaluation split (val)" if with_later else "")
              + ". Sources:"]
    lines += [f"- {row.label}: `{row.source}`" for row in rows]
    return "\n".join(lines) + "\n"


def render_csv(rows: Sequence[AblationRow], components: Sequence[str]) -> str:
    """The same numbers as CSV (components as 0/1), plus each row's source file."""
    with_paper = any(row.paper_miou is not None for row in rows)
    with_later = _with_later_levels(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_header(components, with_paper, with_later) + ["source"])
    for row in rows:
        cells = _cells(row, components, with_paper, "1", with_later)
        cells[1 : 1 + len(components)] = ["1" if name in row.components else "0" for name in components]
        writer.writerow(cells + [str(row.source)])
    return buffer.getvalue()


def build_rows(row_arguments: Sequence[str], stage: Mapping[str, Any]) -> list[AblationRow]:
    """Read every ``LABEL=path`` row, checking labels and the components they name."""
    table = table_settings(stage)
    components = table.components
    rows, seen = [], set()
    for argument in row_arguments:
        label, source = parse_row_argument(argument)
        if label in seen:
            raise ConfigError(f"--rows names the label '{label}' twice; give each variant its own label")
        seen.add(label)
        row_config = table.rows.get(label)
        unknown = set(row_config.components if row_config is not None else ()) - set(components)
        if unknown:
            raise ConfigError(
                f"stage.rows.{label}.components names {sorted(unknown)}, not in stage.components {components}: "
                "add them to stage.components or fix the spelling"
            )
        rows.append(read_row(label, source, row_config, table.percent_scale))
    if not rows:
        raise ConfigError("--rows is empty: pass at least one LABEL=eval.json")
    return rows


def write_tables(rows: Sequence[AblationRow], stage: Mapping[str, Any], output: Path, config: Mapping[str, Any]) -> None:
    """Write ``output`` (.md) and its ``.csv`` sibling atomically."""
    table = table_settings(stage)
    origin = provenance(dict(config), STAGE_MODULE)
    footer = (
        f"\n<!-- provenance: stage {origin['stage']}, code {origin['code_fingerprint']}, "
        f"commit {origin['git_commit']}, config {origin['config_hash']} -->\n"
    )
    write_text(output, render_markdown(rows, table.components, table.title) + footer)
    write_text(output.with_suffix(".csv"), render_csv(rows, table.components))


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser("Lay out seed evaluations of ablation variants as the paper's table (.md + .csv).")
    parser.add_argument("--rows", nargs="+", required=True, metavar="LABEL=EVAL_JSON",
                        help="one per variant, in order: a seed evaluation JSON or a run's final miou.json")
    parser.add_argument("--output", type=Path, required=True, help="Markdown file; the CSV gets the same stem")
    args = parser.parse_args(argv)

    def execute() -> None:
        if args.output.suffix != ".md":
            raise ConfigError(f"--output '{args.output}' must end in .md (the CSV is written next to it)")
        stage = stage_config(args.config)
        write_tables(build_rows(args.rows, stage), stage, args.output, args.config)

    run(execute)


if __name__ == "__main__":
    main()
