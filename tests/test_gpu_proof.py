"""The GPU proof (``wsss_core.benchmarks.gpu_proof``) run on CPU with ``--tiny``: the same code path as the GPU
run, at tiny sizes. Measurement processes are forked from the test process (``--start-method fork``), which
has imported everything already; the GPU run starts them from a fork server instead."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from wsss_core.benchmarks import gpu_proof, stages

REPOSITORY = Path(__file__).resolve().parents[1]


def _sleeps(variant, args, queue):
    time.sleep(60)


def _broken_builder():
    raise ValueError("this builder is broken on purpose")


@pytest.mark.slow
def test_tiny_proof_has_every_row_and_records_failures_as_rows(tmp_path):
    failing = gpu_proof.ProofItem(
        "failing", "a seed export of a method that does not exist", "export_seeds", gpu_proof._seed_export,
        {"method_config": {"name": "no_such_method"}, "num_classes": 20, "device": "cpu", "threads": 1,
         "seed": 0, "image_size": [48, 64], "images": 1, "warmup": 0, "precision": "bf16"},
    )
    started = time.monotonic()
    report = gpu_proof.main(
        ["--tiny", "--output-dir", str(tmp_path), "--config", str(REPOSITORY / "config.yaml"),
         "--start-method", "fork", "--item-timeout-s", "60"],
        extra_items=[failing, _broken_builder],
    )
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == [*gpu_proof.DEFAULT_ITEMS, "failing", "_broken_builder"]
    for name in gpu_proof.DEFAULT_ITEMS:
        row = rows[name]
        assert row["ok"], (name, row["errors"])
        assert set(row["variants"]) == set(row["declared"])
        for variant in row["variants"].values():
            assert variant["images_per_second"] > 0 and variant["peak_memory_mib"] > 0
        if name.endswith("_train"):  # both variants, their ratio, FLOPs counted once and shared
            assert row["fast_over_plain"]["images_per_second"] > 0
            plain, fast = row["variants"]["plain"], row["variants"]["fast"]
            assert plain["precision"] == "fp32" and fast["precision"] == "bfloat16"
            assert plain["flops_per_step"] == fast["flops_per_step"] > 0
            assert fast["peak_fraction"] == pytest.approx(fast["tflops_per_second"] / gpu_proof.DEFAULT_PEAK_TFLOPS)
    assert rows["deeplab_v2_train"]["variants"]["fast"]["channels_last"] is True
    assert rows["cti_train"]["variants"]["fast"]["channels_last"] is False
    assert rows["cti_train"]["variants"]["plain"]["losses"]["memory_full_classes"] == 20.0  # C-CTI pass ran

    assert not rows["failing"]["ok"] and rows["failing"]["errors"]["plain"].startswith("KeyError: \"unknown method 'no_such_method'")
    assert "ValueError: this builder is broken on purpose" in rows["_broken_builder"]["errors"]["build"]

    chain = report["chain"]
    assert chain["complete"] == {"plain": True, "fast": True}
    train = next(term for term in chain["terms"] if term["item"] == "cti_train")
    rate = rows["cti_train"]["variants"]["fast"]["images_per_second"]
    assert train["fast_seconds"] == pytest.approx(10582 * 60 / rate)
    assert chain["hours"]["fast"] == pytest.approx(sum(term["fast_seconds"] for term in chain["terms"]) / 3600)

    written = json.loads((tmp_path / "benchmarks.json").read_text())
    assert written["environment"]["device"] == "cpu" and written["settings"]["tiny"] is True
    table = (tmp_path / "benchmarks.md").read_text()
    assert "TINY CPU code-path check, not a measurement" in table
    assert "unknown method" in table and "**total**" in table
    print(f"tiny proof: {time.monotonic() - started:.0f} s")


def test_a_process_past_its_time_cap_is_stopped_and_reported():
    started = time.monotonic()
    with pytest.raises(stages.BenchmarkProcessError, match="stopped after the time cap of 2 s"):
        stages.run_isolated(_sleeps, "plain", {}, timeout=2, start_method="fork")
    assert time.monotonic() - started < 20


def test_the_proof_refuses_a_cpu_run_at_paper_scale_and_a_tiny_run_into_docs(tmp_path):
    with pytest.raises(SystemExit, match="no CUDA device is visible"):
        gpu_proof.main(["--output-dir", str(tmp_path), "--device", "cpu", "--start-method", "fork",
                        "--config", str(REPOSITORY / "config.yaml"), "--items", "cti_train"])
    with pytest.raises(SystemExit):  # argparse: --tiny needs --output-dir, and not docs/
        gpu_proof.main(["--tiny"])
    with pytest.raises(SystemExit):
        gpu_proof.main(["--tiny", "--output-dir", "docs"])
    assert not (tmp_path / "benchmarks.md").exists()


def test_an_item_past_the_overall_budget_is_a_skipped_row():
    item = gpu_proof.ProofItem("late", "an item after the budget", "train_method", _sleeps, {})
    row = gpu_proof.Runner(budget_s=1.0, item_timeout_s=60.0, start_method="fork", started=time.monotonic() - 2).run(item)
    assert not row["ok"] and row["variants"] == {}
    assert row["errors"] == {"plain": "skipped: the 1 s budget was spent", "fast": "skipped: the 1 s budget was spent"}


def test_step_profile_runs_a_proof_training_item_on_cpu(tmp_path: Path) -> None:
    """The profiler builds the step the proof times; on CPU there are no kernels, only wall time."""
    from wsss_core.benchmarks import step_profile

    step_profile.main(["--tiny", "--items", "mctformer_train", "--output-dir", str(tmp_path), "--warmup", "0",
                       "--steps", "1"])
    report = json.loads((tmp_path / "step_profile.json").read_text())
    (result,) = report["results"]
    assert result["item"] == "mctformer_train" and result["wall_ms_per_step"] > 0
    assert result["device_busy"] is None and report["device"] == "CPU"
    assert "MCTformer-V2 training step" in (tmp_path / "step_profile.md").read_text()
    with pytest.raises(SystemExit, match="not a training step"):
        step_profile.main(["--tiny", "--items", "cti_seeds", "--output-dir", str(tmp_path)])
    assert step_profile.kernel_kind("sm90_xmma_gemm_bf16bf16_bf16f32") == "matrix products"
    assert step_profile.kernel_kind("pytorch_flash::flash_fwd_kernel") == "attention (fused)"
