"""``TrainingProgress``: where a training run is, as the shared loop hands it to each step.

It lives with the loop, not with the methods, because every trainer (methods, affinity nets, DeepLab,
pretraining) receives it from ``wsss_core.training.loop``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingProgress:
    """Where training is: methods use it for warm-ups and loss schedules."""

    epoch: int  # 0-based
    step: int  # global optimiser step, 0-based
    steps_per_epoch: int
    total_steps: int
