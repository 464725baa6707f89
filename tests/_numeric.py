"""Seeded inputs and a scale-aware tree comparison for the tests."""

import jax
import jax.numpy as jnp
import numpy as np

RTOL = 1e-5


def normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    """Standard normal float32 values from a seeded NumPy generator."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def assert_trees_close(ref, got, rtol: float = RTOL) -> None:
    """Leafwise ``max|got - ref| <= rtol * max|ref|`` (the tree's largest leaf if one is 0)."""
    leaves = [np.asarray(v) for v in jax.tree.leaves(ref)]
    overall = max((float(np.abs(v).max()) for v in leaves if v.size), default=0.0)
    assert overall > 0
    for r, g in zip(leaves, jax.tree.leaves(got), strict=True):
        assert r.shape == g.shape
        if r.size:
            scale = float(np.abs(r).max()) or overall
            np.testing.assert_allclose(g, r, rtol=0, atol=rtol * scale)
