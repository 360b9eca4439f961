"""Multi-process training mechanics, proved with 2 CPU processes over gloo.

What is compared:
* 2 processes × 2 images per step against 1 process × 4 images per step (same global batch, same seed,
  a dropout-free task whose loss is a batch mean): the parameters after every step and the logged losses
  agree to float32 rounding (the only difference is the order in which the two half-batch gradient means
  are summed), and the ranks hold bit-identical parameters;
* with dropout (per-rank random streams), a 2-process run killed mid-epoch and resumed from rank 0's
  checkpoint ends bit-identical to an uninterrupted 2-process run (every rank resumes its own RNG state).
"""

from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from wsss_core.errors import ConfigError
from wsss_core.training import distributed
from wsss_core.training.checkpoint import ResumeState
from wsss_core.training.distributed import DistributedContext, rank_share, requested_processes
from wsss_core.training.loop import LoopSettings, RunSampler, epoch_order, run_training
from wsss_core.training.progress import TrainingProgress
from wsss_core.utils.seeding import sample_rng

GLOBAL_BATCH = 4
TOTAL_STEPS = 7  # 10 samples → 2 steps per epoch: steps cross three epoch boundaries


class RegressionDataset(torch.utils.data.Dataset):
    """Samples depend on (epoch, index) only."""

    def __init__(self, size: int = 10) -> None:
        self.inputs = np.linspace(-1, 1, size * 3, dtype=np.float32).reshape(size, 3)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        noise = sample_rng(0, epoch, index).normal(size=3).astype(np.float32) * 0.1
        x = torch.from_numpy(self.inputs[index] + noise)
        return {"x": x, "y": x.sum(0, keepdim=True) * 2.0 + 0.5, "index": torch.tensor(index)}


class RegressionTask:
    def __init__(self, dropout: float, crash_at: int | None = None) -> None:
        self.dropout, self.crash_at = dropout, crash_at
        self.indices: list[list[int]] = []

    def training_step(self, model, batch, progress: TrainingProgress):
        if progress.step == self.crash_at:
            raise KeyboardInterrupt("simulated kill")
        self.indices.append(batch["index"].tolist())
        prediction = torch.nn.functional.dropout(model(batch["x"]), self.dropout, training=self.dropout > 0)
        loss = ((prediction - batch["y"]) ** 2).mean()
        return {"loss": loss, "mse": loss.detach()}


def train(state_dir: Path, task: RegressionTask, context: DistributedContext):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    distributed.broadcast_module(model, context)
    if context.is_distributed:
        torch.manual_seed(distributed.rank_seed(0, context.rank))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = run_training(
        task=task, model=model, optimizer=optimizer, scheduler=None, dataset=RegressionDataset(),
        total_steps=TOTAL_STEPS,
        settings=LoopSettings(batch_size=GLOBAL_BATCH, seed=3, log_every=1, checkpoint_every=3),
        state=ResumeState(state_dir, "hash"), device=torch.device("cpu"), context=context,
    )
    return [p.detach().clone() for p in model.parameters()], history


def _worker(rank: int, world_size: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    context, _ = distributed.initialize(torch.device("cpu"))
    root = Path(folder)
    results = {}
    plain_task = RegressionTask(dropout=0.0)
    results["plain"] = (*train(root / "plain", plain_task, context), plain_task.indices)
    results["reference"] = train(root / "reference", RegressionTask(dropout=0.3), context)
    try:
        train(root / "killed", RegressionTask(dropout=0.3, crash_at=5), context)
    except KeyboardInterrupt:
        pass
    distributed.barrier(context)
    results["resumed"] = train(root / "killed", RegressionTask(dropout=0.3), context)
    results["gathered"] = distributed.gather_tensor(torch.tensor([[rank * 10.0, rank * 10.0 + 1]])).tolist()
    results["current"] = distributed.current_context()
    (root / f"rank{rank}.pkl").write_bytes(pickle.dumps(results))
    distributed.shutdown(context)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(2, _free_port(), str(folder)), nprocs=2, join=True, start_method="spawn")
    return [pickle.loads((folder / f"rank{rank}.pkl").read_bytes()) for rank in range(2)]


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, two_process_results):
    single_task = RegressionTask(dropout=0.0)
    single_parameters, single_history = train(tmp_path / "single", single_task, distributed.SINGLE_PROCESS)
    rank0, rank1 = (results["plain"] for results in two_process_results)
    # the ranks split every global batch into its two halves, in order
    for step, batch in enumerate(single_task.indices):
        assert rank0[2][step] + rank1[2][step] == batch
    for ranked in (rank0, rank1):
        for expected, got in zip(single_parameters, ranked[0]):
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        assert [r["mse"] for r in ranked[1]] == pytest.approx([r["mse"] for r in single_history], abs=1e-6)
    for a, b in zip(rank0[0], rank1[0]):
        assert torch.equal(a, b)


def test_killed_two_process_run_resumes_bit_identically(two_process_results):
    for results in two_process_results:
        reference_parameters, reference_history = results["reference"]
        resumed_parameters, resumed_history = results["resumed"]
        for a, b in zip(reference_parameters, resumed_parameters):
            assert torch.equal(a, b)
        assert [r["mse"] for r in resumed_history] == [r["mse"] for r in reference_history]


def test_gather_tensor_concatenates_the_ranks_in_rank_order(two_process_results):
    for rank, results in enumerate(two_process_results):
        assert results["gathered"] == [[0.0, 1.0], [10.0, 11.0]]
        assert results["current"] == DistributedContext(rank=rank, world_size=2, local_rank=rank)
    assert distributed.current_context() == distributed.SINGLE_PROCESS


def test_rank_share_slices_every_global_batch_in_rank_order():
    order = np.array([7, 3, 9, 1, 4, 0, 2, 8, 6, 5])  # 10 samples, global batch 4: 2 full batches
    first = rank_share(order, 4, DistributedContext(rank=0, world_size=2))
    second = rank_share(order, 4, DistributedContext(rank=1, world_size=2))
    assert first.tolist() == [7, 3, 4, 0]
    assert second.tolist() == [9, 1, 2, 8]
    with pytest.raises(ConfigError, match="batch size 4 .* does not split over 3 processes"):
        rank_share(order, 4, DistributedContext(rank=0, world_size=3))


def test_run_sampler_covers_the_single_process_order_across_epochs():
    size, seed, batch = 10, 3, 4
    single = list(RunSampler(size, seed, batch, first_step=1, total_steps=5))
    # steps 1..4: epoch 0 step 1, epoch 1 steps 0-1, epoch 2 step 0 (2 steps per epoch, 2 samples dropped)
    expected = [(0, int(i)) for i in epoch_order(size, seed, 0)[4:8]]
    expected += [(1, int(i)) for i in epoch_order(size, seed, 1)[:8]]
    expected += [(2, int(i)) for i in epoch_order(size, seed, 2)[:4]]
    assert single == expected
    ranks = [list(RunSampler(size, seed, batch, 1, 5, DistributedContext(r, 2, r))) for r in range(2)]
    assert [x for step in range(4) for r in range(2) for x in ranks[r][step * 2 : step * 2 + 2]] == single


def test_gradient_averager_keeps_unused_parameters_without_gradient():
    model = torch.nn.Linear(2, 1)
    model.weight.grad = torch.ones_like(model.weight)
    distributed.GradientAverager(model.parameters(), distributed.SINGLE_PROCESS)()  # one process: untouched
    assert torch.equal(model.weight.grad, torch.ones(1, 2)) and model.bias.grad is None


def test_requested_processes_reads_integers_and_auto():
    assert requested_processes(None) == 1
    assert requested_processes(3) == 3
    assert requested_processes("auto") == (max(torch.cuda.device_count(), 1) if torch.cuda.is_available() else 1)
    with pytest.raises(ConfigError, match="stage.processes must be at least 1"):
        requested_processes(0)
    with pytest.raises(ConfigError, match="positive integer or 'auto'"):
        requested_processes("two")


def test_torchrun_command_is_standalone_with_one_worker_per_gpu():
    command = distributed.torchrun_command(4, "wsss_core.stages.train_method", ["--config", "{}"])
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
    assert command[6:] == ["wsss_core.stages.train_method", "--config", "{}"]


def _tiny_dataset(root):
    """Eight random 36×40 JPEGs with two classes (PSA-style cls_labels.npy), VOC layout."""
    from PIL import Image

    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    rng = np.random.default_rng(0)
    ids, labels = [f"img_{index}" for index in range(8)], {}
    for index, image_id in enumerate(ids):
        image = rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        labels[image_id] = np.array([index % 2, 1 - index % 2], dtype=np.float32)
    np.save(root / "cls_labels.npy", labels, allow_pickle=True)
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(ids) + "\n")
    dataset = {"name": "tiny", "format": "voc", "root": str(root), "class_names": ["a", "b"],
               "splits": {"train_aug": "ImageSets/Segmentation/train_aug.txt"}, "cls_labels": "cls_labels.npy"}
    return dataset, ids


# MCTformer without drop-path or random augmentation besides crops and flips: its training depends on
# (seed, epoch, index) only, so one process and two gloo processes must write the same model (also used by
# tests/test_slurm_cluster.py inside an sbatch job).
DDP_METHOD = {
    "name": "mctformer",
    "model": {"backbone": "vit_synth", "weights": None, "drop_path": 0.0, "image_size": 32},
    "train": {"batch_size": 4, "epochs": 2, "lr": 5e-4, "weight_decay": 0.05, "warmup_epochs": 1,
              "warmup_lr": 1e-6, "min_lr": 1e-5, "crop_size": 32, "scale": [0.5, 1.0],
              "rand_augment": None, "random_erasing": 0.0},
    "seeds": {"class_attention_blocks": [-1], "patch_attention_blocks": "all", "scales": [1.0], "flip": False},
}


def test_train_method_stage_under_torchrun_matches_one_process(tmp_path):
    """The stage relaunches itself under torchrun for stage.processes = 2 (gloo on CPU) and writes the same
    model as one process with the same global batch (the 2-process run reading a decoded-image cache) (MCTformer, no drop-path, no random augmentation
    besides crops and flips, which depend on (seed, epoch, index) only)."""
    import json
    import subprocess
    import sys

    dataset, ids = _tiny_dataset(tmp_path / "dataset")
    method = DDP_METHOD
    models = {}
    for processes in (1, 2):
        # the 2-process run also serves its images from the decoded-image cache (built by rank 0)
        stage = {"log_every": 1, "processes": processes, "image_cache": processes == 2}
        config = {"dataset": dataset, "method": method, "stage": stage,
                  "weights": {"files": {}, "use_hub": False}, "seed": 0, "device": "cpu", "num_workers": 0,
                  "threads": 1}
        output = tmp_path / f"p{processes}" / "model.pt"
        result = subprocess.run(
            [sys.executable, "-m", "wsss_core.stages.train_method", "--config", json.dumps(config),
             "--output", str(output)],
            capture_output=True, text=True, timeout=540,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        models[processes] = torch.load(output, weights_only=True)
    assert models[2]["processes"] == 2 and models[1]["processes"] == 1
    assert not (tmp_path / "p2" / "_image_cache").exists() and not (tmp_path / "p2" / "_state").exists()
    for name, tensor in models[1]["model"].items():
        torch.testing.assert_close(models[2]["model"][name], tensor, rtol=0, atol=1e-5, msg=name)
    assert [r["loss"] for r in models[2]["history"]] == pytest.approx([r["loss"] for r in models[1]["history"]], abs=1e-5)


def test_train_segmentation_stage_runs_under_torchrun(tmp_path):
    """Mechanics of the segmentation training under torchrun (2 gloo processes): rank 0 writes the model
    once and removes the state. (Its loss is a mean over the valid pixels of each rank's images, so with
    ignore pixels two ranks' mean of means differs slightly from one process's global mean.)"""
    import json
    import subprocess
    import sys

    from wsss_core.io.seed_store import MaskStoreWriter

    dataset, ids = _tiny_dataset(tmp_path / "dataset")
    masks = tmp_path / "masks.h5"
    rng = np.random.default_rng(1)
    with MaskStoreWriter(masks, num_classes=2) as writer:
        for image_id in ids:
            writer.add(image_id, rng.integers(0, 3, (36, 40)).astype(np.uint8))
    stage = {"network": "deeplab_v2", "backbone": "resnet18", "weights": None, "batch_norm": "train",
             "backbone_args": {"channels": [8, 16, 32, 64], "layers": [1, 1, 1, 1], "stem_width": 8},
             "batch_size": 4, "iterations": 3, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
             "crop_size": 32, "scales": [1.0], "num_workers": 0, "log_every": 1, "checkpoint_every": 2,
             "device": "cpu", "processes": 2}
    config = {"dataset": dataset, "stage": stage, "weights": {"files": {}, "use_hub": False}, "seed": 0,
              "device": "cpu", "num_workers": 0}
    output = tmp_path / "seg" / "model.pt"
    result = subprocess.run(
        [sys.executable, "-m", "wsss_core.stages.train_segmentation", "--config", json.dumps(config),
         "--masks", str(masks), "--output", str(output)],
        capture_output=True, text=True, timeout=540,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved = torch.load(output, weights_only=True)
    assert saved["processes"] == 2 and [r["step"] for r in saved["history"]] == [1, 2, 3]
    assert not (output.parent / "_state").exists()
