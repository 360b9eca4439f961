"""The results summary of a dataset: one row per run × refinement × segmentation network.

A row gathers what the stages already wrote for one route of one run (``results/{ds}/{run}``; the files'
paths are ``wsss_core.artefacts``'):

* classifier: ``train/classification.json`` (mAP of each head on the score split; optional, older runs
  have none), flagged ``near_chance_classifier`` when no head is halfway from chance to 100 %;
* seeds: ``seeds/eval.json`` (``best.miou``, ``best.mean_precision``, ``best.mean_recall``,
  ``best_threshold``, ``held_out``: the scores at a threshold tuned on other images, and
  ``diagnostics.localisation``: pointing game and energy inside, a table of its own);
* pseudo-masks (multi-stage route; on the own-decoder route the method's own ``masks/own``):
  ``masks/{refine}/eval.json`` (``miou``, ``mean_precision``, ...);
* final result on the evaluation split: ``seg/{refine}.{network}/miou.json`` or ``decoder/miou.json``;
  the run's configured route is read from ``miou.json`` (``pipeline``), other routes are named in the
  stage configuration (``routes``);
* where each level's object pixels went (``diagnostics.errors`` of the score files: their class,
  background, another class; foreground IoU; images given an absent class), a table of its own;
* wall time per stage: the Snakemake benchmark TSVs ``benchmarks/{ds}/{run}/<rule>[_<refine>.<net>].tsv``
  (column ``s``, averaged over repeats); a missing file leaves the cell empty.

A route whose stages took quality away is flagged (``route_flags``): a refinement that lowered the seeds,
a segmentation network that ended more than two points below the pseudo-masks it learned from. Flagged
rows carry ⚠ and the Diagnostics section (Markdown, HTML), the ``flags`` column (CSV) and the stage's log
say what each flag means and where to look.

Beside the measured numbers, for VOC and COCO label spaces, the row carries the papers' reported
numbers (``wsss_core.reporting.reported_numbers``), which the tables label as *reported*.
All scores are fractions in the JSON files and percent in the tables.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsss_core import artefacts as paths
from wsss_core.errors import InputError
from wsss_core.reporting.reported_numbers import ReportedNumber, reported_numbers

SCORE_LEVELS: tuple[str, ...] = ("seed", "mask", "final")
REPORTED_COLUMNS: tuple[str, ...] = ("seed", "mask", "val", "test")

# Benchmark files (without .tsv; glob patterns allowed) that make up each wall-time column, per route;
# {refine}/{network} are the row's. A column is the sum of its jobs' wall times, so the shards of a
# sharded export or inference (``*.{i}of{n}``) and their merge add up to the stage's total job time.
# On the multi-stage route the refinement column also takes every other benchmark of the run whose name
# has the refinement as a word (IRN and PSA run several rules: relation labels, affinity training,
# random walk).
STAGE_BENCHMARKS: dict[str, dict[str, tuple[str, ...]]] = {
    "multi_stage": {
        "train": ("train_method",),
        "seeds": ("export_seeds", "export_seeds.*of*", "merge_seed_shards"),
        "refine": ("refine_{refine}",),
        "segmentation": ("train_segmentation_{refine}.{network}",),
        "inference": (
            "infer_segmentation_{refine}.{network}",
            "infer_segmentation_{refine}.{network}.*of*",
            "merge_prediction_shards_seg/{refine}.{network}",
        ),
        "evaluation": ("evaluate_seeds", "evaluate_masks_{refine}", "evaluate_segmentation_seg/{refine}.{network}"),
    },
    "own_decoder": {
        "train": ("train_method",),
        "seeds": ("export_seeds", "export_seeds.*of*", "merge_seed_shards"),
        "refine": ("export_pseudo_labels",),
        "segmentation": (),
        "inference": ("infer_decoder", "infer_decoder.*of*", "merge_prediction_shards_decoder"),
        "evaluation": ("evaluate_seeds", "evaluate_masks_own", "evaluate_segmentation_decoder"),
    },
}
STAGE_COLUMNS: tuple[str, ...] = tuple(STAGE_BENCHMARKS["multi_stage"])
_NOT_REFINEMENT = ("train_method", "export_seeds", "evaluate_", "train_segmentation_", "infer_", "merge_",
                   "final_result", "sample_grid", "training_curves")


class SummaryInputError(InputError):
    """A run directory or one of its score files is missing or malformed."""


@dataclass(frozen=True)
class Scores:
    """Headline scores of one level (fractions), or ``None`` where the level does not exist."""

    miou: float | None = None
    precision: float | None = None
    recall: float | None = None


@dataclass(frozen=True)
class HeldOut:
    """Seed scores at the background threshold chosen on other images (``seeds/eval.json`` ``held_out``)."""

    threshold: float | None
    scores: Scores
    tuned_on: str  # e.g. "train_aug minus train (1464 images)"
    report_split: str | None


@dataclass(frozen=True)
class Classification:
    """Classification mAP of the trained network's heads on the score split (``train/classification.json``)."""

    heads: dict[str, float | None]  # head → mAP (fraction)
    chance: float | None  # the mAP of a random ranking: the classes' mean frequency

    @property
    def best(self) -> float | None:
        values = [value for value in self.heads.values() if value is not None]
        return max(values) if values else None

    def label(self) -> str:
        return ", ".join(f"{head} {_percent(value)}" for head, value in self.heads.items())


def classification_of(path: Path) -> Classification | None:
    """The classifier evaluation of a run, or None where it was not made (older runs)."""
    if not path.is_file():
        return None
    payload = read_json(path)
    heads = payload.get("heads") or {}
    return Classification({head: (block or {}).get("map") for head, block in heads.items()},
                          payload.get("chance_map"))


def classification_flag(classification: Classification | None) -> dict[str, str]:
    """``near_chance_classifier`` when no head's mAP is above halfway between chance and 100 %: the seeds
    are then read off a classifier that has barely learned the image labels."""
    if classification is None or classification.best is None or classification.chance is None:
        return {}
    halfway = classification.chance + 0.5 * (1.0 - classification.chance)
    if classification.best >= halfway:
        return {}
    return {"near_chance_classifier": (
        f"classification mAP on the score split {classification.label()} (chance {_percent(classification.chance)}) "
        f"is below halfway between chance and 100 % ({_percent(halfway)}): the network has barely learned the image "
        "labels, so its seeds say little about the method; look at the training schedule (lr, epochs) and "
        "train/classification.json before reading the seeds")}


# A chain in which every stage does its job: the refinement does not lower the seeds, and the segmentation
# network (DeepLab or a method's own decoder) ends no more than two points below the pseudo-masks it learned
# from. (Masks are scored on the score split, the final result on the evaluation split, as the papers do.)
MASK_BELOW_SEED_MARGIN = 0.0
FINAL_BELOW_MASK_MARGIN = 0.02
_ROUNDING = 1e-9  # a score exactly at a margin is not flagged


MISNAMING_MARGIN = 0.05  # the network gives 5 points more of the object pixels another class than its labels do


def route_flags(seed: Scores, mask: Scores, final: Scores, route: str, refine: str | None,
                errors: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, str]:
    """Flags of one route whose stages took quality away: ``refinement_lowered_seeds`` (mask < seed) and
    ``segmentation_below_masks`` (final < mask − 2 points), each with one line saying what to look at —
    for the latter, misnamed objects when ``errors`` (level → ``diagnostics.errors``) show the network giving
    another class to clearly more object pixels than its labels do, else its training budget."""
    flags: dict[str, str] = {}
    if seed.miou is not None and mask.miou is not None and route == "multi_stage" \
            and mask.miou < seed.miou - MASK_BELOW_SEED_MARGIN - _ROUNDING:
        flags["refinement_lowered_seeds"] = (
            f"{refine} lowered the seeds from {_percent(seed.miou)} to {_percent(mask.miou)} mIoU: the refinement "
            f"does not suit these seeds; compare masks/{refine}/eval.json with seeds/eval.json class by class"
            + (" (IRN and PSA learn their affinities from the seeds' confident regions)" if refine in ("irn", "psa")
               else ""))
    if mask.miou is not None and final.miou is not None \
            and final.miou < mask.miou - FINAL_BELOW_MASK_MARGIN - _ROUNDING:
        labels = "the method's own pseudo-labels" if route == "own_decoder" else "the pseudo-masks it was trained on"
        below = (f"the final mIoU {_percent(final.miou)} is {100 * (mask.miou - final.miou):.1f} points below {labels} "
                 f"({_percent(mask.miou)})")
        named = (errors or {}).get("mask") or {}
        network = (errors or {}).get("final") or {}
        if named.get("confused") is not None and network.get("confused") is not None \
                and network["confused"] > named["confused"] + MISNAMING_MARGIN:
            absent = network.get("names_absent_class")
            flags["segmentation_below_masks"] = (
                f"{below}: it gives {_percent(network['confused'])} % of the object pixels another class against "
                f"{_percent(named['confused'])} % in its labels"
                + (f", and {_percent(absent)} % of the images a class they do not contain" if absent is not None
                   else "")
                + ": it misnames objects its labels named from the image labels — the backbone's recognition "
                "more than its budget (scripts/diagnostics/oracle_classes.py scores it with the image's classes)")
        else:
            flags["segmentation_below_masks"] = (
                f"{below}: the segmentation network has not learned its labels; look at its training curve "
                "(figures/training_curves.png) — a loss still falling at the last step means its budget "
                "(iterations) is too short — and at where its object pixels go (the summary's table)")
    return flags


@dataclass(frozen=True)
class SummaryRow:
    """One route of one run: measured scores, wall times and the papers' reported numbers."""

    dataset: str
    run: str
    method: str
    route: str  # multi_stage | own_decoder
    refine: str | None
    segmentation: str | None
    seed: Scores
    mask: Scores
    final: Scores
    seed_threshold: float | None
    seconds: dict[str, float | None]
    reported: dict[str, ReportedNumber] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)  # seed diagnostics (wsss_core.evaluation.diagnostics)
    route_flags: dict[str, str] = field(default_factory=dict)  # this route's stages (route_flags)
    splits: dict[str, str | None] = field(default_factory=dict)  # level (seed/mask/final) → split it was scored on
    held_out: HeldOut | None = None
    classification: Classification | None = None
    # the seeds' threshold-free localisation (seeds/eval.json diagnostics.localisation; None before it existed)
    localisation: dict[str, Any] | None = None
    # level (seed/mask/final) → where its object pixels went (the score file's diagnostics.errors, if written)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def pipeline_label(self) -> str:
        """``crf → deeplab_v2`` or ``own decoder``."""
        if self.route == "own_decoder":
            return "own decoder"
        return f"{self.refine} → {self.segmentation}"

    @property
    def total_seconds(self) -> float | None:
        values = [value for value in self.seconds.values() if value is not None]
        return sum(values) if values else None


# ------------------------------------------------------------------------------------------ reading
def read_json(path: Path) -> dict[str, Any]:
    """A score JSON; a missing or unreadable file names the stage to run."""
    if not path.is_file():
        raise SummaryInputError(f"score file '{path}' does not exist: build it first (snakemake {path})")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SummaryInputError(
            f"score file '{path}' is not valid JSON ({error}); delete it and re-run its rule"
        ) from None
    if not isinstance(payload, dict):
        raise SummaryInputError(f"score file '{path}' holds {type(payload).__name__}, not a JSON object")
    return payload


def _number(payload: Mapping[str, Any], key: str, path: Path) -> float | None:
    value = payload.get(key)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SummaryInputError(
            f"'{path}': '{key}' is {value!r}, not a number; re-run the rule that writes it"
        ) from None
    return number if math.isfinite(number) else None


def scores_of(payload: Mapping[str, Any], path: Path) -> Scores:
    """mIoU and mean precision/recall of a scores dict (``evaluate_masks`` output, or ``best`` of a
    seed evaluation)."""
    if "miou" not in payload:
        raise SummaryInputError(f"'{path}' has no 'miou': it must be written by evaluate_masks or evaluate_seeds")
    return Scores(
        miou=_number(payload, "miou", path),
        precision=_number(payload, "mean_precision", path),
        recall=_number(payload, "mean_recall", path),
    )


def benchmark_seconds(path: Path) -> float | None:
    """Mean of column ``s`` of a Snakemake benchmark TSV, or None when the file is absent."""
    if not path.is_file():
        return None
    rows = list(csv.DictReader(io.StringIO(path.read_text()), delimiter="\t"))
    values = [float(row["s"]) for row in rows if row.get("s") not in (None, "", "NA")]
    return sum(values) / len(values) if values else None


def _words(name: str) -> set[str]:
    return set(name.replace(".", "_").replace("/", "_").split("_"))


def stage_seconds(
    benchmarks: Path | None, route: str, refine: str | None = None, network: str | None = None
) -> dict[str, float | None]:
    """Wall seconds per column of ``STAGE_BENCHMARKS[route]`` for one route of one run (benchmark folder
    ``benchmarks/{ds}/{run}``); a column with no benchmark file is None."""
    values: dict[str, float | None] = {}
    claimed: set[Path] = set()
    for column, templates in STAGE_BENCHMARKS[route].items():
        total, found = 0.0, False
        for template in templates if benchmarks is not None else ():
            pattern = template.format(refine=refine, network=network) + ".tsv"
            for path in sorted(benchmarks.glob(pattern)) if "*" in pattern else [benchmarks / pattern]:
                seconds = benchmark_seconds(path)
                if seconds is not None:
                    total, found = total + seconds, True
                    claimed.add(path)
        values[column] = total if found else None
    if benchmarks is not None and route == "multi_stage" and refine is not None and benchmarks.is_dir():
        for path in sorted(benchmarks.rglob("*.tsv")):
            name = path.relative_to(benchmarks).with_suffix("").as_posix()
            if path in claimed or name.startswith(_NOT_REFINEMENT) or refine not in _words(name):
                continue
            seconds = benchmark_seconds(path)
            if seconds is not None:
                values["refine"] = (values["refine"] or 0.0) + seconds
    return values


def _parse_route(route: str, where: str) -> tuple[str, str]:
    refine, separator, network = route.partition(".")
    if not separator or not refine or not network:
        raise SummaryInputError(f"{where}: route '{route}' is not REFINE.NETWORK, e.g. crf.deeplab_v2")
    return refine, network


def read_rows(
    run_dir: Path,
    *,
    dataset: str,
    label_space: str,
    method: str | None = None,
    extra_routes: Sequence[str] = (),
    benchmarks: Path | None = None,
) -> list[SummaryRow]:
    """Rows of one run: its configured route (from ``miou.json``) and ``extra_routes``
    (``REFINE.NETWORK``, multi-stage). ``label_space`` (voc/coco/synth) selects reported numbers."""
    run = run_dir.name
    final_path = paths.in_run(run_dir, paths.FINAL_RESULT)
    final = read_json(final_path)
    pipeline = final.get("pipeline") or {}
    if "route" not in pipeline:
        raise SummaryInputError(f"'{final_path}' has no pipeline.route: re-run rule final_result")
    seeds_path = paths.in_run(run_dir, paths.SEED_EVAL)
    seeds = read_json(seeds_path)
    seed_scores = scores_of(seeds.get("best", seeds), seeds_path)
    threshold = _number(seeds, "best_threshold", seeds_path)
    held_out = held_out_of(seeds, seeds_path)
    method_name = method or _method_name(seeds) or run
    reported = reported_numbers(run, method_name, label_space)
    classification = classification_of(paths.in_run(run_dir, paths.CLASSIFICATION))

    routes: list[tuple[str, str | None, str | None]] = []
    if pipeline["route"] == "own_decoder":
        routes.append(("own_decoder", None, None))
    else:
        routes.append(("multi_stage", pipeline.get("refine"), pipeline.get("segmentation")))
    for extra in extra_routes:
        refine, network = _parse_route(extra, f"stage.routes.{run}")
        if ("multi_stage", refine, network) not in routes:
            routes.append(("multi_stage", refine, network))

    rows = []
    for route, refine, network in routes:
        errors = {"seed": _errors_of(seeds)}
        sources = {"seeds": str(seeds_path)}
        splits: dict[str, str | None] = {"seed": seeds.get("split"), "mask": None}
        mask_scores = Scores()
        mask_path = paths.in_run(run_dir, paths.MASK_EVAL, refine=refine if route == "multi_stage" else "own")
        result_path = paths.in_run(run_dir, paths.ROUTE_RESULT, route_dir=paths.route_dir(
            refine if route == "multi_stage" else None, network))
        # multi-stage: the refined masks (required); own decoder: the method's own PAR/CARM pseudo-labels,
        # scored when the method makes them (Method.pseudo_labels)
        if route == "multi_stage" or mask_path.is_file():
            mask_eval = read_json(mask_path)
            mask_scores, splits["mask"] = scores_of(mask_eval, mask_path), mask_eval.get("split")
            sources["masks"] = str(mask_path)
            errors["mask"] = _errors_of(mask_eval)
        result = read_json(result_path)
        errors["final"] = _errors_of(result)
        final_scores = scores_of(result, result_path)
        sources["result"] = str(result_path)
        splits["final"] = result.get("split")
        rows.append(
            SummaryRow(
                dataset=dataset,
                run=run,
                method=method_name,
                route=route,
                refine=refine,
                segmentation=network,
                seed=seed_scores,
                mask=mask_scores,
                final=final_scores,
                seed_threshold=threshold,
                seconds=stage_seconds(benchmarks, route, refine, network),
                reported=reported,
                sources=sources,
                flags={**dict((seeds.get("diagnostics") or {}).get("flags") or {}),
                       **classification_flag(classification)},
                route_flags=route_flags(seed_scores, mask_scores, final_scores, route, refine, errors),
                splits=splits,
                held_out=held_out,
                classification=classification,
                localisation=(seeds.get("diagnostics") or {}).get("localisation"),
                errors={level: value for level, value in errors.items() if value},
            )
        )
    return rows


def _errors_of(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """A score file's ``diagnostics.errors`` (``evaluation.diagnostics.error_breakdown``), None if absent."""
    errors = (payload.get("diagnostics") or {}).get("errors")
    return dict(errors) if isinstance(errors, Mapping) else None


def held_out_of(seeds: Mapping[str, Any], path: Path) -> HeldOut | None:
    """The held-out threshold protocol's result of a seed evaluation, or None when it was not run."""
    block = seeds.get("held_out")
    if not isinstance(block, Mapping):
        return None
    tuned_on = f"{block.get('tune_images', block.get('tune_split', '?'))} ({block.get('num_tune_images', '?')} images)"
    return HeldOut(threshold=_number(block, "threshold", path), scores=scores_of(block, path), tuned_on=tuned_on,
                   report_split=block.get("report_split"))


def _method_name(seed_eval: Mapping[str, Any]) -> str | None:
    """The registered method behind a run, from the seed evaluation's provenance (if recorded)."""
    method = ((seed_eval.get("provenance") or {}).get("config") or {}).get("method") or {}
    name = method.get("name") if isinstance(method, Mapping) else None
    return str(name) if name else None


# ---------------------------------------------------------------------------------------- rendering
def _percent(value: float | None) -> str:
    return "" if value is None else f"{100.0 * value:.1f}"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def _reported(row: SummaryRow, metric: str, measured_split: str | None = None) -> str:
    number = row.reported.get(metric)
    if number is None:
        return ""
    note = f" ({number.split})" if measured_split and number.split != measured_split else ""
    return f"{number.miou:.1f}{note}"


def _pr(scores: Scores) -> str:
    if scores.precision is None or scores.recall is None:
        return ""
    return f"{100 * scores.precision:.1f} / {100 * scores.recall:.1f}"


@dataclass(frozen=True)
class Table:
    """One table of the summary, rendered to Markdown and to HTML from the same cells."""

    title: str
    header: list[str]
    rows: list[list[str]]
    text_columns: int  # the first columns are text (left-aligned), the rest numbers (right-aligned)


def level_split(rows: Sequence[SummaryRow], level: str, splits: Mapping[str, str] | None = None) -> str:
    """The split a level's numbers were measured on, from the score files (else the dataset's roles:
    score for seeds and masks, evaluate for the final result); several are joined with '/'."""
    found = sorted({row.splits[level] for row in rows if row.splits.get(level)})
    if not found and splits:
        role = splits.get("evaluate" if level == "final" else "score")
        found = [role] if role else []
    return "/".join(found) or "?"


def _threshold(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def summary_tables(rows: Sequence[SummaryRow], with_reported: bool,
                   splits: Mapping[str, str] | None = None) -> list[Table]:
    """Scores (with the papers' numbers beside them), the two threshold protocols, wall times, and the
    reported numbers' sources; every score column names the split it was measured on."""
    seed, mask, final = (level_split(rows, level, splits) for level in SCORE_LEVELS)
    header = ["run", "method", "pipeline", f"classification mAP [{seed}]", f"seed mIoU [{seed}]", "seed P / R", "bg thr.",
              f"seed mIoU, held-out thr. [{seed}]", "held-out bg thr.", f"mask mIoU [{mask}]", "mask P / R",
              f"final mIoU [{final}]", "final P / R"]
    if with_reported:
        header += ["reported seed", "reported mask", "reported val", "reported test"]
    score_rows = []
    for row in rows:
        held_out = row.held_out
        cells = [row.run + (" ⚠" if row.flags or row.route_flags else ""), row.method, row.pipeline_label,
                 row.classification.label() if row.classification else "", _percent(row.seed.miou), _pr(row.seed),
                 _threshold(row.seed_threshold), _percent(held_out.scores.miou) if held_out else "",
                 _threshold(held_out.threshold) if held_out else "", _percent(row.mask.miou),
                 _pr(row.mask), _percent(row.final.miou), _pr(row.final)]
        if with_reported:
            cells += [_reported(row, "seed", "train"), _reported(row, "mask", "train"), _reported(row, "val"),
                      _reported(row, "test")]
        score_rows.append(cells)
    tables = [Table("Scores (mIoU %, measured" + ("; reported = the papers' numbers" if with_reported else "") + ")",
                    header, score_rows, 4)]
    protocol_rows = protocol_table_rows(rows)
    if protocol_rows:
        tables.append(Table("Seed background threshold: oracle (tuned on the scored split) vs held-out (tuned on "
                            "other images)", ["run", "protocol", "threshold tuned on", "scored on", "bg thr.",
                                              "seed mIoU", "seed P / R"], protocol_rows, 4))
    localisation_rows = localisation_table_rows(rows)
    if localisation_rows:
        tables.append(Table("Seed localisation, threshold-free (%; in brackets what a map that knows nothing scores: "
                            "a random point, a flat map)",
                            ["run", "image-class pairs", "pointing game", "energy inside its class",
                             "energy on any object", "energy gain"], localisation_rows, 1))
    error_rows = error_table_rows(rows)
    if error_rows:
        tables.append(Table("Where the object pixels go (% of the ground truth's foreground; foreground IoU = objects "
                            "vs background, classes ignored; pseudo-masks take their classes from the image labels, "
                            "a segmentation network has to recognise them)",
                            ["run", "pipeline", "level", "to their class", "to background", "to another class",
                             "predicted fg on background", "foreground IoU", "images given an absent class"],
                            error_rows, 3))
    columns = list(STAGE_COLUMNS)
    time_rows = [[row.run, row.pipeline_label] + [_seconds(row.seconds[column]) for column in columns]
                 + [_seconds(row.total_seconds)] for row in rows]
    title = "Wall time per stage (seconds; the sum of the stage's jobs, from the Snakemake benchmarks)"
    tables.append(Table(title, ["run", "pipeline", *columns, "total"], time_rows, 2))
    if with_reported:
        reported_rows = [[run, number.metric, f"{number.miou:.2f}", number.split, number.setting, number.source]
                         for run, numbers in _unique_reported(rows) for number in numbers]
        if not reported_rows:
            reported_rows = [["–", "–", "", "–", "–", "no run of this summary has reported numbers"]]
        tables.append(Table("Reported numbers (from the papers, not measured here)",
                            ["run", "metric", "reported mIoU", "split", "paper's setting", "source"], reported_rows, 2))
    return tables


def protocol_table_rows(rows: Sequence[SummaryRow]) -> list[list[str]]:
    """Per run with a tuned threshold: the oracle row and the held-out row (or why there is none)."""
    table, seen = [], set()
    for row in rows:
        if row.run in seen or row.seed_threshold is None:
            continue
        seen.add(row.run)
        scored_on = row.splits.get("seed") or "score split"
        table.append([row.run, "oracle (as the papers)", scored_on, scored_on, _threshold(row.seed_threshold),
                      _percent(row.seed.miou), _pr(row.seed)])
        if row.held_out is None:
            table.append([row.run, "held-out", "not run (stages.evaluate_seeds.held_out is null)", scored_on,
                          "", "", ""])
        else:
            held_out = row.held_out
            table.append([row.run, "held-out", held_out.tuned_on, held_out.report_split or scored_on,
                          _threshold(held_out.threshold), _percent(held_out.scores.miou), _pr(held_out.scores)])
    return table


def localisation_table_rows(rows: Sequence[SummaryRow]) -> list[list[str]]:
    """Per run whose seed evaluation measured it: pointing game, energy inside the class and on any object,
    each beside its chance level (``wsss_core.evaluation.diagnostics.localisation_statistics``)."""
    table, seen = [], set()
    for row in rows:
        stats = row.localisation
        if row.run in seen or not stats or not stats.get("pairs"):
            continue
        seen.add(row.run)
        gain = stats.get("energy_gain")
        table.append([row.run, str(stats["pairs"]),
                      f"{_percent(stats['pointing_accuracy'])} ({_percent(stats['pointing_chance'])})",
                      f"{_percent(stats['energy_inside'])} ({_percent(stats['pointing_chance'])})",
                      f"{_percent(stats.get('energy_on_objects'))} ({_percent(stats.get('objects_chance'))})",
                      "" if gain is None else f"{gain:.2f}"])
    return table


def error_table_rows(rows: Sequence[SummaryRow]) -> list[list[str]]:
    """Per route and level (the seeds once per run): where the object pixels went and how many images were
    given a class they do not contain (the seed evaluation does not count those)."""
    table, seen = [], set()
    for row in rows:
        for level in SCORE_LEVELS:
            errors = row.errors.get(level)
            if not errors or (level == "seed" and row.run in seen):
                continue
            table.append([row.run, "" if level == "seed" else row.pipeline_label,
                          "own pseudo-label" if level == "mask" and row.route == "own_decoder" else level,
                          *(_percent(errors.get(key)) for key in ("correct", "missed", "confused", "false_foreground",
                                                                  "foreground_iou", "names_absent_class"))])
        seen.add(row.run)
    return table


def _unique_reported(rows: Sequence[SummaryRow]) -> list[tuple[str, list[ReportedNumber]]]:
    """Each run's reported numbers once (a run with several routes has several rows), seed → test."""
    order = {metric: index for index, metric in enumerate(REPORTED_COLUMNS)}
    seen: dict[str, list[ReportedNumber]] = {}
    for row in rows:
        if row.run not in seen:
            seen[row.run] = sorted(row.reported.values(), key=lambda number: order[number.metric])
    return list(seen.items())


def _introduction(splits: Mapping[str, str] | None) -> str:
    splits = splits or {}
    return (
        "mIoU in percent; P / R = precision / recall, unweighted means over classes. Seeds and pseudo-masks "
        f"are scored on the score split ({splits.get('score', 'score')}), the final result on the evaluation "
        f"split ({splits.get('evaluate', 'evaluate')}); bg thr. = the seeds' background threshold chosen on the "
        "scored split itself (the papers' protocol, an oracle); held-out = chosen on other images "
        "(stages.evaluate_seeds.held_out) and then scored on the same split. [split] in a header names the split "
        "its numbers were measured on."
    )


def render_markdown(rows: Sequence[SummaryRow], dataset: str, with_reported: bool,
                    splits: Mapping[str, str] | None = None, footer: str = "") -> str:
    """The summary as Markdown."""
    lines = [f"# Results on {dataset}", "", _introduction(splits)]
    for table in summary_tables(rows, with_reported, splits):
        lines += ["", f"## {table.title}", ""]
        lines.append("| " + " | ".join(table.header) + " |")
        numbers = len(table.header) - table.text_columns
        lines.append("|" + "|".join([":---"] * table.text_columns + ["---:"] * numbers) + "|")
        lines += ["| " + " | ".join(cells) + " |" for cells in table.rows]
    return "\n".join(lines) + "\n" + flag_notes(rows) + footer


def flag_lines(rows: Sequence[SummaryRow]) -> list[str]:
    """What the ⚠ of each flagged row means: the run's seed and classifier diagnostics once per run, then
    each route's own (``route_flags``) under its pipeline."""
    notes, seen = [], set()
    for row in rows:
        if row.flags and row.run not in seen:
            seen.add(row.run)
            notes += [f"⚠ {row.run}: {message}" for message in row.flags.values()]
        notes += [f"⚠ {row.run} ({row.pipeline_label}): {message}" for message in row.route_flags.values()]
    return notes


def flag_notes(rows: Sequence[SummaryRow]) -> str:
    """The Diagnostics section of the Markdown summary (empty when nothing is flagged)."""
    notes = flag_lines(rows)
    return ("\n## Diagnostics\n\n" + "\n".join(f"- {note}" for note in notes) + "\n") if notes else ""


_HTML_STYLE = (
    "body{font-family:sans-serif;font-size:14px;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #ccc;padding:3px 8px}th{background:#f0f0f0}td.number{text-align:right}"
    "th.reported,td.reported{background:#fff7e0;font-style:italic}"
)


def render_html(rows: Sequence[SummaryRow], dataset: str, with_reported: bool,
                splits: Mapping[str, str] | None = None, footer: str = "") -> str:
    """The summary as a self-contained HTML page (the Snakemake report shows HTML inline, not Markdown);
    reported numbers are shaded and italic so they are never read as measured ones."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Results on {html.escape(dataset)}</title>"
             f"<style>{_HTML_STYLE}</style></head><body><h1>Results on {html.escape(dataset)}</h1>",
             f"<p>{html.escape(_introduction(splits))}</p>"]
    for table in summary_tables(rows, with_reported, splits):
        parts.append(f"<h2>{html.escape(table.title)}</h2><table><tr>")
        reported = [name.startswith("reported") for name in table.header]
        parts += [f"<th class='{'reported' if flag else ''}'>{html.escape(name)}</th>"
                  for name, flag in zip(table.header, reported)]
        parts.append("</tr>")
        for cells in table.rows:
            parts.append("<tr>")
            for index, cell in enumerate(cells):
                classes = ("number" if index >= table.text_columns else "") + (" reported" if reported[index] else "")
                parts.append(f"<td class='{classes.strip()}'>{html.escape(cell)}</td>")
            parts.append("</tr>")
        parts.append("</table>")
    notes = flag_lines(rows)
    if notes:
        parts.append("<h2>Diagnostics</h2><ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in notes) + "</ul>")
    parts.append(footer + "</body></html>\n")
    return "".join(parts)


CSV_COLUMNS: tuple[str, ...] = (
    "dataset", "run", "method", "route", "refine", "segmentation",
    "seed_miou", "seed_precision", "seed_recall", "seed_threshold",
    "mask_miou", "mask_precision", "mask_recall",
    "final_miou", "final_precision", "final_recall",
    *(f"seconds_{column}" for column in STAGE_COLUMNS), "seconds_total",
    *(f"reported_{metric}_miou" for metric in REPORTED_COLUMNS),
    *(f"reported_{metric}_source" for metric in REPORTED_COLUMNS),
    "seed_split", "mask_split", "final_split",
    "seed_heldout_miou", "seed_heldout_threshold", "seed_heldout_tuned_on",
    "classification_map_best", "classification_map_chance",
    "flags",  # the row's diagnostics (flag_lines), keys joined by ';'
)


def _csv_number(value: float | None, scale: float = 1.0) -> str:
    return "" if value is None else f"{value * scale:.4f}"


def render_csv(rows: Sequence[SummaryRow]) -> str:
    """The summary as CSV: measured scores in percent (4 decimals), seconds, reported numbers and
    their sources in columns named ``reported_*``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        cells = [row.dataset, row.run, row.method, row.route, row.refine or "", row.segmentation or ""]
        for level in SCORE_LEVELS:
            scores: Scores = getattr(row, level)
            cells += [_csv_number(scores.miou, 100), _csv_number(scores.precision, 100),
                      _csv_number(scores.recall, 100)]
            if level == "seed":
                cells.append(_csv_number(row.seed_threshold))
        cells += [_csv_number(row.seconds[column]) for column in STAGE_COLUMNS]
        cells.append(_csv_number(row.total_seconds))
        cells += [_csv_number(row.reported[m].miou) if m in row.reported else "" for m in REPORTED_COLUMNS]
        cells += [row.reported[m].source if m in row.reported else "" for m in REPORTED_COLUMNS]
        cells += [row.splits.get(level) or "" for level in SCORE_LEVELS]
        held_out = row.held_out
        cells += [_csv_number(held_out.scores.miou, 100), _csv_number(held_out.threshold), held_out.tuned_on] \
            if held_out else ["", "", ""]
        classification = row.classification
        cells += [_csv_number(classification.best, 100), _csv_number(classification.chance, 100)] \
            if classification else ["", ""]
        cells.append(";".join([*row.flags, *row.route_flags]))
        writer.writerow(cells)
    return buffer.getvalue()
