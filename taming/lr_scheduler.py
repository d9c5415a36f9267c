"""Schedules named by the original configs (`taming.lr_scheduler.*`). They are plain callables
`step -> multiplier/value`: GumbelVQ calls one for its temperature, LambdaLR wraps one for learning rates."""
from __future__ import annotations

import math
from typing import Sequence


class LambdaWarmUpCosineScheduler:
    """Linear warm-up from lr_start to lr_max over warm_up_steps, then cosine decay to lr_min,
    reached at max_decay_steps and held after."""

    def __init__(self, warm_up_steps: int, lr_min: float, lr_max: float, lr_start: float,
                 max_decay_steps: int, verbosity_interval: int = 0) -> None:
        if max_decay_steps <= warm_up_steps:
            raise ValueError(f"LambdaWarmUpCosineScheduler: max_decay_steps ({max_decay_steps}) must exceed "
                             f"warm_up_steps ({warm_up_steps})")
        self.lr_warm_up_steps = warm_up_steps
        self.lr_start, self.lr_min, self.lr_max = lr_start, lr_min, lr_max
        self.lr_max_decay_steps = max_decay_steps
        self.verbosity_interval = verbosity_interval
        self.last_lr = 0.0

    def schedule(self, n: int) -> float:
        if self.verbosity_interval > 0 and n % self.verbosity_interval == 0:
            print(f"current step: {n}, recent lr-multiplier: {self.last_lr}")
        if n < self.lr_warm_up_steps:
            lr = (self.lr_max - self.lr_start) / self.lr_warm_up_steps * n + self.lr_start
        else:
            t = min((n - self.lr_warm_up_steps) / (self.lr_max_decay_steps - self.lr_warm_up_steps), 1.0)
            lr = self.lr_min + 0.5 * (self.lr_max - self.lr_min) * (1 + math.cos(t * math.pi))
        self.last_lr = lr
        return lr

    def __call__(self, n: int) -> float:
        return self.schedule(n)


class LambdaLinearScheduler:
    """Repeating cycles (latent-diffusion's signature): per cycle i, linear warm-up from f_start[i] to
    f_max[i] over warm_up_steps[i], then linear decay towards f_min[i] at the end of cycle_lengths[i]."""

    def __init__(self, warm_up_steps: Sequence[int], f_min: Sequence[float], f_max: Sequence[float],
                 f_start: Sequence[float], cycle_lengths: Sequence[int], verbosity_interval: int = 0) -> None:
        lists = dict(warm_up_steps=warm_up_steps, f_min=f_min, f_max=f_max, f_start=f_start)
        for name, v in lists.items():
            if len(v) != len(cycle_lengths):
                raise ValueError(f"LambdaLinearScheduler: {name} has {len(v)} entries, cycle_lengths "
                                 f"{len(cycle_lengths)}")
        self.lr_warm_up_steps = list(warm_up_steps)
        self.f_start, self.f_min, self.f_max = list(f_start), list(f_min), list(f_max)
        self.cycle_lengths = list(cycle_lengths)
        self.cum_cycles = [0]
        for c in self.cycle_lengths:
            self.cum_cycles.append(self.cum_cycles[-1] + c)
        self.verbosity_interval = verbosity_interval
        self.last_f = 0.0

    def find_in_interval(self, n: int) -> int:
        for i, end in enumerate(self.cum_cycles[1:]):
            if n <= end:
                return i
        return len(self.cycle_lengths) - 1  # past the last cycle: stay in it

    def schedule(self, n: int) -> float:
        cycle = self.find_in_interval(n)
        n = n - self.cum_cycles[cycle]
        if self.verbosity_interval > 0 and n % self.verbosity_interval == 0:
            print(f"current step: {n}, recent lr-multiplier: {self.last_f}, current cycle {cycle}")
        if n < self.lr_warm_up_steps[cycle]:
            f = (self.f_max[cycle] - self.f_start[cycle]) / self.lr_warm_up_steps[cycle] * n + self.f_start[cycle]
        else:
            length = self.cycle_lengths[cycle]
            f = self.f_min[cycle] + (self.f_max[cycle] - self.f_min[cycle]) * max(length - n, 0) / length
        self.last_f = f
        return f

    def __call__(self, n: int) -> float:
        return self.schedule(n)
