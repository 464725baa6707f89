"""Layers in a feature space (common.layers): chiral for a layout, plain Flax for an int."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from chiral_jax import (
    ChiralBatchNorm,
    ChiralConv1d,
    ChiralLayout,
    ChiralLinear,
    ChiralLSTMCell,
    assert_equivariant,
)
from chiral_jax.skeletons import H36M_17
from chiral_tasks.common import layers

IN = H36M_17.layout(2)  # 34 features
OUT = H36M_17.layout(3)  # 51 features


def inputs(*shape):
    return jax.random.normal(jax.random.key(0), shape)


@pytest.mark.parametrize(
    "padding, frames_out", [("VALID", 8), ("SAME", 10), (1, 10), ((2, 0), 10), ("CAUSAL", 10)]
)
def test_conv_is_chiral_on_a_layout_and_plain_on_an_int(padding, frames_out):
    x = inputs(2, 10, IN.size)
    chiral = layers.conv(IN, OUT, 3, padding=padding, rngs=nnx.Rngs(0))
    plain = layers.conv(IN.size, OUT.size, 3, padding=padding, rngs=nnx.Rngs(0))
    assert type(chiral) is ChiralConv1d and type(plain) is nnx.Conv
    assert chiral(x).shape == plain(x).shape == (2, frames_out, OUT.size)
    assert_equivariant(chiral, IN, OUT, x)


def test_conv_strides_and_bias_alike():
    x = inputs(2, 10, IN.size)
    chiral = layers.conv(IN, OUT, 3, strides=2, padding=1, use_bias=False, rngs=nnx.Rngs(0))
    plain = layers.conv(IN.size, 8, 3, strides=2, padding=1, use_bias=False, rngs=nnx.Rngs(0))
    assert chiral(x).shape[:2] == plain(x).shape[:2] == (2, 5)
    assert chiral.free_bias is None and plain.bias is None


def test_a_chiral_layer_onto_an_int_is_the_invariance_layer():
    x = inputs(4, 6, IN.size)
    conv = layers.conv(IN, 8, 3, rngs=nnx.Rngs(0))
    linear = layers.linear(IN, 8, rngs=nnx.Rngs(0))
    cell = layers.lstm_cell(IN, 8, rngs=nnx.Rngs(0))
    invariant = ChiralLayout.invariant(8)
    assert conv.layout_out == linear.layout_out == cell.layout_hidden == invariant
    assert conv(x).shape == (4, 4, 8) and linear(x).shape == (4, 6, 8)
    assert_equivariant(conv, IN, None, x)
    assert_equivariant(linear, IN, None, x)
    zeros = jnp.zeros((4, 8))
    assert_equivariant(lambda v: cell((zeros, zeros), v)[1], IN, None, x[:, 0])


def test_a_plain_layer_cannot_write_a_layout():
    with pytest.raises(TypeError, match="cannot write the chiral layout"):
        layers.conv(IN.size, OUT, 1, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="cannot write the chiral layout"):
        layers.linear(IN.size, OUT, rngs=nnx.Rngs(0))


def test_norm():
    x = inputs(8, IN.size)
    chiral = layers.norm(IN, momentum=0.9, rngs=nnx.Rngs(0))
    plain = layers.norm(IN.size, momentum=0.9, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert type(chiral) is ChiralBatchNorm and type(plain) is nnx.BatchNorm
    assert chiral.momentum == plain.momentum == 0.9
    assert chiral(x).shape == plain(x).shape == x.shape
    assert plain(x).dtype == jnp.bfloat16


def test_linear():
    x = inputs(5, IN.size)
    chiral = layers.linear(IN, OUT, mode="paper", rngs=nnx.Rngs(0))
    plain = layers.linear(IN.size, OUT.size, use_bias=False, rngs=nnx.Rngs(0))
    assert type(chiral) is ChiralLinear and type(plain) is nnx.Linear
    assert chiral.mode == "paper" and plain.bias is None
    assert chiral(x).shape == plain(x).shape == (5, OUT.size)
    assert_equivariant(chiral, IN, OUT, x)


def test_lstm_cell():
    hidden = H36M_17.hidden_layout(34, 0.5)
    x = inputs(3, IN.size)
    chiral = layers.lstm_cell(IN, hidden, rngs=nnx.Rngs(0))
    plain = layers.lstm_cell(IN.size, hidden.size, rngs=nnx.Rngs(0))
    assert type(chiral) is ChiralLSTMCell and type(plain) is nnx.OptimizedLSTMCell
    zeros = jnp.zeros((3, hidden.size))
    for cell in (chiral, plain):
        (c, h), y = cell((zeros, zeros), x)
        assert c.shape == h.shape == y.shape == (3, hidden.size)
    assert_equivariant(lambda v: chiral((zeros, zeros), v)[1], IN, hidden, x)
