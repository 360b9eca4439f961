"""The shared training loop: a run killed mid-epoch and resumed ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wsss_core.training.progress import TrainingProgress
from wsss_core.training.checkpoint import ResumeState
from wsss_core.training.loop import EpochSampler, LoopSettings, NonFiniteLossError, run_training
from wsss_core.utils.seeding import sample_rng


class NoisyRegressionDataset(torch.utils.data.Dataset):
    """Samples depend on (epoch, index) only, with random augmentation drawn from the sample rng."""

    def __init__(self, size: int = 10) -> None:
        self.inputs = np.linspace(-1, 1, size * 3, dtype=np.float32).reshape(size, 3)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        noise = sample_rng(0, epoch, index).normal(size=3).astype(np.float32) * 0.1
        x = torch.from_numpy(self.inputs[index] + noise)
        return {"x": x, "y": x.sum(0, keepdim=True) * 2.0}


class RegressionTask:
    def __init__(self, crash_at: int | None = None, nan_at: int | None = None) -> None:
        self.crash_at, self.nan_at = crash_at, nan_at
        self.seen: list[TrainingProgress] = []

    def training_step(self, model, batch, progress):
        self.seen.append(progress)
        if progress.step == self.crash_at:
            raise KeyboardInterrupt("simulated kill")
        prediction = torch.nn.functional.dropout(model(batch["x"]), 0.2, training=True)
        loss = ((prediction - batch["y"]) ** 2).mean()
        if progress.step == self.nan_at:
            loss = loss * math.nan
        return {"loss": loss, "mse": loss.detach()}


def train(tmp_path, task, total_steps=9):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = run_training(
        task=task, model=model, optimizer=optimizer, scheduler=None, dataset=NoisyRegressionDataset(),
        total_steps=total_steps, settings=LoopSettings(batch_size=3, seed=5, log_every=1, checkpoint_every=2),
        state=ResumeState(tmp_path / "_state", "hash-a"), device=torch.device("cpu"),
    )
    return model, history


def test_epoch_sampler_is_a_fixed_permutation_per_epoch():
    first = list(EpochSampler(6, seed=1, epoch=0))
    assert sorted(index for _, index in first) == list(range(6))
    assert first == list(EpochSampler(6, seed=1, epoch=0))
    assert first != list(EpochSampler(6, seed=1, epoch=1))
    assert list(EpochSampler(6, seed=1, epoch=0, start=4)) == first[4:]


def test_killed_run_resumes_to_identical_weights(tmp_path):
    reference, reference_history = train(tmp_path / "reference", RegressionTask())
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "killed", RegressionTask(crash_at=5))
    # 3 steps per epoch: the periodic checkpoint at step 4 is the newest state before the kill
    saved = ResumeState(tmp_path / "killed" / "_state", "hash-a").load()
    assert saved is not None and saved["step"] == 4
    resumed_task = RegressionTask()
    resumed, history = train(tmp_path / "killed", resumed_task)
    assert resumed_task.seen[0].step == 4 and resumed_task.seen[0].epoch == 1
    for a, b in zip(reference.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert [r["mse"] for r in history] == [r["mse"] for r in reference_history]


def test_state_of_another_configuration_is_not_resumed(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, RegressionTask(crash_at=5))
    assert ResumeState(tmp_path / "_state", "hash-b").load() is None


def test_non_finite_loss_names_the_step_and_terms(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"step 2: \{'loss': nan"):
        train(tmp_path, RegressionTask(nan_at=2))


def test_too_small_split_is_a_clear_error(tmp_path):
    model = torch.nn.Linear(3, 1)
    with pytest.raises(ValueError, match="fewer than one batch"):
        run_training(
            task=RegressionTask(), model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            scheduler=None, dataset=NoisyRegressionDataset(2), total_steps=1,
            settings=LoopSettings(batch_size=3), state=ResumeState(tmp_path, "h"), device=torch.device("cpu"),
        )
