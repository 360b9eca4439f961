"""The SLURM profile: a dry run of the whole VOC DAG (on a fake, empty VOC root) resolves the sbatch
resources of every job, the sharded stages expand to one job per shard, and the plugin turns the GPU
jobs' resources into the right sbatch flags (--gpus=<model>:N, --cpus-per-gpu, --mem, -t)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

pytest.importorskip("snakemake_executor_plugin_slurm")

from snakemake_executor_plugin_slurm.submit_string import get_submit_command  # noqa: E402
from snakemake_executor_plugin_slurm.utils import set_gres_string  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
HEAVY_GPU_RULES = ("export_seeds_shard", "infer_segmentation_shard", "train_segmentation")


def _fake_voc(root: Path) -> Path:
    """An empty VOC 2012 root with the three split lists (one id each)."""
    lists = root / "VOC2012" / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    for split in ("train_aug", "train", "val"):
        (lists / f"{split}.txt").write_text("2007_000032\n")
    return root / "VOC2012"


def _overlay(tmp_path: Path) -> Path:
    """Config overrides: the fake VOC root, two GPUs per heavy job, a SLURM placement, 8 shards; plus the
    segmentation stage keys when config.yaml does not have them yet (written in parallel)."""
    config = yaml.safe_load((REPOSITORY / "config.yaml").read_text())
    overlay = {
        "datasets": {"voc": {"root": str(_fake_voc(tmp_path))}},
        "compute": {"voc": {"gpu": 2, "mem_mb": 48000, "runtime": 1440}},
        "slurm": {"account": "wsss", "cpu_partition": "cpu", "gpu_partition": "gpu", "gpu_model": "a100",
                  "cpus_per_gpu": 8},
        "sharding": {"shards": 1, "presets": {"voc": {"shards": 8}}},
    }
    stages = config.get("stages", {})
    if "inference" not in stages.get("segmentation", {}).get("deeplab_v2", {}):
        overlay["stages"] = {"segmentation": {"deeplab_v2": {"train": {}, "inference": {}}}}
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def _jobs(dry_run: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a dry run lists."""
    jobs = []
    rule = None
    for line in dry_run.splitlines():
        header = re.match(r"^(?:local)?rule (\w+):", line)
        if header:
            rule = header.group(1)
        elif rule and line.strip().startswith("resources:"):
            pairs = (item.split("=", 1) for item in line.split(":", 1)[1].split(", "))
            jobs.append((rule, {key.strip(): value for key, value in pairs}))
            rule = None
    return jobs


@pytest.fixture(scope="module")
def voc_dry_run(tmp_path_factory) -> str:
    tmp_path = tmp_path_factory.mktemp("slurm")
    command = [
        str(SNAKEMAKE), "-n", "--workflow-profile", "profiles/slurm",
        "--configfile", "config.yaml", str(_overlay(tmp_path)), "--", "results/voc/cti/miou.json",
    ]
    result = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_profile_selects_the_slurm_executor_with_per_job_logs():
    profile = yaml.safe_load((REPOSITORY / "profiles" / "slurm" / "profile.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["slurm-logdir"] == "logs/slurm" and profile["rerun-incomplete"] is True
    assert "resources" not in profile  # no local GPU cap on a cluster
    # squeue reports a scancel'd job as CANCELLED; sacct's "CANCELLED by <uid>" is read as running (plugin 2.8.0)
    assert profile["slurm-status-command"] == "squeue"


def test_voc_dag_has_one_job_per_shard_and_gpu_resources(voc_dry_run: str):
    jobs = _jobs(voc_dry_run)
    rules = [rule for rule, _ in jobs]
    assert rules.count("export_seeds_shard") == 8 and rules.count("infer_segmentation_shard") == 8
    assert rules.count("merge_seed_shards") == 1 and rules.count("merge_prediction_shards") == 1
    assert "export_seeds" not in rules and "infer_segmentation" not in rules
    for rule, resources in jobs:
        if rule in HEAVY_GPU_RULES:
            assert resources["gpu"] == "2" and resources["gpu_model"] == "a100", rule
            assert resources["slurm_partition"] == "gpu" and resources["cpus_per_gpu"] == "8", rule
            assert resources["mem_mb"] == "48000" and resources["runtime"] == "1440", rule
            assert resources["slurm_account"] == "wsss", rule
        if rule in ("merge_seed_shards", "merge_prediction_shards", "evaluate_seeds"):
            assert resources["gpu"] == "0" and resources["slurm_partition"] == "cpu", rule
    shard_commands = re.findall(r"--shard (\d+) --shards 8", voc_dry_run)
    assert sorted(set(shard_commands)) == [str(index) for index in range(8)]
    assert rules.count("train_method") == 1
    # two GPUs per job: the segmentation training runs as two data-parallel processes
    training = [line for line in voc_dry_run.splitlines() if "wsss_core.stages.train_segmentation" in line]
    assert training and all('"processes":2' in line for line in training)


class _Resources(dict):
    def __getattr__(self, name):
        return self[name]


def test_plugin_turns_the_gpu_job_resources_into_sbatch_flags(voc_dry_run: str):
    resources = next(res for rule, res in _jobs(voc_dry_run) if rule == "export_seeds_shard")
    typed = _Resources({key: int(value) if value.isdigit() else value for key, value in resources.items()})
    job = SimpleNamespace(resources=typed, threads=4, is_group=lambda: False)
    params = {"run_uuid": "uuid", "slurm_logfile": "logs/slurm/x.log", "comment_str": "rule_export_seeds_shard",
              "account": f"-A {typed.slurm_account}", "partition": f"-p {typed.slurm_partition}", "workdir": None}
    call = get_submit_command(job, params) + set_gres_string(job)
    for flag in ("-A wsss", "-p gpu", "-t 1440", "--mem 48000", "--cpus-per-gpu=8", "--gpus=a100:2"):
        assert flag in call, (flag, call)
