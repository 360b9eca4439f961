"""Where every artefact of the workflow lives under ``results/``: each path pattern once.

The rules use these patterns as their ``output:`` (Snakemake wildcards in braces: ``{dataset}``,
``{method}`` = a run name, ``{refine}``, ``{network}``, ``{route_dir}``, ...), the input functions of
``workflow/rules/paths.smk`` fill them in (:func:`path`), and ``wsss_core.reporting`` reads a run's files
through them (:func:`in_run`), so renaming an artefact is one edit here. Light on purpose: parsing the
workflow imports this module, so it imports nothing beyond the standard library.

Layout of one run (``results/{dataset}/{method}``)::

    train/model.pt, train/classification.json           classifier or end-to-end network, its mAP
    seeds/cams.h5, seeds/eval.json                      CAM seed store, its evaluation
    masks/{refine}/masks.h5, masks/{refine}/eval.json   pseudo-masks (crf | irn | psa | own), their scores
    masks/{irn|psa}/relation_labels.h5, .../model.pt    affinity labels and network
    seg/{refine}.{network}/model.pt                     segmentation network trained on the pseudo-masks
    {route_dir}/predictions.h5, {route_dir}/miou.json   predictions and scores (route_dir: seg/... | decoder)
    miou.json                                           the configured route's result (final_result)
    figures/samples.png, figures/training_curves.png
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

RESULTS = "results"
DATASET = RESULTS + "/{dataset}"
RUN = DATASET + "/{method}"

# --------------------------------------------------------------------------------- a dataset's files
GENERATED_DATASET = DATASET + "/dataset"  # the synthetic dataset's root (rule synth_dataset)
DATASET_FINGERPRINT = DATASET + "/dataset.fingerprint.json"  # a dataset on disk (rule dataset_fingerprint)
SUMMARY = DATASET + "/summary.md"
SUMMARY_TABLE = DATASET + "/summary.csv"
SUMMARY_PAGE = DATASET + "/summary.html"
CLASS_IOU_CHART = DATASET + "/figures/class_iou.png"
FIGURE_INDEX = DATASET + "/figures/index.md"
COMPARISONS = DATASET + "/comparisons{level}.md"  # level: "" (whole chains) or "_seeds"
ABLATION = DATASET + "/{ablation}/ablation.md"
ABLATION_TABLE = DATASET + "/{ablation}/ablation.csv"

# ---------------------------------------------------------------- pretrained stand-ins (synthetic)
PRETRAIN_POOL = RESULTS + "/synth/pretrain_pool"
PRETRAIN_POOL_TRAIN = PRETRAIN_POOL + "/train.npz"
PRETRAIN_POOL_VAL = PRETRAIN_POOL + "/val.npz"
PRETRAIN_POOL_CLASSES = PRETRAIN_POOL + "/classes.json"
PRETRAINED_WEIGHTS = RESULTS + "/synth/pretrained/{backbone}.safetensors"
PRETRAINED_REPORT = RESULTS + "/synth/pretrained/{backbone}.json"

# -------------------------------------------------------------------------------- a run's files
MODEL = RUN + "/train/model.pt"
CLASSIFICATION = RUN + "/train/classification.json"
SEEDS = RUN + "/seeds/cams.h5"
SEED_EVAL = RUN + "/seeds/eval.json"
SEED_SHARD = RUN + "/seeds/shards/cams.{shard}of{shards}.h5"
MASKS = RUN + "/masks/{refine}/masks.h5"
MASK_EVAL = RUN + "/masks/{refine}/eval.json"
RELATION_LABELS = RUN + "/masks/{refine}/relation_labels.h5"
AFFINITY_MODEL = RUN + "/masks/{refine}/model.pt"
SEGMENTATION_MODEL = RUN + "/seg/{refine}.{network}/model.pt"
FINAL_RESULT = RUN + "/miou.json"
SAMPLE_GRID = RUN + "/figures/samples.png"
TRAINING_CURVES = RUN + "/figures/training_curves.png"

# A route's predictions and scores sit in its route directory: a segmentation network's, or the method's own
# decoder's. ``ROUTE_DIRS`` is the wildcard constraint of ``{route_dir}``.
SEGMENTATION_ROUTE = "seg/{refine}.{network}"
DECODER_ROUTE = "decoder"
ROUTE_DIRS = r"decoder|seg/[a-z]+\.[a-z0-9_]+"
PREDICTIONS = RUN + "/{route_dir}/predictions.h5"
PREDICTION_SHARD = RUN + "/{route_dir}/shards/predictions.{shard}of{shards}.h5"
ROUTE_RESULT = RUN + "/{route_dir}/miou.json"


class _Keep(dict):
    """Format mapping that leaves a field it does not know as the wildcard it was."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def path(pattern: str, **fields: Any) -> str:
    """``pattern`` with the given wildcards filled in; the others stay wildcards
    (``path(PREDICTIONS, route_dir=SEGMENTATION_ROUTE)`` is the segmentation network's pattern)."""
    return string.Formatter().vformat(pattern, (), _Keep(fields))


def route_dir(refine: str | None = None, network: str | None = None) -> str:
    """The route directory of a segmentation network (``seg/irn.deeplab_v2``), or of the method's own
    decoder when ``refine`` is None."""
    return DECODER_ROUTE if refine is None else path(SEGMENTATION_ROUTE, refine=refine, network=network)


def in_run(run_dir: str | Path, pattern: str, **fields: Any) -> Path:
    """The file of a run pattern (``SEED_EVAL``, ``MASK_EVAL`` with ``refine``, ...) inside ``run_dir``
    (``results/<dataset>/<run>``, wherever the run directory is)."""
    prefix = RUN + "/"
    if not pattern.startswith(prefix):
        raise ValueError(f"'{pattern}' is not a path inside a run directory ({prefix}...)")
    return Path(run_dir) / path(pattern.removeprefix(prefix), **fields)


def run_dir_of(file: str | Path, pattern: str) -> Path | None:
    """The run directory whose ``pattern`` file (one without wildcards below the run) ``file`` is, or None
    (``run_dir_of("results/synth/cti@seed1/seeds/eval.json", SEED_EVAL)`` → ``results/synth/cti@seed1``)."""
    relative = Path(path(pattern.removeprefix(RUN + "/")))
    file = Path(file)
    depth = len(relative.parts)
    if len(file.parts) <= depth or file.parts[-depth:] != relative.parts:
        return None
    return Path(*file.parts[:-depth])


# Names right under results/<dataset>/ that are not runs (workflow_checks.target_problem).
DATASET_LEVEL_NAMES = frozenset(
    Path(pattern.removeprefix(DATASET + "/")).parts[0]
    for pattern in (GENERATED_DATASET, DATASET_FINGERPRINT, SUMMARY, SUMMARY_TABLE, SUMMARY_PAGE, CLASS_IOU_CHART,
                    FIGURE_INDEX, path(COMPARISONS, level=""), path(COMPARISONS, level="_seeds"))
) | {Path(PRETRAIN_POOL).name, Path(PRETRAINED_WEIGHTS).parent.name}
