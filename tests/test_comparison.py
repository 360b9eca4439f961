"""Mean ± std over seeds and the distinguishability rule of the method comparisons."""

from __future__ import annotations

import json
import math

import pytest

from wsss_core.reporting.comparison import Spread, comparison_table, verdict
from wsss_core.stages import compare_seeds


def test_spread_is_the_sample_standard_deviation():
    s = Spread((0.40, 0.42, 0.44))
    assert s.mean == pytest.approx(0.42) and s.std == pytest.approx(0.02)
    assert math.isnan(Spread((0.4,)).std)


def test_verdict_compares_the_difference_with_twice_its_standard_error():
    base = Spread((0.40, 0.42, 0.44))  # std 0.02
    close = Spread((0.42, 0.44, 0.46))  # Δ = 0.02, SE = sqrt(2 * 0.0004 / 3) = 0.0163 -> 2 SE = 0.033
    far = Spread((0.50, 0.52, 0.54))  # Δ = 0.10
    assert verdict(base, close) == (pytest.approx(0.02), "not distinguishable")
    assert verdict(base, far) == (pytest.approx(0.10), "distinguishable")
    assert verdict(Spread((0.4,)), far)[1] == "not distinguishable (one seed)"
    assert verdict(None, far) == (None, "—")


def test_table_and_stage(tmp_path):
    files = {}
    for run, values in {"base": (0.40, 0.42, 0.44), "new": (0.50, 0.52, 0.54)}.items():
        files[run] = []
        for k, v in enumerate(values):
            path = tmp_path / f"{run}{k}.json"
            path.write_text(json.dumps({"miou": v, "seed_miou": v - 0.1, "mask_miou": None}))
            files[run].append(str(path))
    table = comparison_table("New vs base", {r: [json.loads(open(f).read()) for f in fs] for r, fs in files.items()})
    # levels no run has (mask, classification) are left out of the table
    assert "| run | seeds | seed mIoU | final mIoU |" in table
    assert "| base | 3 | 32.0 ± 2.0 | 42.0 ± 2.0 |" in table
    assert "| new − base | | +10.0 (distinguishable) | +10.0 (distinguishable) |" in table
    output = tmp_path / "comparisons.md"
    entry = "New vs base|" + "|".join(f"{r}=" + ",".join(fs) for r, fs in files.items())
    compare_seeds.main(["--config", json.dumps({"dataset": {"name": "t"}, "stage": {"splits": {"score": "train"}}}),
                        "--runs", entry, "--output", str(output)])
    text = output.read_text()
    assert "### New vs base" in text and "+10.0 (distinguishable)" in text and "score: train" in text


def test_seed_level_comparison_reads_seed_evaluations_and_classifier_maps(tmp_path):
    """comparisons_seeds.md: ``<run>/seeds/eval.json`` per seed, and the best head of ``train/classification.json``."""
    entry = "CTI vs MCTformer-V2"
    for run, seed_mious, maps in (("mctformer", (0.18, 0.20, 0.22), (0.60, 0.62, 0.64)),
                                  ("cti", (0.10, 0.11, 0.12), (0.48, 0.50, 0.52))):
        paths = []
        for k, (miou, best) in enumerate(zip(seed_mious, maps)):
            run_dir = tmp_path / f"{run}@seed{k}"
            (run_dir / "seeds").mkdir(parents=True)
            (run_dir / "train").mkdir()
            (run_dir / "seeds" / "eval.json").write_text(json.dumps({"best": {"miou": miou}, "best_threshold": 0.3}))
            (run_dir / "train" / "classification.json").write_text(json.dumps(
                {"heads": {"token": {"map": best - 0.3}, "patch": {"map": best}}, "chance_map": 0.08}))
            paths.append(str(run_dir / "seeds" / "eval.json"))
        entry += f"|{run}=" + ",".join(paths)
    output = tmp_path / "comparisons_seeds.md"
    compare_seeds.main(["--config", json.dumps({"dataset": {"name": "t"}}), "--runs", entry, "--output", str(output)])
    text = output.read_text()
    assert "| run | seeds | classification mAP (best head) | seed mIoU |" in text
    assert "| mctformer | 3 | 62.0 ± 2.0 | 20.0 ± 2.0 |" in text
    assert "| cti − mctformer | | -12.0 (distinguishable) | -9.0 (distinguishable) |" in text
