"""Activations for chiral layers: odd ones for negated channels, any for the others.

A negated channel must stay negated after the nonlinearity, so ``f(-x) = -f(x)``.
ReLU, GELU, sigmoid and any even or shifted function break the contract on negated
channels. Channels that never change sign (the positive dims, and every channel after
an invariance layer) may use any of them: :data:`ACTIVATIONS` names both kinds.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def hardtanh(x: jax.Array) -> jax.Array:
    """``clip(x, -1, 1)``."""
    return jnp.clip(x, -1.0, 1.0)


ODD_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "softsign": jax.nn.soft_sign,
    "hardtanh": hardtanh,
    "identity": lambda x: x,
}

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    **ODD_ACTIVATIONS,
    "relu": jax.nn.relu,
    "leaky_relu": jax.nn.leaky_relu,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
}
"""Every activation by name: the odd ones and those for channels that keep their sign."""


def activation(fn: str | Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    """Resolve ``fn``, a name in :data:`ACTIVATIONS` or a callable (taken as it is).

    >>> activation("gelu") is jax.nn.gelu
    True
    """
    if callable(fn):
        return fn
    if fn not in ACTIVATIONS:
        raise ValueError(f"unknown activation {fn!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[fn]


_PROBE = np.concatenate([np.linspace(-6.0, 6.0, 121), [-1e3, -0.37, 0.37, 1e3]])


def odd_activation(fn: str | Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    """Resolve ``fn`` (a name in :data:`ODD_ACTIVATIONS` or a callable) and check it is odd.

    Raises ``ValueError`` naming the function and a point where ``f(-x) != -f(x)``.

    >>> odd_activation("tanh") is jnp.tanh
    True
    """
    if isinstance(fn, str):
        if fn not in ODD_ACTIVATIONS:
            raise ValueError(
                f"unknown activation {fn!r}; chiral layers accept the odd activations "
                f"{sorted(ODD_ACTIVATIONS)} or an odd callable"
            )
        return ODD_ACTIVATIONS[fn]
    if not callable(fn):
        raise TypeError(f"activation must be a name or a callable, got {fn!r}")
    with jax.ensure_compile_time_eval():  # also when a model is built under jit / eval_shape
        x = jnp.asarray(_PROBE, jnp.float32)
        plus, minus = np.asarray(fn(x)), np.asarray(fn(-x))
    bad = ~np.isclose(minus, -plus, rtol=1e-5, atol=1e-6)
    if bad.any():
        at = float(_PROBE[np.argmax(bad)])
        name = getattr(fn, "__name__", repr(fn))
        raise ValueError(
            f"activation {name} is not odd: f(-x) != -f(x) at x={at:g} "
            f"(f(x)={plus[np.argmax(bad)]:g}, f(-x)={minus[np.argmax(bad)]:g}); it would break "
            "chirality equivariance. Use tanh, softsign or hardtanh before the invariance layer."
        )
    return fn
