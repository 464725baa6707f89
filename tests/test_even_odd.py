"""The even/odd path: same values and gradients as the assembled kernel, and equivariant."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layouts import layout_pairs, random_layout
from _numeric import assert_trees_close, normal
from flax import nnx

from chiral_jax import (
    ChiralActivation,
    ChiralBatchNorm,
    ChiralConv1d,
    ChiralDropout,
    ChiralGenerator,
    ChiralLayout,
    ChiralLinear,
    assert_equivariant,
    even_odd,
)
from chiral_jax.even_odd import (
    EvenOdd,
    from_even_odd,
    mirror_stats,
    multiply_adds,
    prefers_even_odd,
    to_even_odd,
)
from chiral_jax.skeletons import H36M_17

# Random layouts (any joint order, |Dn| in 0..D), plus the corner cases: no pairs,
# no centre joints, nothing negated, everything negated.
EDGE = [
    ChiralLayout(left=(), right=(), centre=(2, 0, 1), dims=3, negated=(1,)),
    ChiralLayout(left=(3, 0), right=(1, 2), centre=(), dims=2, negated=(0, 1)),
    ChiralLayout(left=(1,), right=(0,), centre=(2,), dims=4, negated=()),
]
PAIRS = layout_pairs(11, 2, max_joints=8) + [(EDGE[0], EDGE[1]), (EDGE[1], EDGE[2])]
CASES = [
    (li, lo, mode, use_bias)
    for (li, lo), mode, use_bias in zip(
        PAIRS, ["complete", "paper", "complete", "paper"], [True, False, False, True], strict=True
    )
]


def _paths_agree(layer, x):
    """The layer with ``impl="dense"`` and an exact copy with ``impl="even_odd"`` give the
    same ``f(x)`` and gradients of ``<f(x), g>`` (fixed random ``g``) w.r.t. the free
    blocks and ``x``; both paths run in one compiled call."""
    layer.impl = "kernel"
    twin = nnx.clone(layer)
    twin.impl = "even_odd"
    graphdefs = nnx.graphdef(layer), nnx.graphdef(twin)

    def loss(state, x, graphdef):
        y = nnx.merge(graphdef, state)(x)
        return jnp.vdot(y, normal(4, y.shape)), y

    @jax.jit
    def both(states, x):
        return [
            jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(state, x, graphdef)
            for state, graphdef in zip(states, graphdefs, strict=True)
        ]

    ((_, y_kernel), g_kernel), ((_, y_even_odd), g_even_odd) = both(
        (nnx.state(layer), nnx.state(twin)), x
    )
    assert_trees_close((y_kernel, g_kernel), (y_even_odd, g_even_odd))


def test_basis_change_is_invertible_and_diagonalises_the_mirror():
    def check(x, layout):
        plus, minus = to_even_odd(x, layout)
        return (
            plus,
            minus,
            from_even_odd(plus, minus, layout),
            to_even_odd(layout.transform(x), layout),
        )

    for layout in (*EDGE, *(li for li, _ in PAIRS)):
        x = normal(0, (3, layout.size))
        plus, minus, back, (mirrored_plus, mirrored_minus) = jax.jit(check, static_argnums=1)(
            x, layout
        )
        assert plus.shape == (3, layout.n_plus) and minus.shape == (3, layout.n_minus)
        np.testing.assert_allclose(back, x, atol=1e-6)
        np.testing.assert_allclose(mirrored_plus, plus, atol=1e-6)
        np.testing.assert_allclose(mirrored_minus, -minus, atol=1e-6)


@pytest.mark.parametrize(("li", "lo", "mode", "use_bias"), CASES[:3])
def test_even_odd_kernels_are_the_assembled_kernel_in_the_even_odd_basis(li, lo, mode, use_bias):
    gen = ChiralGenerator(li, lo, mode, lead=(2,))
    init = nnx.initializers.normal(1.0)
    params = gen.init(jax.random.key(1), init, init)
    x = normal(2, (5, li.size))

    @jax.jit
    def both(params, x):
        kernel, bias = gen.assemble(params)
        a, b = even_odd.kernels(gen, params.kernel)
        plus, minus = to_even_odd(x, li)
        want = [to_even_odd(x @ kernel[tap] + bias[None], lo) for tap in range(2)]
        got = [
            (plus @ a[t] + even_odd.bias(gen, params.bias)[None], minus @ b[t]) for t in range(2)
        ]
        return want, got, a.shape, b.shape

    want, got, a_shape, b_shape = both(params, x)
    assert_trees_close(want, got)
    assert a_shape == (2, li.n_plus, lo.n_plus) and b_shape == (2, li.n_minus, lo.n_minus)
    # n+ n+ + n- n- multiply-adds per tap: the dimension of the complete equivariant space.
    assert multiply_adds(li, lo)[1] == math.prod(a_shape[1:]) + math.prod(b_shape[1:])


@pytest.mark.parametrize(("li", "lo", "mode", "use_bias"), CASES)
def test_linear_paths_agree_in_values_and_gradients(li, lo, mode, use_bias):
    layer = ChiralLinear(li, lo, mode=mode, use_bias=use_bias, rngs=nnx.Rngs(0))
    _paths_agree(layer, normal(3, (2, 3, li.size)))


CONV = [  # (kernel_size, strides, dilation, padding); VALID: the equivariance test
    (3, 2, 2, "SAME"),
    (2, 1, 3, "CAUSAL"),
    (1, 2, 1, (2, 0)),
]


@pytest.mark.parametrize(("conv", "case"), list(zip(CONV, CASES[::-1][:3], strict=True)))
def test_conv_paths_agree_in_values_and_gradients(conv, case):
    kernel_size, strides, dilation, padding = conv
    li, lo, mode, use_bias = case
    layer = ChiralConv1d(
        li,
        lo,
        kernel_size,
        strides=strides,
        dilation=dilation,
        padding=padding,
        mode=mode,
        use_bias=use_bias,
        rngs=nnx.Rngs(0),
    )
    _paths_agree(layer, normal(5, (2, 9, li.size)))


def test_even_odd_path_is_equivariant():
    mode = "paper"  # complete mode: the even/odd-form network test
    hidden = ChiralLayout.hidden(pairs=6, centre=5, dims=6, negated=2)
    pose_2d, pose_3d = H36M_17.layout(2), H36M_17.layout(3)
    first = ChiralConv1d(
        pose_2d, hidden, 3, dilation=2, mode=mode, impl="even_odd", rngs=nnx.Rngs(0)
    )
    last = ChiralLinear(hidden, pose_3d, mode=mode, impl="even_odd", rngs=nnx.Rngs(1))

    def net(x):
        return last(jnp.tanh(first(x)))

    assert_equivariant(jax.jit(net), pose_2d, pose_3d, normal(7, (2, 11, pose_2d.size)))


def test_even_odd_network_equals_joint_basis_network_in_train_and_eval():
    hidden = ChiralLayout.hidden(pairs=3, centre=2, dims=4, negated=1)
    pose = random_layout(np.random.default_rng(3), max_joints=9, dims=2)
    conv = ChiralConv1d(pose, hidden, 3, rngs=nnx.Rngs(0))
    out = ChiralLinear(hidden, pose, rngs=nnx.Rngs(2))
    bn_joint = ChiralBatchNorm(hidden, rngs=nnx.Rngs(1))
    bn_even_odd = nnx.clone(bn_joint)
    x = normal(8, (4, 7, pose.size))

    @nnx.jit
    def joint(bn, x):
        return out(jnp.tanh(bn(conv(x))))

    @nnx.jit
    def in_even_odd(bn, x):
        z = EvenOdd.from_joint(x, pose)
        return out.even_odd(bn.even_odd(conv.even_odd(z)).map("tanh")).to_joint()

    # Training: batch statistics, and the same running-average update.
    assert_trees_close(joint(bn_joint, x), in_even_odd(bn_even_odd, x))
    assert_trees_close(nnx.state(bn_joint), nnx.state(bn_even_odd))
    # Evaluation: the running statistics as one fused affine map per array.
    bn_joint.eval()
    bn_even_odd.eval()
    assert_trees_close(joint(bn_joint, x), in_even_odd(bn_even_odd, x))
    assert_equivariant(lambda x: in_even_odd(bn_even_odd, x), pose, pose, x)


@pytest.mark.parametrize("layout", [random_layout(np.random.default_rng(s)) for s in (4, 5)] + EDGE)
def test_mirror_stats_and_norm_equal_batch_norm_on_any_layout(layout):
    """Batch statistics from the even/odd basis equal the joint-basis ones (any joint
    order, any negated dims, no pairs / no centre), as do the output and the update."""
    x = normal(10, (3, 5, layout.size)) * 2.0 + 0.7
    bn = ChiralBatchNorm(layout, momentum=0.5, rngs=nnx.Rngs(0))
    bn_even_odd = nnx.clone(bn)
    z = EvenOdd.from_joint(x, layout)
    assert_trees_close(mirror_stats(z), bn._mirror_stats(x))
    assert_trees_close(bn_even_odd.even_odd(z).to_joint(), bn(x))
    assert_trees_close(nnx.state(bn_even_odd), nnx.state(bn))


def test_batch_statistics_average_over_a_mapped_axis():
    """With ``axis_name``, shards of a batch get the statistics of the whole batch, in
    the joint basis (``ChiralBatchNorm``) and in the even/odd basis alike."""
    layout = random_layout(np.random.default_rng(7), max_joints=7)
    x = normal(12, (2, 6, layout.size)) * 1.5 + 0.3  # two shards of six samples
    whole = ChiralBatchNorm(layout, rngs=nnx.Rngs(0))._mirror_stats(x.reshape(12, -1))
    sharded = ChiralBatchNorm(layout, axis_name="shard", rngs=nnx.Rngs(0))
    joint = jax.vmap(sharded._mirror_stats, axis_name="shard")(x)
    in_even_odd = jax.vmap(
        lambda xs: mirror_stats(EvenOdd.from_joint(xs, layout), "shard"),
        axis_name="shard",
    )(x)
    for stats in (joint, in_even_odd):
        for shard in range(2):
            assert_trees_close(whole, jax.tree.map(lambda a, i=shard: a[i], stats))


def test_map_scale_multiplies_in_the_joint_basis():
    """``scale`` multiplies the joint-basis values channel by channel: ``tanh(x) * m`` for
    any ``m`` in the layout's order (applied to ``u``, ``v`` it would not be), with and
    without an ``even`` function, and ``ChiralDropout``'s mask is such a multiplier."""
    layout = random_layout(np.random.default_rng(6), max_joints=7)
    x, m = normal(11, (4, layout.size)), normal(12, (4, layout.size))
    z = EvenOdd.from_joint(x, layout)
    assert_trees_close(z.map("tanh", scale=m).to_joint(), jnp.tanh(x) * m)
    mixed = ChiralActivation("tanh", even="relu", layout=layout)
    assert_trees_close(mixed.even_odd(z, scale=m).to_joint(), mixed(x) * m)
    mask = ChiralDropout(0.5, rngs=nnx.Rngs(3)).scale(z)
    assert mask.shape == x.shape and set(np.unique(mask).tolist()) == {0.0, 2.0}
    # A dropout on the same stream draws the same mask and multiplies by it.
    dropped = ChiralDropout(0.5, rngs=nnx.Rngs(3)).even_odd(z).to_joint()
    assert_trees_close(dropped, x * mask)


def test_even_odd_activations_check_their_inputs():
    layout = ChiralLayout.hidden(pairs=2, centre=1, dims=3, negated=1)
    z = EvenOdd.from_joint(normal(9, (2, layout.size)), layout)
    assert jax.tree.leaves(jax.jit(lambda z: z + z)(z))[0].shape == (2, layout.n_plus)
    with pytest.raises(ValueError, match="not odd"):
        z.map(jax.nn.relu)
    with pytest.raises(ValueError, match="need plus"):
        EvenOdd(z.minus, z.plus, layout)
    other = ChiralLayout.hidden(pairs=1, centre=1, dims=3, negated=1)
    with pytest.raises(ValueError, match="input layout"):
        ChiralLinear(other, layout, rngs=nnx.Rngs(0)).even_odd(z)
    with pytest.raises(ValueError, match="input layout"):
        ChiralBatchNorm(other, rngs=nnx.Rngs(0)).even_odd(z)
    with pytest.raises(TypeError, match="takes EvenOdd"):
        ChiralBatchNorm(layout, rngs=nnx.Rngs(0)).even_odd(z.plus)


def test_auto_picks_even_odd_for_wide_layers_only():
    wide = ChiralLayout.hidden(pairs=6, centre=5, dims=60, negated=20)
    assert prefers_even_odd(wide, wide) and not prefers_even_odd(
        H36M_17.layout(2), H36M_17.layout(3)
    )
    # Invariant layouts have no -1 space: the even_odd path would save nothing.
    invariant = ChiralLayout.invariant(64)
    assert multiply_adds(invariant, invariant) == (64 * 64, 64 * 64)
    assert not prefers_even_odd(invariant, invariant, taps=9)
    narrow = ChiralLayout.hidden(pairs=6, centre=5, dims=3, negated=1)
    assert ChiralConv1d(narrow, narrow, 3, rngs=nnx.Rngs(0)).resolved_impl == "dense"
    assert (
        ChiralLinear(narrow, narrow, impl="even_odd", rngs=nnx.Rngs(0)).resolved_impl == "even_odd"
    )
    with pytest.raises(ValueError, match="impl must be one of"):
        ChiralLinear(narrow, narrow, impl="fast", rngs=nnx.Rngs(0))
