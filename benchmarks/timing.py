"""Timing, cost analysis and device description for the benchmarks.

Every variant of one case is compiled first, then timed in interleaved rounds
(each round runs every variant once, in a rotating order), so the variants share
whatever load the machine has at that moment. A variant's ratio to the baseline is
the median over rounds of the per-round ratio; times are medians over rounds.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Variant:
    """One compiled function and its arguments: ``fn(*args)`` is what gets timed."""

    name: str
    fn: Callable
    args: tuple

    def __call__(self):
        return jax.block_until_ready(self.fn(*self.args))


@dataclasses.dataclass(frozen=True)
class Timing:
    """Medians over rounds: ``seconds[name]`` and ``ratio[name]`` (to the baseline)."""

    seconds: dict[str, float]
    ratio: dict[str, float]
    rounds: int


def time_variants(
    variants: Sequence[Variant], baseline: str, *, rounds: int, warmup: int = 1
) -> Timing:
    """Time compiled variants in interleaved rounds; ratios are to ``baseline``."""
    names = [v.name for v in variants]
    if baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not among the variants {names}")
    for v in variants:
        for _ in range(warmup + 1):  # the first call compiles
            v()
    times = {name: [] for name in names}
    for r in range(rounds):
        for i in range(len(variants)):
            v = variants[(i + r) % len(variants)]
            start = time.perf_counter()
            v()
            times[v.name].append(time.perf_counter() - start)
    base = np.asarray(times[baseline])
    return Timing(
        seconds={name: float(np.median(t)) for name, t in times.items()},
        ratio={name: float(np.median(np.asarray(t) / base)) for name, t in times.items()},
        rounds=rounds,
    )


def flops(fn: Callable, *args) -> float | None:
    """FLOPs of ``jax.jit(fn)(*args)`` from XLA's cost analysis (None if unavailable)."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


def device_line() -> str:
    """``"<accelerator or CPU model>, <cores> cores, jax <version>"``."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        name = _cpu_model()
        cores = _cpu_count()
        return f"CPU {name}, {cores} cores, jax {jax.__version__}"
    return f"{device.platform.upper()} {device.device_kind}, jax {jax.__version__}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
