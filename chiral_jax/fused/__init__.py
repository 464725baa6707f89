"""Fused C++ CPU kernels for the even/odd basis: an opt-in accelerator.

The even/odd basis (:mod:`chiral_jax.even_odd`) is pure JAX and needs nothing from
here. On a CPU, its basis changes and odd activations can run a little faster (about
5-10 %) as fused C++ kernels, which XLA would otherwise do in several passes. They
are switched on for the whole process by one call::

    import chiral_jax.fused
    chiral_jax.fused.enable()     # builds on first use (a few seconds), then cached

and off again by :func:`disable`. Same numbers either way (to float32 rounding). The
switch acts when a function is traced: call it before the first ``jit`` of a model
(functions already compiled keep what they were traced with).
:func:`enable` raises a one-line ``RuntimeError`` naming the reason when the kernels
cannot be had: the default backend is not the CPU (they never run on GPU or TPU), or
there is no C++ compiler, or the build failed. A failed build is remembered in the
cache (see :mod:`chiral_jax.fused._build`) and not retried by later processes.
"""

from __future__ import annotations

import jax

from chiral_jax import even_odd
from chiral_jax.fused import _build, _primitives
from chiral_jax.fused._primitives import KINDS, merge, odd_pair_map, split

__all__ = ["KINDS", "disable", "enable", "enabled", "merge", "odd_pair_map", "split"]


def enable() -> None:
    """Use the fused CPU kernels for the even/odd basis from now on, in this process."""
    backend = jax.default_backend()
    if backend != "cpu":
        raise RuntimeError(
            f"the fused kernels are CPU kernels; the default backend is {backend} "
            "(its XLA ops need no help)"
        )
    library, reason = _build.load()
    if library is None:
        raise RuntimeError(f"the fused CPU kernels are unavailable: {reason}")
    _primitives.register(library)
    even_odd.set_fused_ops(even_odd.FusedOps(split, merge, odd_pair_map, frozenset(KINDS)))


def disable() -> None:
    """Back to XLA ops only (the default)."""
    even_odd.set_fused_ops(None)


def enabled() -> bool:
    """Whether :func:`enable` is in effect."""
    return even_odd.fused_ops() is not None
