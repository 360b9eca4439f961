"""wsss_core.artefacts: the one place of every results/ path pattern, used by the rules and by reporting."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsss_core import artefacts as paths


def test_path_fills_the_given_wildcards_and_keeps_the_others():
    assert paths.path(paths.SEED_EVAL, dataset="synth", method="cti") == "results/synth/cti/seeds/eval.json"
    assert (paths.path(paths.PREDICTIONS, route_dir=paths.SEGMENTATION_ROUTE)
            == "results/{dataset}/{method}/seg/{refine}.{network}/predictions.h5")
    assert paths.path(paths.COMPARISONS, dataset="synth", level="_seeds") == "results/synth/comparisons_seeds.md"


def test_route_dirs_match_the_route_constraint():
    import re

    for route in (paths.route_dir(), paths.route_dir("irn", "deeplab_v2"), paths.route_dir("own", "deeplab_v1_resnet38")):
        assert re.fullmatch(paths.ROUTE_DIRS, route), route
    assert paths.route_dir("crf", "deeplab_v2") == "seg/crf.deeplab_v2"


def test_a_run_file_inside_any_run_directory_and_back():
    run_dir = Path("/elsewhere/cti@seed1")
    seed_eval = paths.in_run(run_dir, paths.SEED_EVAL)
    assert seed_eval == run_dir / "seeds" / "eval.json"
    assert paths.in_run(run_dir, paths.MASK_EVAL, refine="own") == run_dir / "masks" / "own" / "eval.json"
    assert paths.run_dir_of(seed_eval, paths.SEED_EVAL) == run_dir
    assert paths.run_dir_of(run_dir / "miou.json", paths.SEED_EVAL) is None
    assert paths.run_dir_of("results/synth/cti/miou.json", paths.FINAL_RESULT) == Path("results/synth/cti")
    with pytest.raises(ValueError, match="not a path inside a run directory"):
        paths.in_run(run_dir, paths.SUMMARY)


def test_dataset_level_names_are_not_taken_for_runs():
    assert {"summary.md", "figures", "dataset", "comparisons_seeds.md", "pretrain_pool", "pretrained"} <= (
        paths.DATASET_LEVEL_NAMES)
