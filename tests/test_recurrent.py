"""Chiral LSTM / GRU: equivariance over long sequences and gradients at every gate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layouts import random_layout
from flax import nnx

from chiral_jax import ChiralGRUCell, ChiralLayout, ChiralLSTMCell, ChiralRNN, assert_equivariant
from chiral_jax.skeletons import PENN_ACTION_13

CELLS = {
    "lstm": (ChiralLSTMCell, ("input", "forget", "output")),
    "gru": (ChiralGRUCell, ("reset", "update")),
}


def _sequence(layout, batch=3, steps=24, seed=0):
    return jax.random.normal(jax.random.key(seed), (batch, steps, layout.size))


# Paper mode's cells are checked step by step by default (random layouts, seed 2), and
# the LSTM over many steps by the forecaster's 16-step test; the long runs of both are
# in the slow stage.
@pytest.mark.parametrize("mode", [pytest.param("paper", marks=pytest.mark.slow), "complete"])
@pytest.mark.parametrize("cell", [pytest.param("lstm", marks=pytest.mark.slow), "gru"])
def test_stacked_rnn_is_equivariant_over_many_steps(cell, mode):
    li = PENN_ACTION_13.layout(2)
    hidden = [li.with_dims(8, 0.5), li.with_dims(6, 0.5)]
    rnn = ChiralRNN(li, hidden, cell=cell, mode=mode, dropout=0.3, rngs=nnx.Rngs(0))
    rnn.eval()
    x = _sequence(li, steps=24)

    def outputs(x):
        y, carries = rnn(x)
        return y

    assert_equivariant(jax.jit(outputs), li, hidden[-1], x)
    assert_equivariant(jax.jit(jax.vmap(outputs)), li, hidden[-1], x[None])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("seed", range(3))
def test_cells_on_random_layouts_carry_equivariance(cell, seed):
    rng = np.random.default_rng(seed)
    li, lh = random_layout(rng, max_joints=8), random_layout(rng, max_joints=8)
    cls, _ = CELLS[cell]
    c = cls(li, lh, mode="paper" if seed == 2 else "complete", rngs=nnx.Rngs(seed))
    x = _sequence(li, batch=2, steps=1)[:, 0]
    carry = jax.tree.map(
        lambda z: jax.random.normal(jax.random.key(seed + 1), z.shape), c.initialize_carry((2,))
    )

    @jax.jit
    def step(x):  # the carry is mirrored together with the input
        return c(carry, x)[1]

    @jax.jit
    def mirrored_step(x):
        return c(jax.tree.map(lh.transform, carry), li.transform(x))[1]

    scale = float(jnp.abs(step(x)).max())
    expected = lh.transform(step(x))
    np.testing.assert_allclose(mirrored_step(x), expected, rtol=1e-5, atol=1e-5 * scale)


def test_step_matches_the_scanned_sequence():
    li = PENN_ACTION_13.layout(2)
    rnn = ChiralRNN(li, [li.with_dims(4, 0.5)] * 2, rngs=nnx.Rngs(0))
    x = _sequence(li, steps=6)
    y, finals = jax.jit(rnn)(x)
    carries = rnn.initialize_carry((3,))
    step = jax.jit(rnn.step)
    for t in range(6):
        carries, y_t = step(carries, x[:, t])
        np.testing.assert_allclose(y_t, y[:, t], rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), carries, finals)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_reach_every_gate_after_many_steps(cell):
    """The original PyTorch cell returned its candidate, so its gates got zero gradient."""
    li = PENN_ACTION_13.layout(2)
    lh = li.with_dims(4, 0.5)
    rnn = ChiralRNN(li, [lh, lh], cell=cell, rngs=nnx.Rngs(0))
    x = _sequence(li, steps=25)
    target = jax.random.normal(jax.random.key(1), (3, lh.size))
    graphdef, params, rest = nnx.split(rnn, nnx.Param, ...)

    def loss(p):
        y, _ = nnx.merge(graphdef, p, rest)(x)
        return jnp.mean(jnp.square(y[:, -1] - target))

    grads = jax.jit(jax.grad(loss))(params)
    _, gate_names = CELLS[cell]
    n_gates = len(gate_names)
    for layer in range(2):
        g = grads["cells"][layer]
        for path in ("input_gates", "hidden_gates"):
            gates = getattr(rnn.cells[layer], path).generator
            blocks = gates.unpack(g[path]["free_kernel"][...])
            # Gate layouts stack the gates per joint: dims_out = n_gates * D, all unsigned ("lp").
            for k, name in enumerate(gate_names):
                norm = sum(
                    float(jnp.linalg.norm(b.reshape(b.shape[0], n_gates, lh.dims, -1)[:, k]))
                    for key, b in blocks.items()
                    if key.startswith("lp,") and b.size
                )
                assert norm > 1e-8, f"layer {layer} {path}: no gradient reaches the {name} gate"
        for path in ("input_candidate", "hidden_candidate"):
            norm = sum(float(jnp.linalg.norm(b)) for b in jax.tree.leaves(g[path]))
            assert norm > 1e-8, f"layer {layer}: no gradient reaches the {path}"


def test_cell_rejects_non_odd_activation_and_bad_input():
    li = PENN_ACTION_13.layout(2)
    with pytest.raises(ValueError, match="is not odd"):
        ChiralLSTMCell(li, li, activation=jax.nn.relu, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="cell must be one of"):
        ChiralRNN(li, [li], cell="rnn", rngs=nnx.Rngs(0))
    rnn = ChiralRNN(li, [li], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="\\[batch, time, channels\\]"):
        rnn(jnp.zeros((5, li.size)))
    with pytest.raises(ValueError, match="ChiralLinear input"):
        rnn(jnp.zeros((2, 5, li.size + 1)))


def test_gate_layout_has_no_negated_dims():
    hidden = ChiralLayout.hidden(2, 1, 4, 2)
    cell = ChiralLSTMCell(hidden, hidden, rngs=nnx.Rngs(0))
    assert cell.input_gates.layout_out.negated == ()
    assert cell.input_gates.layout_out.dims == 3 * hidden.dims
    assert cell.input_candidate.layout_out == hidden
