"""Learning-rate schedules stepped every optimizer step: linear warm-up, then cosine decay or a
constant rate. A run resumed with a longer horizon (a larger `max_epochs`) continues from the
rate it stopped at instead of restarting the schedule.

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
    built for the new horizon, `load_state_dict`): the rate continues from the factor it had at
    the saved step and decays by the same rule over the remaining steps, so raising
    `max_epochs` neither restarts the warm-up nor jumps the rate.

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
        self.anchor: tuple[int, float] | None = None  # (step, factor) an extended run continues from
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of the base rate at optimizer step `step` (0-based)."""
        if self.decay == "constant":
            return (step + 1) / self.warmup if step < self.warmup else 1.0
        if self.anchor is not None and step >= self.anchor[0]:
            start, top = self.anchor
        elif step < self.warmup:
            return (step + 1) / self.warmup
        else:
            start, top = self.warmup, 1.0
        progress = min(1.0, (step - start) / max(1, self.total_steps - start))
        return float(self.min_factor + (top - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a saved schedule; when it was built for another horizon, keep this one's
        `total_steps` and continue from the saved step's factor (see the class docstring)."""
        total = self.total_steps
        super().load_state_dict(state_dict)
        if self.total_steps != total:
            self.anchor = (self.last_epoch, self.factor(self.last_epoch))
            self.total_steps = total


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.05,
                  min_factor: float = 0.0) -> WarmupSchedule:
    """Linear warm-up over `warmup_fraction` of the steps, then cosine decay to `min_factor`."""
    return WarmupSchedule(optimizer, total_steps, warmup_fraction, min_factor, "cosine")


def warmup_constant(optimizer: torch.optim.Optimizer, total_steps: int,
                    warmup_fraction: float = 0.0) -> WarmupSchedule:
    """Linear warm-up over `warmup_fraction` of the steps, then the base rate, constant."""
    return WarmupSchedule(optimizer, total_steps, warmup_fraction, decay="constant")
