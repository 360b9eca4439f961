"""Learning-rate schedules that WSSS recipes use and timm lacks, as timm ``Scheduler`` subclasses.

``PolyLRScheduler`` is the per-step polynomial decay of DeepLab (deeplab-pytorch ``PolynomialLR``) and of
the single-stage ToCo family (``PolyWarmupAdamW`` in ToCo, MCC, AFA), with their linear warm-up:

* lr(t) = initial_lr · (1 − t / total_steps) ** power for t ≥ warmup_steps (counted from step 0, not from
  the end of the warm-up, so the lr drops to (1 − w/T) ** power · initial_lr when the warm-up ends, as the
  authors' code does);
* lr(t) = initial_lr · [1 − (1 − t / warmup_steps) · (1 − warmup_ratio)] for t < warmup_steps, i.e. a
  linear ramp from ``warmup_ratio · initial_lr``. ToCo/MCC/AFA pass ``warmup_lr=1e-6`` and use it as this
  *ratio* (their papers call it an absolute lr); we follow the code.
* ``update_every`` > 1 holds the lr piecewise constant between multiples of it, as deeplab-pytorch does
  (it updates every 10 iterations); the default 1 updates at every step.

Each parameter group keeps its own initial lr, so the ratios between groups (DeepLab's ×1/×10/×20,
ToCo's ×10 heads) hold throughout. Past ``total_steps`` the lr is 0.

timm convention: the loop calls ``step_update(num_updates)`` after each optimiser step with the number of
steps done, which sets the lr of the next step; the lr of step t (0-based) is therefore lr(t) and the
constructor sets lr(0).
"""

from __future__ import annotations

import torch
from timm.scheduler.scheduler import Scheduler


class PolyLRScheduler(Scheduler):
    """Per-step polynomial decay with an optional linear warm-up given as a ratio of each initial lr."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        power: float = 0.9,
        warmup_steps: int = 0,
        warmup_ratio: float = 1e-6,
        update_every: int = 1,
    ) -> None:
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}), got {warmup_steps}")
        if update_every < 1:
            raise ValueError(f"update_every must be at least 1, got {update_every}")
        self.total_steps = int(total_steps)
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)
        self.warmup_ratio = float(warmup_ratio)
        self.update_every = int(update_every)
        # Per-step schedule: step(epoch) is a no-op, step_update(num_updates) sets the lr.
        super().__init__(optimizer, param_group_field="lr", t_in_epochs=False)
        self.update_groups(self._get_lr(0))

    def multiplier(self, step: int) -> float:
        """Factor applied to every group's initial lr at optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return 1.0 - (1.0 - step / self.warmup_steps) * (1.0 - self.warmup_ratio)
        held = step - step % self.update_every
        remaining = max(0.0, 1.0 - held / self.total_steps)
        return remaining**self.power

    def _get_lr(self, t: int) -> list[float]:
        factor = self.multiplier(t)
        return [base * factor for base in self.base_values]
