"""Timing several steps against each other on a shared machine: interleaved rounds, per-round ratios.

A shared box's speed drifts by 2x over minutes (its neighbours come and go). Timing one step's N runs and then
the other's puts that drift into their ratio: `benchmarks/vs_torch.py` did so once, and PyTorch's DMENet step
then took anywhere from 3.2 to 6.1 s over one evening. Here every round gives each step a turn, in an order
rotated each round; the ratio of two steps is taken within each round, where both met the same machine, and
its median and spread are reported.

A turn is `settle` untimed calls, then one timed call. Steps that alternate one call at a time disturb each
other: on this project's CPU, a JAX step right after a PyTorch step spent 5.6-6.7 s in the kernel instead of
0.6 s (its huge pages had to be found again in memory that PyTorch's small pages had just fragmented), which
made DMENet's B step 10.7-11.3 s instead of 7.7 s. One untimed call puts each step back in the steady state
that a training loop runs in.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def interleaved(
    steps: dict[str, Callable[[], object]],
    rounds: int,
    *,
    warmup: int = 2,
    settle: int = 0,
    wait: Callable[[object], object] = lambda out: out,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """name -> the seconds of each of `rounds` timed calls of ``steps[name]()``.

    `warmup` untimed rounds come first. Round r gives the steps their turns in their given order rotated by r,
    so that no step always goes first or right after the same other step; a turn is `settle` untimed calls and
    then the timed one. `wait(out)` blocks until a call's result exists (asynchronous dispatch); it is timed
    with the call."""
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: need at least 1")
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            wait(steps[name]())
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            for _ in range(settle):
                wait(steps[name]())
            t0 = clock()
            wait(steps[name]())
            times[name].append(clock() - t0)
    return times


def ratio(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    """(median, min, max) of the per-round ratios numerator[r] / denominator[r]."""
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(f"need two equally long, non-empty series, got {len(numerator)} and {len(denominator)}")
    r = np.asarray(numerator, float) / np.asarray(denominator, float)
    return float(np.median(r)), float(r.min()), float(r.max())
