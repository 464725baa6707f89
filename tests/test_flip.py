"""flip_average: the two-pass formula, in one stacked call or two, and a no-op on chiral layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from chiral_jax import ChiralLinear, assert_equivariant, flip_average
from chiral_jax.skeletons import COCO_17, H36M_17

L_IN = H36M_17.layout(2)  # [B, 17, 2] 2D poses
L_OUT = COCO_17.layout(3)  # [B, 17, 3]: another skeleton, another joint order


@pytest.fixture(scope="module")
def x():
    return jnp.asarray(np.random.default_rng(0).normal(size=(6, 17, 2)), jnp.float32)


def _plain(x, scale=1.0):
    """A fixed dense map, not equivariant: ``[B, 17, 2] -> [B, 17, 3]``."""
    w = jnp.sin(jnp.arange(34.0 * 51.0)).reshape(34, 51)
    return scale * jnp.tanh(x.reshape(x.shape[0], -1) @ w).reshape(-1, 17, 3)


@pytest.mark.parametrize("stacked", [True, False])
def test_flip_average_is_the_two_pass_formula(x, stacked):
    expected = (_plain(x) + L_OUT.transform(_plain(L_IN.transform(x)))) / 2
    got = flip_average(_plain, L_IN, L_OUT, stacked=stacked)(x)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert float(jnp.max(jnp.abs(got - _plain(x)))) > 1e-2  # the plain map is changed
    assert_equivariant(flip_average(_plain, L_IN, L_OUT, stacked=stacked), L_IN, L_OUT, x)


def test_flip_average_passes_other_arguments_through(x):
    def fn(scale, poses, *, shift):
        return _plain(poses, scale) + shift

    expected = (fn(2.0, x, shift=0.5) + L_OUT.transform(fn(2.0, L_IN.transform(x), shift=0.5))) / 2
    got = flip_average(fn, L_IN, L_OUT, argnum=1)(2.0, x, shift=0.5)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_flip_average_of_a_chiral_layer_is_the_layer(x):
    layer = ChiralLinear(L_IN, L_OUT, rngs=nnx.Rngs(0))

    def fn(poses):
        return layer(poses.reshape(poses.shape[0], -1)).reshape(-1, 17, 3)

    @jax.jit
    def run(x):
        return fn(x), [flip_average(fn, L_IN, L_OUT, stacked=s)(x) for s in (True, False)]

    y, averaged = run(x)
    assert float(jnp.max(jnp.abs(y))) > 0.5
    # Equal up to float32 rounding of the two products (|y| is of order 1).
    for got in averaged:
        np.testing.assert_allclose(got, y, rtol=0, atol=1e-5)
