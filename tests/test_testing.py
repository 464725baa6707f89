import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from chiral_jax import ChiralLinear, assert_equivariant
from chiral_jax.skeletons import H36M_17

LI, LO = H36M_17.layout(2), H36M_17.layout(3)


def test_passes_for_a_chiral_layer_and_reports_a_plain_one():
    x = jax.random.normal(jax.random.key(0), (4, LI.size))
    assert_equivariant(ChiralLinear(LI, LO, rngs=nnx.Rngs(0)), LI, LO, x)
    plain = nnx.Linear(LI.size, LO.size, rngs=nnx.Rngs(0))
    with pytest.raises(AssertionError, match="not chirality equivariant"):
        assert_equivariant(plain, LI, LO, x)


def test_invariance_mode_and_tolerance():
    x = jax.random.normal(jax.random.key(0), (4, LI.size))
    assert_equivariant(lambda x: jnp.sum(jnp.square(x), -1, keepdims=True), LI, None, x)
    with pytest.raises(AssertionError, match="not chirality invariant"):
        assert_equivariant(lambda x: x[..., :1], LI, None, x)
    # A tiny violation passes a loose tolerance and fails a strict one.
    def nearly(x):
        return x + 1e-4 * x[..., :1]

    assert_equivariant(nearly, LI, LI, x, rtol=1e-2)
    with pytest.raises(AssertionError):
        assert_equivariant(nearly, LI, LI, x, rtol=1e-6)


def test_accepts_joint_shaped_inputs():
    x = jax.random.normal(jax.random.key(0), (4, 17, 2))

    def lift(x):
        return jnp.concatenate([x, jnp.linalg.norm(x, axis=-1, keepdims=True)], -1)

    assert_equivariant(lift, LI, LO, x)


def test_detects_nan_outputs():
    x = jax.random.normal(jax.random.key(0), (2, LI.size))
    with pytest.raises(AssertionError):
        assert_equivariant(lambda x: x * jnp.nan, LI, LI, x)
