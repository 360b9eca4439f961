"""PolyLRScheduler: lr sequences checked against values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from wsss_core.training.schedulers import PolyLRScheduler


def make_optimizer(*lrs: float) -> torch.optim.SGD:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)


def lr_sequence(optimizer: torch.optim.Optimizer, scheduler: PolyLRScheduler, steps: int) -> list[list[float]]:
    """The lr each group uses at steps 0..steps-1, driven the way training/loop.py drives it."""
    used = []
    for step in range(steps):
        used.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step_update(num_updates=step + 1)
    return used


def test_linear_decay_keeps_group_ratios_and_reaches_zero() -> None:
    optimizer = make_optimizer(1.0, 10.0)
    scheduler = PolyLRScheduler(optimizer, total_steps=4, power=1.0)
    used = lr_sequence(optimizer, scheduler, 4)
    assert used == [pytest.approx([1.0, 10.0]), pytest.approx([0.75, 7.5]),
                    pytest.approx([0.5, 5.0]), pytest.approx([0.25, 2.5])]
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.0, 0.0])
    scheduler.step_update(num_updates=7)  # past the end: stays at 0, never negative
    assert [group["lr"] for group in optimizer.param_groups] == [0.0, 0.0]


def test_power_09_midpoint() -> None:
    optimizer = make_optimizer(2.5e-4)
    scheduler = PolyLRScheduler(optimizer, total_steps=4, power=0.9)
    used = lr_sequence(optimizer, scheduler, 3)
    # 0.75 ** 0.9 = exp(0.9 ln 0.75) = 0.771890, 0.5 ** 0.9 = 0.535887
    assert [row[0] for row in used] == pytest.approx([2.5e-4, 2.5e-4 * 0.771890, 2.5e-4 * 0.535887], rel=1e-5)


def test_warmup_ratio_is_relative_to_each_group() -> None:
    optimizer = make_optimizer(1.0, 10.0)
    scheduler = PolyLRScheduler(optimizer, total_steps=10, power=1.0, warmup_steps=4, warmup_ratio=0.2)
    used = lr_sequence(optimizer, scheduler, 6)
    # warm-up: 1 - (1 - t/4)(1 - 0.2) = 0.2, 0.4, 0.6, 0.8; then poly counted from step 0: 1 - 4/10, 1 - 5/10
    expected = [0.2, 0.4, 0.6, 0.8, 0.6, 0.5]
    assert [row[0] for row in used] == pytest.approx(expected)
    assert [row[1] for row in used] == pytest.approx([10 * value for value in expected])


def test_update_every_holds_the_lr_like_deeplab_pytorch() -> None:
    optimizer = make_optimizer(1.0)
    scheduler = PolyLRScheduler(optimizer, total_steps=20, power=1.0, update_every=10)
    used = [row[0] for row in lr_sequence(optimizer, scheduler, 20)]
    assert used == pytest.approx([1.0] * 10 + [0.5] * 10)


def test_epoch_step_is_a_no_op_and_state_round_trips() -> None:
    optimizer = make_optimizer(1.0)
    scheduler = PolyLRScheduler(optimizer, total_steps=10, power=1.0)
    scheduler.step_update(num_updates=3)
    scheduler.step(epoch=5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.7)
    state = scheduler.state_dict()
    assert "optimizer" not in state

    fresh_optimizer = make_optimizer(1.0)
    fresh_optimizer.load_state_dict(optimizer.state_dict())
    resumed = PolyLRScheduler(fresh_optimizer, total_steps=10, power=1.0)
    resumed.load_state_dict(state)
    resumed.step_update(num_updates=4)
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(0.6)


@pytest.mark.parametrize(
    "arguments",
    [dict(total_steps=0), dict(total_steps=5, warmup_steps=5), dict(total_steps=5, update_every=0)],
)
def test_bad_arguments_are_refused(arguments: dict) -> None:
    with pytest.raises(ValueError):
        PolyLRScheduler(make_optimizer(1.0), **arguments)
