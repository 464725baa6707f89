"""Equivariance of every layer: both modes, both group elements, jit / vmap / grad, fp32 / x64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layouts import layout_pairs, random_layout
from flax import nnx

from chiral_jax import (
    ChiralActivation,
    ChiralBatchNorm,
    ChiralConv1d,
    ChiralInvariant,
    ChiralLayout,
    ChiralLinear,
    ChiralParam,
    assert_equivariant,
)
from chiral_jax.skeletons import H36M_17

PAIRS = layout_pairs(7, 6)
MODES = ["paper", "complete"]
RTOL32 = 1e-5
RTOL64 = 1e-12


def _inputs(layout: ChiralLayout, shape, seed=0, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(seed), (*shape, layout.size), dtype)


def _param_grads_match(model, x, y, layout_in, layout_out, rtol):
    """Gradients of ||f(x) - y||^2 w.r.t. the free blocks equal those at (T x, T y)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p, x, y):
        out = nnx.merge(graphdef, p, rest)(x)
        return jnp.mean(jnp.square(out - y))

    g = jax.jit(jax.grad(loss))
    a, b = g(params, x, y), g(params, layout_in.transform(x), layout_out.transform(y))
    scale = max(float(jnp.max(jnp.abs(v))) for v in jax.tree.leaves(a) if v.size)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=rtol * scale), a, b)
    assert scale > 0


def _check_all(fn, layout_in, layout_out, x, rtol, eager=False):
    """jit, vmap over a leading axis, the input-gradient field (and the eager call)."""
    if eager:
        assert_equivariant(fn, layout_in, layout_out, x, rtol=rtol)
    assert_equivariant(jax.jit(fn), layout_in, layout_out, x, rtol=rtol)
    assert_equivariant(jax.jit(jax.vmap(fn)), layout_in, layout_out, x[None], rtol=rtol)

    def field(x):
        # grad of an invariant function (0.5 |f(x)|^2) is equivariant with T_in.
        return jax.grad(lambda x: 0.5 * jnp.sum(jnp.square(fn(x))))(x)

    assert_equivariant(jax.jit(field), layout_in, layout_in, x, rtol=rtol * 10)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("li", "lo"), PAIRS)
def test_linear(li, lo, mode):
    layer = ChiralLinear(li, lo, mode=mode, rngs=nnx.Rngs(0))
    x = _inputs(li, (4,))
    _check_all(layer, li, lo, x, RTOL32, eager=True)
    _param_grads_match(layer, x, _inputs(lo, (4,), 1), li, lo, RTOL32)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("li", "lo"), PAIRS[:3])
def test_linear_x64(li, lo, mode):
    with jax.enable_x64(True):
        layer = ChiralLinear(li, lo, mode=mode, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        x = _inputs(li, (4,), dtype=jnp.float64)
        assert layer(x).dtype == jnp.float64
        _check_all(layer, li, lo, x, RTOL64)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("kernel_size", "strides", "dilation", "padding"),
    [(3, 1, 1, "VALID"), (3, 1, 2, "SAME"), (2, 2, 1, "CAUSAL"), (3, 1, 3, (2, 1)), (1, 1, 1, 0)],
)
def test_conv1d(kernel_size, strides, dilation, padding, mode):
    li, lo = PAIRS[(kernel_size + dilation) % len(PAIRS)]
    layer = ChiralConv1d(
        li, lo, kernel_size, strides=strides, dilation=dilation, padding=padding, mode=mode,
        rngs=nnx.Rngs(1),
    )
    x = _inputs(li, (2, 11))
    _check_all(layer, li, lo, x, RTOL32)
    y = layer(x)
    _param_grads_match(layer, x, jax.random.normal(jax.random.key(3), y.shape), li, lo, RTOL32)


def test_conv1d_x64_and_unbatched_leading_axes():
    li, lo = PAIRS[0]
    with jax.enable_x64(True):
        layer = ChiralConv1d(li, lo, 3, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        x = _inputs(li, (2, 3, 9), dtype=jnp.float64)
        assert layer(x).shape == (2, 3, 7, lo.size)
        _check_all(layer, li, lo, x, RTOL64)


def test_causal_conv_sees_only_the_past():
    li, lo = PAIRS[1]
    layer = ChiralConv1d(li, lo, 3, dilation=2, padding="CAUSAL", rngs=nnx.Rngs(0))
    x = _inputs(li, (1, 12))
    y = layer(x)
    assert y.shape == (1, 12, lo.size)
    y2 = layer(x.at[:, 8:].add(5.0))
    np.testing.assert_array_equal(y[:, :8], y2[:, :8])
    assert not np.allclose(y[:, 8:], y2[:, 8:])


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_batch_norm(seed, affine, train):
    layout = random_layout(np.random.default_rng(seed))
    bn = ChiralBatchNorm(
        layout, use_scale=affine, use_bias=affine, momentum=0.5, rngs=nnx.Rngs(seed)
    )
    if affine:  # non-trivial affine parameters
        params = nnx.state(bn, nnx.Param)
        nnx.update(
            bn, jax.tree.map(lambda v: jax.random.normal(jax.random.key(seed), v.shape), params)
        )
    x = 3.0 * _inputs(layout, (16,), seed) + 1.0
    bn(x)  # non-trivial running statistics
    if not train:
        bn.eval()
    graphdef, state = nnx.split(bn)

    def fn(x):  # pure: a fresh copy per call, so running averages don't leak between calls
        return nnx.merge(graphdef, jax.tree.map(jnp.asarray, state))(x)

    _check_all(fn, layout, layout, x, RTOL32 * 10)


def test_batch_norm_statistics_are_those_of_batch_and_mirror():
    layout = H36M_17.layout(3)
    bn = ChiralBatchNorm(layout, use_scale=False, use_bias=False, momentum=0.0, rngs=nnx.Rngs(0))
    x = _inputs(layout, (32,)) * 2.0 + 0.5
    bn(x)
    union = jnp.concatenate([x, layout.transform(x)])
    np.testing.assert_allclose(bn.mean[...], union.mean(0), atol=1e-5)
    np.testing.assert_allclose(bn.var[...], union.var(0), rtol=1e-4)


def test_batch_norm_is_pure_under_jit_with_split_state():
    layout = H36M_17.layout(2)
    bn = ChiralBatchNorm(layout, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(bn)

    @jax.jit
    def step(state, x):
        model = nnx.merge(graphdef, state)
        y = model(x)
        return nnx.state(model), y

    new_state, _ = step(state, _inputs(layout, (8,)) + 3.0)
    assert not np.allclose(new_state["mean"][...], 0.0)


@pytest.mark.parametrize("name", ["tanh", "softsign", "hardtanh"])
def test_odd_activations_are_equivariant(name):
    layout = random_layout(np.random.default_rng(5))
    act = ChiralActivation(name)
    _check_all(act, layout, layout, 2.0 * _inputs(layout, (5,)), RTOL32)


@pytest.mark.parametrize(
    "fn", [jax.nn.relu, jax.nn.sigmoid, jax.nn.gelu, lambda x: jnp.tanh(x) + 0.1, jnp.abs]
)
def test_non_odd_activations_are_rejected(fn):
    with pytest.raises(ValueError, match="is not odd"):
        ChiralActivation(fn)
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        ChiralActivation("relu")


def test_dropout_is_plain_in_training_and_identity_in_eval():
    layout = H36M_17.layout(2)
    drop = nnx.Dropout(0.5, rngs=nnx.Rngs(0))
    x = _inputs(layout, (8,))
    assert np.mean(np.asarray(drop(x)) == 0.0) > 0.3
    drop.eval()
    assert_equivariant(drop, layout, layout, x)


@pytest.mark.parametrize("mode", MODES)
def test_stack_conv_bn_tanh_conv(mode):
    li, lo = H36M_17.layout(2), H36M_17.layout(3)
    hidden = ChiralLayout.hidden(6, 5, 6, 1 / 3)
    rngs = nnx.Rngs(0)

    class Stack(nnx.Module):
        def __init__(self):
            self.conv1 = ChiralConv1d(li, hidden, 3, dilation=3, mode=mode, rngs=rngs)
            self.bn = ChiralBatchNorm(hidden, rngs=rngs)
            self.conv2 = ChiralConv1d(hidden, lo, 1, mode=mode, rngs=rngs)

        def __call__(self, x):
            return self.conv2(jnp.tanh(self.bn(self.conv1(x))))

    model = Stack()
    x = _inputs(li, (4, 27))
    for train in (True, False):
        model.train() if train else model.eval()
        graphdef, state = nnx.split(model)

        def fn(x, graphdef=graphdef, state=state):
            return nnx.merge(graphdef, jax.tree.map(jnp.asarray, state))(x)

        _check_all(fn, li, lo, x, RTOL32 * 10)


@pytest.mark.parametrize("mode", MODES)
def test_two_layer_net_ending_in_invariance_layer(mode):
    li = H36M_17.layout(2)
    hidden = ChiralLayout.hidden(6, 5, 4, 2)
    rngs = nnx.Rngs(0)
    first = ChiralLinear(li, hidden, mode=mode, rngs=rngs)
    head = ChiralInvariant(hidden, 10, mode=mode, rngs=rngs)

    def net(x):
        return jax.nn.relu(head(jnp.tanh(first(x))))  # any head after the invariance layer

    x = _inputs(li, (6,))
    assert_equivariant(net, li, None, x)
    np.testing.assert_allclose(net(li.transform(x)), net(x), rtol=1e-5, atol=1e-6)
    assert float(jnp.std(net(x))) > 0


def test_invariance_layer_sees_left_right_offsets_only_in_complete_mode():
    """The block the paper drops: an invariant of x_ln - x_rn (e.g. the wrists' x gap)."""
    layout = ChiralLayout(left=(0,), right=(1,), centre=(), dims=1, negated=(0,))
    x = jnp.array([[1.0, -1.0], [3.0, -3.0]])  # mirror-symmetric poses differing in the gap
    for mode, differs in (("paper", False), ("complete", True)):
        layer = ChiralInvariant(layout, 4, mode=mode, rngs=nnx.Rngs(0))
        y = layer(x)
        assert bool(jnp.any(jnp.abs(y[0] - y[1]) > 1e-3)) is differs


@pytest.mark.parametrize("mode", MODES)
def test_export_equals_tied_layers(mode):
    li, lo = PAIRS[2]
    lin = ChiralLinear(li, lo, mode=mode, rngs=nnx.Rngs(0))
    x = _inputs(li, (3,))
    np.testing.assert_allclose(lin.to_plain()(x), lin(x), rtol=1e-5, atol=1e-5)
    conv = ChiralConv1d(li, lo, 3, dilation=2, padding="CAUSAL", mode=mode, rngs=nnx.Rngs(0))
    xs = _inputs(li, (2, 9))
    np.testing.assert_allclose(conv.to_plain()(xs), conv(xs), rtol=1e-5, atol=1e-5)
    bn = ChiralBatchNorm(lo, rngs=nnx.Rngs(0))
    bn(conv(xs))
    bn.eval()
    np.testing.assert_allclose(bn.to_plain()(conv(xs)), bn(conv(xs)), rtol=1e-5, atol=1e-5)


def test_load_dense_chiralizes_a_plain_layer():
    li, lo = H36M_17.layout(2), H36M_17.layout(3)
    plain = nnx.Linear(li.size, lo.size, rngs=nnx.Rngs(0))
    plain.bias[...] = jax.random.normal(jax.random.key(1), (lo.size,))
    tied = ChiralLinear(li, lo, rngs=nnx.Rngs(1))
    tied.load_dense(plain.kernel[...], plain.bias[...])
    x = _inputs(li, (5,))
    assert_equivariant(tied, li, lo, x)
    # The projection equals the average of the plain layer and its mirror conjugate.
    expected = 0.5 * (plain(x) + lo.transform(plain(li.transform(x))))
    np.testing.assert_allclose(tied(x), expected, rtol=1e-5, atol=1e-5)


def test_free_blocks_are_about_half_a_plain_layer():
    hidden = ChiralLayout.hidden(6, 5, 60, 20)
    layer = ChiralLinear(hidden, hidden, use_bias=False, rngs=nnx.Rngs(0))
    n = sum(v.size for v in jax.tree.leaves(nnx.state(layer, ChiralParam)))
    assert n == layer.num_free_params == hidden.n_plus**2 + hidden.n_minus**2
    assert 0.5 <= n / hidden.size**2 < 0.52


def test_layer_init_statistics():
    li = ChiralLayout.hidden(4, 3, 8, 3)
    keys = jax.random.split(jax.random.key(0), 500)
    x = jax.random.normal(jax.random.key(1), (500, li.size))

    def out(key, x):
        return ChiralLinear(li, li, rngs=nnx.Rngs(key))(x)

    y = jax.jit(jax.vmap(out))(keys, x)
    np.testing.assert_allclose(jnp.mean(y, 0), 0.0, atol=0.15)
    np.testing.assert_allclose(jnp.std(y, 0), 1.0, atol=0.15)


def test_bad_shapes_name_the_problem():
    li, lo = H36M_17.layout(2), H36M_17.layout(3)
    with pytest.raises(ValueError, match="ChiralLinear input has last axis 33.*34 channels"):
        ChiralLinear(li, lo, rngs=nnx.Rngs(0))(jnp.zeros((2, 33)))
    with pytest.raises(ValueError, match="\\[\\*batch, time, channels\\]"):
        ChiralConv1d(li, lo, 3, rngs=nnx.Rngs(0))(jnp.zeros((34,)))
    with pytest.raises(ValueError, match="ChiralBatchNorm input"):
        ChiralBatchNorm(lo, rngs=nnx.Rngs(0))(jnp.zeros((2, 34)))
    with pytest.raises(ValueError, match="padding must be"):
        ChiralConv1d(li, lo, 3, padding="FULL", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="kernel_size, strides and dilation"):
        ChiralConv1d(li, lo, 0, rngs=nnx.Rngs(0))
