"""Learning-rate schedules as ``LambdaLR`` multipliers of the peak rate.

Step ``s`` counts optimiser updates already made (0 for the first update), so the first
update of a run with warm-up uses a learning rate of 0, as Google's and Hugging Face's
code do. Call ``scheduler.step()`` once after every ``optimizer.step()``.

- ``linear``: ``s / warmup`` while ``s < warmup``, then a straight line from 1 at
  ``warmup`` down to 0 at ``total`` (Hugging Face's ``get_linear_schedule_with_warmup``).
- ``google``: google-research/bert's ``optimization.py`` exactly: polynomial decay
  (power 1) from 1 at step 0 to 0 at ``total``, computed on the global step, and
  overridden by ``s / warmup`` while ``s < warmup``. After warm-up it is therefore
  ``1 - s / total``, slightly below ``linear`` (which starts its decay at ``warmup``).
- ``constant``: ``s / warmup`` during warm-up, then 1.

A time budget (``clock``: the share of the budget used, 0 to 1) makes ``linear`` and
``google`` decay by whichever is further along, the steps or the clock: a run stopped by
``--max-time`` ends with the learning rate at 0 however many steps the machine managed
(a budget-aware schedule, as in Geiping & Goldstein's "Cramming", 2022). It follows the
clock, so two runs are not bit-identical; leave it off where that matters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("linear", "google", "constant")


class ScheduleError(ValueError):
    """An unknown schedule name or step counts that cannot work; names the setting."""


def schedule_factor(name: str, warmup_steps: int, total_steps: int,
                    clock: Callable[[], float] | None = None) -> Callable[[int], float]:
    """The multiplier ``f(step)`` of schedule ``name`` (see the module docstring)."""
    _check(name, warmup_steps, total_steps)
    warmup, total = int(warmup_steps), int(total_steps)

    def left(by_steps: float) -> float:  # share of the decay still to go
        return by_steps if clock is None else min(by_steps, 1.0 - min(1.0, clock()))

    def warm(step: int) -> float | None:
        return step / warmup if step < warmup else None

    def linear(step: int) -> float:
        w = warm(step)
        return w if w is not None else max(0.0, left((total - step) / max(1, total - warmup)))

    def google(step: int) -> float:
        w = warm(step)
        return w if w is not None else max(0.0, left(1.0 - min(step, total) / total))

    def constant(step: int) -> float:
        w = warm(step)
        return w if w is not None else 1.0

    return {"linear": linear, "google": google, "constant": constant}[name]


def build_schedule(optimizer: torch.optim.Optimizer, name: str = "linear",
                   warmup_steps: int = 0, total_steps: int = 1,
                   clock: Callable[[], float] | None = None) -> LambdaLR:
    """A ``LambdaLR`` scaling every group's ``lr`` by ``schedule_factor(name, ...)``.

    The factor is a plain function, so ``state_dict()`` holds only numbers (it loads
    with ``torch.load(weights_only=True)``); rebuild with the same arguments on resume.
    """
    return LambdaLR(optimizer, schedule_factor(name, warmup_steps, total_steps, clock))


def _check(name: str, warmup_steps: int, total_steps: int) -> None:
    if name not in SCHEDULES:
        raise ScheduleError(f"schedule {name!r} is unknown; choose one of "
                            f"{', '.join(SCHEDULES)}")
    if int(total_steps) < 1:
        raise ScheduleError(f"total_steps must be >= 1, got {total_steps}")
    if int(warmup_steps) < 0:
        raise ScheduleError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if int(warmup_steps) > int(total_steps):
        raise ScheduleError(f"warmup_steps ({warmup_steps}) exceeds total_steps "
                            f"({total_steps}); lower --warmup-steps or raise --max-steps")
