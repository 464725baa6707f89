"""The chiral-module interface: every module's even/odd call is its joint-basis call,
containers chain layouts, exports match, and tied layers store one packed vector."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layouts import random_layout
from _numeric import assert_trees_close, normal
from flax import nnx

from chiral_jax import (
    ChiralActivation,
    ChiralBatchNorm,
    ChiralConv1d,
    ChiralDropout,
    ChiralInvariant,
    ChiralLayout,
    ChiralLinear,
    ChiralModule,
    ChiralParam,
    ChiralSequential,
    EvenOdd,
    assert_equivariant,
)
from chiral_jax.skeletons import H36M_17

# Random layouts (any joint and dim order) and a paper-style canonical hidden layout.
HIDDEN = [
    random_layout(np.random.default_rng(11), max_joints=9, max_dims=5),
    ChiralLayout.hidden(pairs=3, centre=2, dims=6, negated=2),
]


def _modules(layout_in: ChiralLayout, hidden: ChiralLayout) -> list[ChiralModule]:
    rngs = nnx.Rngs(0)
    return [
        ChiralLinear(layout_in, hidden, rngs=rngs),
        ChiralBatchNorm(hidden, rngs=rngs),
        ChiralActivation("softsign"),
        ChiralDropout(0.3, rngs=rngs),
        ChiralLinear(hidden, hidden, impl="even_odd", use_bias=False, rngs=rngs),
        ChiralInvariant(hidden, 5, rngs=rngs),
    ]


# Training mode (batch statistics, dropout masks) by default; evaluation mode, which
# shares every path but the running statistics, in the slow stage.
@pytest.mark.parametrize("hidden", HIDDEN, ids=str)
@pytest.mark.parametrize(
    "train", [pytest.param(False, marks=pytest.mark.slow), True], ids=["eval", "train"]
)
def test_every_module_computes_the_same_in_both_bases(hidden, train):
    """``m.even_odd(z).to_joint() == m(x)`` per module and for the whole sequence, with
    batch statistics (train) and running ones (eval), 1e-5 relative (fp32)."""
    layout_in = H36M_17.layout(2)
    x = normal(0, (16, layout_in.size))
    model = ChiralSequential(*_modules(layout_in, hidden))
    model.train() if train else model.eval()
    model.set_attributes(deterministic=True)  # dropout off: masks differ between bases
    joint, even_odd = nnx.clone(model), nnx.clone(model)
    y = joint(x)
    y_even_odd = even_odd.even_odd(EvenOdd.from_joint(x, layout_in)).to_joint()
    assert_trees_close(y, y_even_odd)
    # The running averages are updated alike.
    assert_trees_close(nnx.state(joint, nnx.BatchStat), nnx.state(even_odd, nnx.BatchStat))
    assert model.layout_in == layout_in and model.layout_out == ChiralLayout.invariant(5)


def test_a_sequence_is_equivariant_under_jit_vmap_and_grad_and_exports_to_plain():
    layout_in, hidden = H36M_17.layout(2), HIDDEN[1]
    model = ChiralSequential(
        *_modules(layout_in, hidden)[:-1], ChiralLinear(hidden, H36M_17.layout(3), rngs=nnx.Rngs(1))
    )
    model.eval()
    graphdef, state = nnx.split(model)
    x = normal(1, (4, 3, layout_in.size))

    def joint(x):
        return nnx.merge(graphdef, state)(x)

    def even_odd(x):
        return nnx.merge(graphdef, state).even_odd(EvenOdd.from_joint(x, layout_in)).to_joint()

    for f in (joint, even_odd):
        assert_equivariant(jax.jit(f), layout_in, H36M_17.layout(3), x)
        assert_equivariant(jax.jit(jax.vmap(f)), layout_in, H36M_17.layout(3), x)
        # An invariant loss has an equivariant input gradient.
        grad = jax.grad(lambda x, f=f: jnp.sum(jnp.sin(f(x)) * f(x)))
        assert_equivariant(jax.jit(grad), layout_in, layout_in, x)
    assert_trees_close(model.to_plain()(x), joint(x))


def test_sequences_check_their_layouts():
    a, b = HIDDEN
    with pytest.raises(ValueError, match="expects input layout"):
        ChiralSequential(ChiralLinear(a, a, rngs=nnx.Rngs(0)), ChiralLinear(b, b, rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match="is not a chiral module"):
        ChiralSequential(ChiralLinear(a, a, rngs=nnx.Rngs(0)), nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
    z = EvenOdd.from_joint(normal(2, (2, a.size)), a)
    with pytest.raises(ValueError, match="input layout"):
        ChiralConv1d(b, b, 1, rngs=nnx.Rngs(0)).even_odd(z)


def test_dropout_in_the_even_odd_form_drops_joint_basis_channels():
    layout = HIDDEN[1]
    drop = ChiralDropout(0.5, rngs=nnx.Rngs(3))
    x = normal(4, (64, layout.size)) + 3.0
    y = drop.even_odd(EvenOdd.from_joint(x, layout)).to_joint()
    zero = float(jnp.mean(jnp.abs(y) < 1e-6))
    assert 0.4 < zero < 0.6, zero
    kept = jnp.abs(y) > 1e-6
    assert_trees_close(jnp.where(kept, y, 0), jnp.where(kept, 2 * x, 0))
    drop.eval()
    assert_trees_close(drop.even_odd(EvenOdd.from_joint(x, layout)).to_joint(), x)


@pytest.mark.parametrize("hidden", HIDDEN, ids=str)
def test_tied_layers_store_one_packed_vector_of_free_blocks(hidden):
    """One ``ChiralParam`` per kernel and bias, as long as the free blocks together; the
    named blocks read back from it, and the assembled kernel is the block assembly."""
    conv = ChiralConv1d(H36M_17.layout(2), hidden, 3, rngs=nnx.Rngs(0))
    leaves = jax.tree.leaves(nnx.state(conv, ChiralParam))
    assert len(leaves) == 2
    assert sum(leaf.size for leaf in leaves) == conv.num_free_params
    params = conv.free_params()
    kernel, bias = conv.dense_kernel()
    ref_kernel, ref_bias = conv.generator.assemble(params)
    np.testing.assert_array_equal(kernel, ref_kernel)
    np.testing.assert_array_equal(bias, ref_bias)
    bn = ChiralBatchNorm(hidden, rngs=nnx.Rngs(0))
    assert len(jax.tree.leaves(nnx.state(bn, ChiralParam))) == 2
