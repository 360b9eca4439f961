"""profiles/slurm against a real SLURM: the one-node test cluster of tests/slurm/start_cluster.sh.

* The tiny synthetic chain (MCTformer-V2 → seeds → CRF → DeepLab-V2, tests/slurm/cluster_config.yaml) is
  submitted with ``--workflow-profile profiles/slurm`` while the same chain runs locally. SLURM's own records
  (sacct) show that every job of the DAG went through sbatch with the memory, time limit, CPUs, partition
  and account that the config asks for; each job's sbatch log is where docs/cluster.md says; the training
  job, cancelled with ``scancel`` after its first checkpoint, is retried by the profile and resumes from
  that checkpoint; the final scores and the seed store equal the local run's.
* A training stage with 2 processes (torchrun, gloo on CPU) inside one sbatch job writes the model of the
  one-process run, as tests/test_distributed.py checks it outside SLURM.

Needs the cluster up (``sudo bash tests/slurm/start_cluster.sh``; .ci/run starts it). Without it the
tests are skipped, except with WSSS_SLURM_REQUIRED=1, where they fail.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]

REPOSITORY = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
OVERLAY = REPOSITORY / "tests" / "slurm" / "cluster_config.yaml"
START_SCRIPT = "tests/slurm/start_cluster.sh"
PARTITION = ACCOUNT = "wsss"  # tests/slurm/cluster_config.yaml; the cluster's defaults are `main` and `other`
CPUS = 2                      # the test node's CPUs: --max-threads caps every rule's threads at this
TARGET = "results/synth/mctformer/miou.json"
RUN = "results/synth/mctformer"
HEAVY_RULES = ("train_method", "export_seeds", "train_segmentation", "infer_segmentation")
HEAVY = yaml.safe_load(OVERLAY.read_text())["compute"]["synth"]  # what the heavy rules ask for
# final_result's own `runtime: 5` is too short where a job's Snakemake start-up alone takes minutes (a
# shared machine where the test's processes run at the lowest priority: the job and its retry hit TIMEOUT);
# the override goes through the profile's sbatch like any resource and is checked like the others.
SET_RESOURCES = {"final_result": {"runtime": 60}}
# The local run and the SLURM run of the chain (and the DDP job) each. Unloaded, the SLURM chain takes minutes;
# on the shared machine, at the lowest priority, much longer.
CHAIN_TIMEOUT_S = 3 * 3600


# ----------------------------------------------------------------------------------------- cluster
def _run(command: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _cluster_problem() -> str | None:
    """Why the test cluster cannot take the jobs, or None when it can."""
    for tool in ("sbatch", "sacct", "scancel", "squeue", "sinfo", "sacctmgr"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    try:
        nodes = _run(["sinfo", "--noheader", f"--partition={PARTITION}", "--format=%T"])
        associations = _run(["sacctmgr", "--noheader", "--parsable2", "list", "association",
                             f"user={getpass.getuser()}", "format=account"])
    except subprocess.TimeoutExpired as error:
        return f"`{' '.join(error.cmd)}` did not answer within {error.timeout} s"
    if nodes.returncode != 0:
        return f"sinfo failed: {nodes.stderr.strip()}"
    if not set(nodes.stdout.split()) & {"idle", "mixed", "allocated", "completing"}:
        return f"partition {PARTITION} has no node up (sinfo: {nodes.stdout.split() or 'no such partition'})"
    if associations.returncode != 0 or ACCOUNT not in associations.stdout.split():
        return f"user {getpass.getuser()} has no association with account {ACCOUNT} ({associations.stderr.strip()})"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = _cluster_problem()
    if problem is None:
        return
    if os.environ.get("WSSS_SLURM_REQUIRED") == "1":
        pytest.fail(f"the SLURM test cluster is not up: {problem}; run `bash {START_SCRIPT}` first")
    pytest.skip(f"no SLURM test cluster ({problem}): start it with `sudo bash {START_SCRIPT}`")


def _environment() -> dict[str, str]:
    """The jobs import this checkout's wsss_core (sbatch exports the environment: --export=ALL)."""
    path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def _snakemake(*arguments: str) -> list[str]:
    return [str(SNAKEMAKE), "--snakefile", str(REPOSITORY / "Snakefile"),
            "--configfile", str(REPOSITORY / "config.yaml"), str(OVERLAY), *arguments]


@dataclass
class Record:
    """One job as sacct records it."""

    job_id: str
    comment: str
    partition: str
    account: str
    req_mem: str
    time_limit: str
    req_cpus: int
    state: str
    work_dir: str


SACCT_FIELDS = "JobID,Comment,Partition,Account,ReqMem,Timelimit,ReqCPUS,State,WorkDir"


def _sacct(since: str, work_dir: Path) -> dict[str, Record]:
    """The allocations (no steps) submitted since ``since`` whose working directory is ``work_dir``, once
    slurmdbd has their final record (it gets a job's comment and end state when the job ends)."""
    for _ in range(240):  # 2 minutes at most
        result = _run(["sacct", "--allocations", "--parsable2", "--noheader", f"--starttime={since}",
                       f"--format={SACCT_FIELDS}"])
        assert result.returncode == 0, result.stderr
        records = {}
        for line in result.stdout.splitlines():
            job_id, comment, partition, account, req_mem, limit, cpus, state, directory = line.split("|")
            if Path(directory) == work_dir:
                records[job_id] = Record(job_id, comment, partition, account, req_mem, limit, int(cpus),
                                         state.split()[0], directory)  # "CANCELLED by 0" → CANCELLED
        if all(record.comment and record.state not in ("PENDING", "RUNNING") for record in records.values()):
            break
        time.sleep(0.5)
    return records


def _since() -> str:
    """A sacct --starttime a minute ago."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 60))


def _time_limit(minutes: int) -> str:
    """sacct's Timelimit for ``-t minutes`` (below a day)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def _jobs_in(work_dir: Path) -> list[tuple[str, str]]:
    """(job id, comment) of the queued or running jobs whose working directory is ``work_dir``."""
    result = _run(["squeue", "--noheader", "--format=%i|%k|%Z"])
    assert result.returncode == 0, result.stderr
    rows = (line.split("|") for line in result.stdout.splitlines())
    return [(job_id, comment.strip()) for job_id, comment, directory in rows if Path(directory) == work_dir]


def _cancel_jobs_in(work_dir: Path) -> None:
    for job_id, _ in _jobs_in(work_dir):
        subprocess.run(["scancel", job_id], capture_output=True)


# ------------------------------------------------------------------------- the chain, local and SLURM
@dataclass
class Submission:
    """A job of the SLURM run, as Snakemake's output describes it."""

    rule: str
    wildcards: str  # the values, joined by "_" (the plugin's log folder and job comment)
    threads: int
    resources: dict[str, str]
    slurm_ids: list[str]
    logs: list[Path]


def _submissions(output: str) -> dict[str, Submission]:
    """Snakemake job id → its rule, threads, resources and SLURM submissions (a retry adds one). The logs of a
    failed job that the profile prints (show-failed-logs: "Logfile <path>:" between two lines of 80 "=") are
    skipped: they hold the job's own Snakemake run, whose job ids are not the driver's."""
    jobs: dict[str, Submission] = {}
    block: dict[str, str] = {}
    rulers_left = 0  # the "=" lines still to pass in a printed log file
    for line in output.splitlines():
        if re.match(r"^Logfile .+:$", line):
            rulers_left = 2
            continue
        if rulers_left:
            rulers_left -= line == "=" * 80  # not the "=========" under the job's own "SNAKEMAKE" banner
            continue
        header = re.match(r"^rule (\w+):$", line)
        if header:
            block = {"rule": header.group(1)}
            continue
        field = re.match(r"^    (jobid|wildcards|threads|resources): (.*)$", line)
        if field and block:
            block[field.group(1)] = field.group(2)
            if field.group(1) == "resources":
                resources = dict(item.split("=", 1) for item in block["resources"].split(", "))
                wildcards = "_".join(item.split("=", 1)[1] for item in block.get("wildcards", "").split(", ") if item)
                jobs.setdefault(block["jobid"], Submission(
                    block["rule"], wildcards.replace("/", "_"), int(block.get("threads", 1)), resources, [], []
                ))
                block = {}
            continue
        submitted = re.match(r"^Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.$", line)
        if submitted:
            jobs[submitted.group(1)].slurm_ids.append(submitted.group(2))
            jobs[submitted.group(1)].logs.append(Path(submitted.group(3)))
    return jobs


@dataclass
class SlurmRun:
    work_dir: Path
    output: str
    returncode: int
    records: dict[str, Record]
    cancelled: str
    saved_step: int


@pytest.fixture(scope="module")
def local_run(cluster, tmp_path_factory) -> Path:
    """The chain run locally (2 cores, the same threads per rule as on the 2-CPU node)."""
    work_dir = tmp_path_factory.mktemp("local")
    result = subprocess.run(_snakemake("--cores", str(CPUS), TARGET), cwd=work_dir, capture_output=True,
                            text=True, env=_environment(), timeout=CHAIN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    (work_dir / "snakemake.out").write_text(result.stdout + result.stderr)
    return work_dir


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory) -> SlurmRun:
    """The chain submitted with profiles/slurm; its training job is cancelled (scancel) right after the
    first epoch checkpoint, and the profile's retry finishes the chain."""
    work_dir = tmp_path_factory.mktemp("slurm")
    since = _since()
    overrides = [f"{rule}:{name}={value}" for rule, values in SET_RESOURCES.items() for name, value in values.items()]
    command = _snakemake("--workflow-profile", str(REPOSITORY / "profiles" / "slurm"), "--set-resources", *overrides,
                         "--max-threads", str(CPUS), "--slurm-init-seconds-before-status-checks", "2", TARGET)
    log_path = work_dir / "snakemake.out"
    state = work_dir / RUN / "train" / "_state" / "last.pt"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=work_dir, stdout=log, stderr=subprocess.STDOUT, text=True,
                                   env=_environment(), start_new_session=True)
        try:
            deadline = time.time() + CHAIN_TIMEOUT_S
            while not state.exists() and process.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            assert state.exists(), "the training job never wrote a checkpoint:\n" + log_path.read_text()[-4000:]
            training = [job for job, comment in _jobs_in(work_dir) if comment.startswith("rule_train_method_")]
            assert len(training) == 1, _jobs_in(work_dir)
            saved_step = torch.load(state, map_location="cpu", weights_only=False)["step"]
            subprocess.run(["scancel", training[0]], check=True)
            returncode = process.wait(timeout=max(deadline - time.time(), 1))
        except BaseException:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            _cancel_jobs_in(work_dir)
            raise
    return SlurmRun(work_dir, log_path.read_text(), returncode, _sacct(since, work_dir), training[0], saved_step)


# ----------------------------------------------------------------------------------------------- tests
def _declared_threads() -> dict[str, int]:
    """rule → the ``threads:`` its rule file declares."""
    threads = {}
    for path in (REPOSITORY / "workflow" / "rules").glob("*.smk"):
        for rule, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", path.read_text(), re.MULTILINE):
            declared = re.search(r"^\s+threads: (\d+)", body, re.MULTILINE)
            threads[rule] = int(declared.group(1)) if declared else 1
    for path in (REPOSITORY / "workflow" / "rules").glob("*.smk"):  # `use rule X as Y with:` keeps X's threads
        for base, rule, body in re.findall(r"^use rule (\w+) as (\w+) with:\n((?:[ \t]+.*\n|\n)*)", path.read_text(),
                                           re.MULTILINE):
            declared = re.search(r"^\s+threads: (\d+)", body, re.MULTILINE)
            threads[rule] = int(declared.group(1)) if declared else threads[base]
    return threads


def test_every_job_went_through_sbatch_with_the_configured_resources(slurm_run: SlurmRun, local_run: Path):
    assert slurm_run.returncode == 0, slurm_run.output[-6000:]
    jobs = _submissions(slurm_run.output)
    local_rules = re.findall(r"^(?:local)?rule (\w+):$", (local_run / "snakemake.out").read_text(), re.MULTILINE)
    assert sorted(job.rule for job in jobs.values()) == sorted(local_rules) and len(local_rules) == 10
    submitted = {slurm_id: job for job in jobs.values() for slurm_id in job.slurm_ids}
    assert set(submitted) == set(slurm_run.records), (sorted(submitted), sorted(slurm_run.records))
    threads = _declared_threads()
    for slurm_id, job in submitted.items():
        record = slurm_run.records[slurm_id]
        assert record.comment == f"rule_{job.rule}_wildcards_{job.wildcards}", (record, job)
        assert record.partition == PARTITION and record.account == ACCOUNT, record
        assert record.req_mem == f"{job.resources['mem_mb']}M", (job, record)
        assert record.time_limit == _time_limit(int(job.resources["runtime"])), (job, record)
        assert record.req_cpus == job.threads == min(threads[job.rule], CPUS), (job, record)
        if job.rule in HEAVY_RULES:  # compute.synth of the overlay
            heavy = (f"{HEAVY['mem_mb']}M", _time_limit(HEAVY["runtime"]), CPUS)
            assert (record.req_mem, record.time_limit, record.req_cpus) == heavy, (job.rule, record)
        if job.rule in SET_RESOURCES:  # --set-resources of the test
            assert record.time_limit == _time_limit(SET_RESOURCES[job.rule]["runtime"]), (job.rule, record)
        if job.rule.startswith("evaluate_"):  # the profile's default-resources
            assert (record.req_mem, record.time_limit, record.req_cpus) == ("4000M", "01:00:00", 1), (job.rule, record)
        expected_state = "CANCELLED" if slurm_id == slurm_run.cancelled else "COMPLETED"
        assert record.state == expected_state, record


def test_each_sbatch_log_is_where_the_docs_say(slurm_run: SlurmRun):
    """logs/slurm/rule_<rule>/<wildcard values joined by _>/<SLURM job id>.log (docs/cluster.md)."""
    for job in _submissions(slurm_run.output).values():
        for slurm_id, log in zip(job.slurm_ids, job.logs):
            assert log == slurm_run.work_dir / "logs" / "slurm" / f"rule_{job.rule}" / job.wildcards / f"{slurm_id}.log"
            assert f"rule {job.rule}:" in log.read_text(), log  # the job's own Snakemake wrote it


def test_cancelled_training_job_is_retried_and_resumes_from_its_checkpoint(slurm_run: SlurmRun):
    training = [job for job in _submissions(slurm_run.output).values() if job.rule == "train_method"]
    assert len(training) == 1 and len(training[0].slurm_ids) == 2, training
    first, retry = training[0].slurm_ids
    assert first == slurm_run.cancelled
    assert slurm_run.records[first].state == "CANCELLED" and slurm_run.records[retry].state == "COMPLETED"
    assert "CANCELLED" in training[0].logs[0].read_text()  # slurmstepd's note in the first job's log
    log = (slurm_run.work_dir / "logs" / "synth" / "mctformer" / "train_method.log").read_text()
    resumed = re.search(r"resumed from \S+ at step (\d+)/(\d+)", log)
    assert resumed, log[-2000:]
    step, total = int(resumed.group(1)), int(resumed.group(2))
    epochs = 8  # tests/slurm/cluster_config.yaml: 24 images, batch 8 → 3 steps per epoch
    assert total == epochs * 3 and step % 3 == 0  # an epoch-end checkpoint
    assert slurm_run.saved_step <= step < total, (slurm_run.saved_step, step)  # cancelled mid-run
    assert (slurm_run.work_dir / RUN / "train" / "model.pt").is_file()
    assert not (slurm_run.work_dir / RUN / "train" / "_state").exists()


def _scores(path: Path) -> dict:
    """A miou.json without its provenance (run times, paths)."""
    scores = json.loads(path.read_text())
    scores.pop("provenance", None)
    return scores


def test_results_equal_the_local_run(slurm_run: SlurmRun, local_run: Path):
    assert slurm_run.returncode == 0, slurm_run.output[-6000:]
    cluster_scores, local_scores = (_scores(root / TARGET) for root in (slurm_run.work_dir, local_run))
    assert cluster_scores == local_scores
    for part in ("seeds/eval.json", "masks/crf/eval.json", "seg/crf.deeplab_v2/miou.json"):
        assert _scores(slurm_run.work_dir / RUN / part) == _scores(local_run / RUN / part), part
    stores = [h5py.File(root / RUN / "seeds" / "cams.h5", "r", locking=False) for root in (slurm_run.work_dir, local_run)]
    try:
        cluster_maps, local_maps = (store["maps"] for store in stores)
        assert sorted(cluster_maps) == sorted(local_maps) and len(local_maps) == 24
        for image_id in local_maps:
            assert np.array_equal(cluster_maps[image_id][()], local_maps[image_id][()]), image_id
    finally:
        for store in stores:
            store.close()


# ------------------------------------------------------------------- data-parallel inside an allocation
def test_two_process_training_inside_an_sbatch_job_matches_one_process(cluster, tmp_path):
    """torchrun with 2 gloo workers in one sbatch job (2 CPUs) against one process outside SLURM: the same
    comparison as tests/test_distributed.py."""
    from test_distributed import DDP_METHOD, _tiny_dataset

    dataset, _ = _tiny_dataset(tmp_path / "dataset")
    method = DDP_METHOD

    def stage_command(processes: int) -> list[str]:
        config = {"dataset": dataset, "method": method, "stage": {"log_every": 1, "processes": processes},
                  "weights": {"files": {}, "use_hub": False}, "seed": 0, "device": "cpu", "num_workers": 0,
                  "threads": 1}
        return [sys.executable, "-m", "wsss_core.stages.train_method", "--config", json.dumps(config),
                "--output", str(tmp_path / f"p{processes}" / "model.pt")]

    single = subprocess.run(stage_command(1), capture_output=True, text=True, env=_environment(),
                            timeout=CHAIN_TIMEOUT_S)
    assert single.returncode == 0, single.stderr[-3000:]

    since = _since()
    wrapped = shlex.join(stage_command(2))
    sbatch = ["sbatch", "--parsable", "--wait", f"--partition={PARTITION}", f"--account={ACCOUNT}", "--ntasks=1",
              f"--cpus-per-task={CPUS}", "--mem=3000", "--time=150", f"--chdir={tmp_path}",
              f"--output={tmp_path / 'ddp.log'}", "--comment=ddp_test", f"--wrap={wrapped}"]
    submitted = subprocess.run(sbatch, capture_output=True, text=True, env=_environment(), timeout=CHAIN_TIMEOUT_S)
    log = (tmp_path / "ddp.log").read_text() if (tmp_path / "ddp.log").exists() else ""
    assert submitted.returncode == 0, submitted.stderr + log[-3000:]
    job_id = submitted.stdout.strip().split(";")[0]
    record = _sacct(since, tmp_path)[job_id]
    assert record.state == "COMPLETED" and record.req_cpus == CPUS and record.partition == PARTITION, record
    assert "relaunching under torchrun with 2 processes" in log

    models = {p: torch.load(tmp_path / f"p{p}" / "model.pt", weights_only=True) for p in (1, 2)}
    assert models[2]["processes"] == 2 and models[1]["processes"] == 1
    for name, tensor in models[1]["model"].items():
        torch.testing.assert_close(models[2]["model"][name], tensor, rtol=0, atol=1e-5, msg=name)
    assert [r["loss"] for r in models[2]["history"]] == pytest.approx([r["loss"] for r in models[1]["history"]], abs=1e-5)
