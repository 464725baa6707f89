"""The transformer's chiral layers: attention, layer norm, token embeddings and mixed
activations. Equivariance on random layouts (both group elements, jit / vmap / grad,
fp32 to 1e-5 and fp64 to 1e-12 relative), the plain twins' outputs, bad arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layouts import random_layout
from flax import nnx

from chiral_jax import (
    ChiralActivation,
    ChiralEmbedding,
    ChiralLayerNorm,
    ChiralLayout,
    ChiralMultiHeadAttention,
    EvenOdd,
    assert_equivariant,
)

RTOL32, RTOL64 = 1e-5, 1e-12
SEEDS = [0, pytest.param(1, marks=pytest.mark.slow)]


def _joints_and_token(seed: int, dims: int = 6) -> tuple[ChiralLayout, ChiralLayout]:
    """A random skeleton-like layout of ``dims`` per joint, and one token's layout (one
    centre joint with the same negated dims): joint tokens of that skeleton."""
    rng = np.random.default_rng(seed)
    joints = random_layout(rng, max_joints=9, dims=dims)
    while not joints.negated or len(joints.negated) == dims:  # both kinds of channel
        joints = random_layout(rng, max_joints=9, dims=dims)
    token = ChiralLayout(left=(), right=(), centre=(0,), dims=dims, negated=joints.negated)
    return joints, token


def _per_token(module, joints: ChiralLayout):
    """The module on joint tokens, as a map of the flattened ``[..., J * D]``."""

    def fn(x):
        tokens = x.reshape(*x.shape[:-1], joints.num_joints, joints.dims)
        return module(tokens).reshape(x.shape)

    return fn


def _randomise(module, seed: int):
    """Random values in every parameter (the initial offsets and embeddings are small)."""
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    keys = iter(jax.random.split(jax.random.key(seed), len(jax.tree.leaves(params))))
    params = jax.tree.map(lambda p: jax.random.normal(next(keys), p.shape, p.dtype), params)
    return nnx.merge(graphdef, params, rest)


def _check(fn, layout, x, rtol):
    """Equivariance eagerly, under jit, vmap, and of the input gradient of ``|f|^2``."""
    assert_equivariant(fn, layout, layout, x, rtol=rtol)
    assert_equivariant(jax.jit(fn), layout, layout, x, rtol=rtol)
    assert_equivariant(jax.jit(jax.vmap(fn)), layout, layout, x[None], rtol=rtol)

    def field(x):
        return jax.grad(lambda x: 0.5 * jnp.sum(jnp.square(fn(x))))(x)

    assert_equivariant(jax.jit(field), layout, layout, x, rtol=10 * rtol)


def _inputs(layout: ChiralLayout, lead=(3, 4), dtype=jnp.float32, seed=0):
    return jax.random.normal(jax.random.key(seed), (*lead, layout.size), dtype)


def _modules(joints: ChiralLayout, token: ChiralLayout, dtype, seed: int):
    """name -> (module on tokens or channels, the layout it is equivariant in)."""
    rngs = nnx.Rngs(seed)
    kw = dict(param_dtype=dtype, rngs=rngs)
    return {
        "attention over joint tokens": (
            ChiralMultiHeadAttention(token, 2, head_dims=5, negated=2, **kw),
            "tokens",
        ),
        "attention over frames of all joints": (ChiralMultiHeadAttention(joints, 3, **kw), "flat"),
        "layer norm per token": (ChiralLayerNorm(token, **kw), "tokens"),
        "layer norm over all joints": (ChiralLayerNorm(joints, **kw), "flat"),
        "joint embedding": (ChiralEmbedding(joints, **kw), "tokens"),
        "mixed activation": (ChiralActivation("tanh", even="gelu", layout=joints), "flat"),
    }


NAMES = list(_modules(*_joints_and_token(0), jnp.float32, 0))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", NAMES)
def test_equivariance(name, seed):
    joints, token = _joints_and_token(seed)
    module, on = _modules(joints, token, jnp.float32, seed)[name]
    module = _randomise(module, seed)
    fn = _per_token(module, joints) if on == "tokens" else module
    _check(fn, joints, _inputs(joints, seed=seed), RTOL32)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_equivariance_x64(name):
    with jax.enable_x64(True):
        joints, token = _joints_and_token(5)
        module, on = _modules(joints, token, jnp.float64, 5)[name]
        module = _randomise(module, 5)
        fn = _per_token(module, joints) if on == "tokens" else module
        x = _inputs(joints, dtype=jnp.float64)
        assert fn(x).dtype == jnp.float64
        _check(fn, joints, x, RTOL64)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_parameter_gradients_of_mirrored_data_are_equal(name):
    """The loss at ``(T x, T y)`` equals the loss at ``(x, y)``, and so does its gradient
    with respect to the free parameters: training sees no difference."""
    joints, token = _joints_and_token(1)
    module, on = _modules(joints, token, jnp.float32, 1)[name]
    graphdef, params, rest = nnx.split(_randomise(module, 1), nnx.Param, ...)
    if not jax.tree.leaves(params):
        pytest.skip("no parameters")

    def loss(p, x, y):
        m = nnx.merge(graphdef, p, rest)
        out = (_per_token(m, joints) if on == "tokens" else m)(x)
        return jnp.mean(jnp.square(out - y))

    x, y = _inputs(joints, seed=2), _inputs(joints, seed=3)
    a = jax.grad(loss)(params, x, y)
    b = jax.grad(loss)(params, joints.transform(x), joints.transform(y))
    scale = max(float(jnp.max(jnp.abs(v))) for v in jax.tree.leaves(a))
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=RTOL32 * scale), a, b)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_plain_twin_and_even_odd_form_compute_the_same(name):
    joints, token = _joints_and_token(2)
    module, on = _modules(joints, token, jnp.float32, 2)[name]
    module = _randomise(module, 2)
    x = _inputs(joints)
    tokens = x.reshape(*x.shape[:-1], joints.num_joints, joints.dims)
    data = tokens if on == "tokens" else x
    y = module(data)
    atol = RTOL32 * float(jnp.max(jnp.abs(y)))  # relative to the output's scale
    np.testing.assert_allclose(module.to_plain()(data), y, atol=atol)
    if on == "flat":
        z = module.even_odd(EvenOdd.from_joint(x, joints))
        np.testing.assert_allclose(z.to_joint(), y, atol=atol)


def test_layer_norm_statistics():
    """Positive channels are centred, negated ones not; the mean square is 1 (no affine);
    with no negated channel it is ``nnx.LayerNorm``."""
    layout = ChiralLayout.hidden(0, 1, 6, 2)
    norm = ChiralLayerNorm(layout, use_scale=False, use_bias=False, rngs=nnx.Rngs(0))
    y = norm(_inputs(layout) + 3.0)
    np.testing.assert_allclose(jnp.mean(y[..., 2:], -1), 0.0, atol=1e-5)
    assert float(jnp.min(jnp.abs(jnp.mean(y[..., :2], -1)))) > 0.1
    np.testing.assert_allclose(jnp.mean(jnp.square(y), -1), 1.0, rtol=1e-4)
    unsigned = ChiralLayout.hidden(0, 1, 6, 0)
    x = _inputs(unsigned) * 2 + 1
    ours = ChiralLayerNorm(unsigned, epsilon=1e-6, rngs=nnx.Rngs(0))
    theirs = nnx.LayerNorm(6, epsilon=1e-6, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_embeddings_are_tied():
    """``e[right] = s * e[left]``; centre tokens (and frame tokens) have no negated part."""
    layout = ChiralLayout(left=(2,), right=(0,), centre=(1,), dims=3, negated=(1,))
    table = _randomise(ChiralEmbedding(layout, rngs=nnx.Rngs(0)), 0).table()
    np.testing.assert_array_equal(table[0], table[2] * jnp.array([1.0, -1.0, 1.0]))
    assert table[1, 1] == 0 and table[1, 0] != 0
    frames = ChiralEmbedding(ChiralLayout.hidden(0, 4, 3, 1), rngs=nnx.Rngs(0))
    assert float(jnp.max(jnp.abs(_randomise(frames, 1).table()[:, 0]))) == 0.0
    # A shorter clip gets the first tokens' embeddings; a longer one is refused.
    x = jnp.zeros((2, 3, 3))
    np.testing.assert_array_equal(frames(x), jnp.broadcast_to(frames.table()[:3], x.shape))
    with pytest.raises(ValueError, match="5 tokens, but the embedding has 4"):
        frames(jnp.zeros((2, 5, 3)))


def test_mixed_activation_applies_each_function_to_its_channels():
    layout = ChiralLayout(left=(0,), right=(1,), centre=(), dims=2, negated=(0,))
    act = ChiralActivation("softsign", even="relu", layout=layout)
    x = jnp.array([-2.0, -3.0, -4.0, 5.0])
    np.testing.assert_allclose(act(x), [jax.nn.soft_sign(-2.0), 0.0, jax.nn.soft_sign(-4.0), 5.0])


def test_bad_arguments_name_the_problem():
    layout = ChiralLayout.hidden(0, 1, 6, 2)
    with pytest.raises(ValueError, match="needs the layout"):
        ChiralActivation("tanh", even="relu")
    with pytest.raises(ValueError, match="not odd"):
        ChiralActivation(jax.nn.relu, even="tanh", layout=layout)
    with pytest.raises(ValueError, match="do not split into 4 heads"):
        ChiralMultiHeadAttention(layout, 4, rngs=nnx.Rngs(0))
    attention = ChiralMultiHeadAttention(layout, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="ChiralMultiHeadAttention input"):
        attention(jnp.zeros((2, 3, 5)))
