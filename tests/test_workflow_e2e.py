"""The real Snakemake DAG on a tiny synthetic dataset: every stage, both routes, reruns and a SIGKILL.

These tests run `snakemake` as a subprocess in a temporary working directory with the repository's
Snakefile and config.yaml plus tests/e2e_config.yaml (tiny sizes). They take a few minutes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch

from wsss_core.stages.evaluate_seeds import threshold_grid

pytestmark = pytest.mark.e2e

REPOSITORY = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def snakemake(workdir: Path, *targets: str, extra: tuple[str, ...] = (), check: bool = True,
              background: bool = False):
    command = [
        str(SNAKEMAKE), "--snakefile", str(REPOSITORY / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(REPOSITORY / "config.yaml"), str(REPOSITORY / "tests" / "e2e_config.yaml"),
        "--cores", "2", *targets, *extra,  # targets first: --config takes every value after it
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    if background:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=environment, start_new_session=True)
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Path:
    """Run the multi-stage chain (MCTformer-V2 → seeds → CRF → DeepLab-V2) and an end-to-end method
    (ToCo's own decoder) once for the module."""
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(workdir, "results/synth/mctformer/miou.json", "results/synth/toco/miou.json")
    return workdir


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_multi_stage_chain_writes_scores_with_provenance(chain):
    run = chain / "results/synth/mctformer"
    final = read(run / "miou.json")
    assert 0.0 <= final["miou"] <= 1.0
    assert final["pipeline"]["route"] == "multi_stage"
    assert final["pipeline"]["refine"] == "crf" and final["pipeline"]["segmentation"] == "deeplab_v2"
    assert 0.0 <= final["seed_miou"] <= 1.0 and 0.0 <= final["mask_miou"] <= 1.0
    assert len(final["iou"]) == 21  # background + 20 synthetic classes

    seeds = read(run / "seeds/eval.json")
    assert seeds["split"] == "train" and seeds["num_images"] == 12
    # the sweep covers the configured grid, and the threshold reported is where its mIoU curve peaks
    # (the first maximum, as the stage picks it)
    sweep, configured = seeds["sweep"], seeds["provenance"]["config"]["stage"]["thresholds"]
    assert [point["threshold"] for point in sweep] == threshold_grid(configured)
    peak = max(sweep, key=lambda point: point["miou"] or 0.0)
    assert seeds["best_threshold"] == peak["threshold"] and seeds["best"]["miou"] == peak["miou"]
    for artefact in (seeds, read(run / "masks/crf/eval.json"), read(run / "seg/crf.deeplab_v2/miou.json")):
        assert artefact["provenance"]["code_fingerprint"]
        assert artefact["provenance"]["config"]["dataset"]["name"] == "synth"

    with h5py.File(run / "seeds/cams.h5", "r", locking=False) as store:
        assert store.attrs["method"] == "mctformer"
        assert len(store["maps"]) == 32  # every train_aug image
        assert "provenance" in store.attrs
    for stage in ("train_method", "export_seeds", "refine_crf", "train_segmentation", "infer_segmentation"):
        assert (chain / f"benchmarks/synth/mctformer/{stage}{'' if stage in ('train_method', 'export_seeds', 'refine_crf') else '_crf.deeplab_v2'}.tsv").is_file()


def test_end_to_end_route_uses_the_methods_own_decoder(chain):
    final = read(chain / "results/synth/toco/miou.json")
    assert final["pipeline"]["route"] == "own_decoder"
    assert 0.0 <= final["miou"] <= 1.0
    assert (chain / "results/synth/toco/decoder/predictions.h5").is_file()
    # its own PAR pseudo-labels are exported for every training image and scored as the mask level
    own = read(chain / "results/synth/toco/masks/own/eval.json")
    assert final["mask_miou"] == own["miou"] and final["sources"]["masks"].endswith("masks/own/eval.json")
    with h5py.File(chain / "results/synth/toco/masks/own/masks.h5", "r", locking=False) as store:
        assert store.attrs["source"] == "par" and len(store["masks"]) == 32


def test_finished_run_is_not_redone_and_a_parameter_change_reruns_downstream(chain):
    dry = snakemake(chain, "results/synth/mctformer/miou.json", extra=("-n",))
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    changed = snakemake(
        chain, "results/synth/mctformer/miou.json",
        extra=("-n", "--config", "stages={'evaluate_seeds': {'thresholds': {'start': 0.1, 'stop': 0.9, 'step': 0.05}}}"),
    )
    summary = changed.stdout + changed.stderr
    # the rules of the planned jobs: the rows "<rule> <count>" of the first "Job stats:" table (the commands
    # printed after it name stages too, e.g. in their --runtime JSON)
    table = summary.split("Job stats:")[1].split("\n\n")[0]
    planned = {match[1] for match in re.finditer(r"^(\w+)\s+\d+$", table, re.MULTILINE)} - {"total"}
    assert {"evaluate_seeds", "refine_crf"} <= planned and "train_method" not in planned, planned


def test_sigkill_during_training_resumes_from_the_last_checkpoint(tmp_path):
    epochs = 12  # long enough that the kill, right after the first epoch checkpoint, lands before the end
    overrides = ("--config", "methods={'mctformer': {'params': {'presets': {'synth': {'train': {'epochs': %d}}}}}}" % epochs)
    target = "results/synth/mctformer/train/model.pt"
    snakemake(tmp_path, "results/synth/dataset")
    process = snakemake(tmp_path, target, extra=overrides, background=True)
    state = tmp_path / "results/synth/mctformer/train/_state/last.pt"
    deadline = time.time() + 600
    while not state.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert state.exists(), "training never wrote a checkpoint"
    os.killpg(process.pid, signal.SIGKILL)  # the whole job: snakemake and the stage it runs
    process.wait()
    assert not (tmp_path / target).exists()
    saved = torch.load(state, map_location="cpu", weights_only=False)

    snakemake(tmp_path, extra=("--unlock",))
    # resumed with another log_every: a run-time setting, not in the resume key (wsss_core.runtime)
    log_every = ("stages={'train_method': {'log_every': 1}}",)
    snakemake(tmp_path, target, extra=(*overrides, *log_every))
    log = (tmp_path / "logs/synth/mctformer/train_method.log").read_text()
    assert "starting afresh" not in log, log[-2000:]
    resumed = re.search(r"resumed from \S+ at step (\d+)/(\d+)", log)
    assert resumed, log[-2000:]
    step, total = int(resumed.group(1)), int(resumed.group(2))
    steps_per_epoch = total // epochs
    assert step == saved["step"] and step % steps_per_epoch == 0 and step > 0  # the last epoch checkpoint
    assert (tmp_path / target).is_file()
    assert not state.exists()  # resume state is removed once the model is written

    # an uninterrupted run of the same job ends with the same weights, bit for bit
    killed_and_resumed = torch.load(tmp_path / target, map_location="cpu", weights_only=True)
    snakemake(tmp_path, target, extra=("--forcerun", "train_method", *overrides, *log_every))
    uninterrupted = torch.load(tmp_path / target, map_location="cpu", weights_only=True)
    assert "resumed from" not in (tmp_path / "logs/synth/mctformer/train_method.log").read_text()
    assert killed_and_resumed["model"].keys() == uninterrupted["model"].keys()
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(killed_and_resumed["model"][name], tensor), name
    # the uninterrupted run logged every step; the resumed one every 10th up to the kill, then every step
    losses = {record["step"]: record["loss"] for record in uninterrupted["history"]}
    logged = {record["step"]: record["loss"] for record in killed_and_resumed["history"]}
    assert len(losses) == total and len(logged) < total
    assert all(losses[step] == loss for step, loss in logged.items())


def _jobs(result) -> str:
    """The job table of a dry run (between "Job stats:" and "Reasons:"), or '' when nothing is to be done."""
    text = result.stdout + result.stderr
    return text.split("Job stats:")[1].split("Reasons:")[0] if "Job stats:" in text else ""


def test_run_time_settings_rerun_nothing_and_a_result_setting_reruns_downstream(tmp_path):
    """wsss_core.runtime: num_workers and a stage's log_every change how jobs run, not what they compute,
    so after a finished run a new value leaves nothing to do; the method's lr reruns its training and
    what reads the model; a bad run-time value stops the dry run with one line naming the key."""
    target = "results/synth/mctformer/seeds/cams.h5"
    snakemake(tmp_path, target)
    how = ("--config", "num_workers=1", "stages={'train_method': {'log_every': 3, 'prefetch_factor': 2}, "
           "'segmentation': {'deeplab_v2': {'train': {'log_every': 5}}}}")
    dry = snakemake(tmp_path, target, extra=("-n", *how))
    assert "Nothing to be done" in dry.stdout + dry.stderr, _jobs(dry) or dry.stdout[-3000:]

    what = ("--config", "methods={'mctformer': {'params': {'presets': {'synth': {'train': {'lr': 1.0e-3}}}}}}")
    jobs = _jobs(snakemake(tmp_path, target, extra=("-n", *what)))
    assert "train_method" in jobs and "export_seeds" in jobs, jobs
    assert "pretrain_backbone" not in jobs and "synth_dataset" not in jobs, jobs

    bad = snakemake(tmp_path, target, extra=("-n", "--config", "stages={'train_method': {'log_every': 0}}"),
                    check=False)
    assert bad.returncode != 0
    lines = [line for line in (bad.stdout + bad.stderr).splitlines() if "log_every" in line]
    assert lines == ["config.yaml: stages.train_method.log_every is 0; a run-time setting that must be an "
                     "integer >= 1"], bad.stdout[-3000:] + bad.stderr[-3000:]
