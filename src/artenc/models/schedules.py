"""Learning-rate schedules stepped every optimizer step: linear warm-up, then cosine decay or a
constant rate. A run resumed with a longer horizon (a larger `max_epochs`) continues on the
schedule of the new horizon at the step it reached, instead of at the finished schedule's rate.

The configs (`configs/scheduler/*.yaml`) give partials taking `(optimizer, total_steps)`;
`ContrastiveModule.configure_optimizers` passes Lightning's estimated number of steps.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Decay = Literal["cosine", "constant"]


class WarmupSchedule(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up over `warmup_fraction` of `total_steps`, then cosine decay to
    `min_factor` of the base rate (Loshchilov & Hutter, SGDR, 2017; without restarts) or a
    constant rate (`decay="constant"`).

    Resuming with another `total_steps` (Lightning restores the saved state into a schedule
    built for the new horizon, `load_state_dict`): the step count is restored, the horizon is
    the new one, and the optimizer's rate is set at once to the new schedule's rate at that step,
    as if the run had been planned that long: raising `max_epochs` neither restarts the warm-up
    nor goes on at the rate of 0 that a finished cosine schedule ends with.

    A parameter group with a `start_step` entry (an optimizer accepts extra keys in its groups)
    is held at rate 0 before that step, then follows its own schedule of the same shape over
    the steps left (`total_steps - start_step`): stages that join training late (the backbone
    after `head_epochs`) get their warm-up and full decay instead of the tail of the head's.

    Raises:
        ValueError: `warmup_fraction` outside [0, 1), `min_factor` outside [0, 1], an unknown
            `decay`, or `total_steps` < 1.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.05,
                 min_factor: float = 0.0, decay: Decay = "cosine", last_epoch: int = -1) -> None:
        if not 0 <= warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        if not 0 <= min_factor <= 1:
            raise ValueError(f"min_factor must be in [0, 1], got {min_factor}")
        if decay not in ("cosine", "constant"):
            raise ValueError(f"decay must be 'cosine' or 'constant', got {decay!r}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.total_steps, self.warmup = int(total_steps), int(warmup_fraction * total_steps)
        self.min_factor, self.decay = float(min_factor), decay
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of the base rate at optimizer step `step` (0-based)."""
        return self._factor(step, self.total_steps, self.warmup)

    def _factor(self, step: int, total: int, warmup: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if self.decay == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return float(self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def group_factor(self, step: int, start: int) -> float:
        """`factor` for a group that starts at optimizer step `start`: 0 before it, then the same
        schedule over `total_steps - start` steps."""
        if start <= 0:
            return self.factor(step)
        if step < start:
            return 0.0
        total = max(1, self.total_steps - start)
        return self._factor(step - start, total, self.warmup * total // self.total_steps)

    def get_lr(self) -> list[float]:
        return [base * self.group_factor(self.last_epoch, int(group.get("start_step", 0)))
                for base, group in zip(self.base_lrs, self.optimizer.param_groups, strict=True)]

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a saved schedule: its step count; the horizon (`total_steps`, warm-up steps)
        stays this one's, and the optimizer's rate becomes this schedule's at the saved step."""
        horizon = {"total_steps": self.total_steps, "warmup": self.warmup}
        super().load_state_dict({k: v for k, v in state_dict.items() if k not in horizon})
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            group["lr"] = lr


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.05,
                  min_factor: float = 0.0) -> WarmupSchedule:
    """Linear warm-up over `warmup_fraction` of the steps, then cosine decay to `min_factor`."""
    return WarmupSchedule(optimizer, total_steps, warmup_fraction, min_factor, "cosine")


def warmup_constant(optimizer: torch.optim.Optimizer, total_steps: int,
                    warmup_fraction: float = 0.0) -> WarmupSchedule:
    """Linear warm-up over `warmup_fraction` of the steps, then the base rate, constant."""
    return WarmupSchedule(optimizer, total_steps, warmup_fraction, decay="constant")
