import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layouts import random_layout

from chiral_jax import ChiralLayout, layout_from_pairs
from chiral_jax.skeletons import H36M_17, MPII_16, SKELETONS


@pytest.mark.parametrize("seed", range(10))
def test_transform_is_a_signed_swap_and_an_involution(seed):
    rng = np.random.default_rng(seed)
    layout = random_layout(rng)
    x = jax.random.normal(jax.random.key(seed), (3, layout.num_joints, layout.dims))
    tx = layout.transform(x)
    for i, j in zip(layout.left, layout.right, strict=True):
        np.testing.assert_array_equal(tx[:, i], np.asarray(x[:, j]) * layout.dim_signs)
        np.testing.assert_array_equal(tx[:, j], np.asarray(x[:, i]) * layout.dim_signs)
    for c in layout.centre:
        np.testing.assert_array_equal(tx[:, c], np.asarray(x[:, c]) * layout.dim_signs)
    np.testing.assert_array_equal(layout.transform(tx), x)
    flat = x.reshape(3, -1)
    np.testing.assert_array_equal(layout.transform(flat), tx.reshape(3, -1))
    np.testing.assert_allclose(np.asarray(flat) @ layout.matrix().T, tx.reshape(3, -1), atol=1e-6)


def test_eigenspace_dimensions_add_up():
    rng = np.random.default_rng(0)
    for _ in range(20):
        layout = random_layout(rng)
        eig = np.linalg.eigvalsh(layout.matrix())
        assert np.sum(eig > 0) == layout.n_plus
        assert np.sum(eig < 0) == layout.n_minus


def test_skeleton_layouts():
    layout = H36M_17.layout(2)
    assert (len(layout.left), len(layout.centre), layout.size) == (6, 5, 34)
    assert layout.negated == (0,)
    # Pairs are matched by body part, not list position.
    for skeleton in SKELETONS.values():
        for i, j in zip(skeleton.left, skeleton.right, strict=True):
            assert skeleton.joint_names[i].replace("left", "right") == skeleton.joint_names[j]
    assert MPII_16.joint_names[MPII_16.right[0]] == "right_hip"


def test_hidden_layout_is_canonical_and_sized():
    layout = ChiralLayout.hidden(pairs=6, centre=5, dims=60, negated=1 / 3)
    assert layout.size == 1020 and len(layout.negated) == 20 and layout.is_canonical
    assert ChiralLayout.hidden(2, 1, 4, 3).negated == (0, 1, 2)
    inv = ChiralLayout.invariant(7)
    assert inv.size == 7 and inv.n_minus == 0


def test_layout_from_pairs():
    layout = layout_from_pairs(5, [(1, 3), (2, 4)], dims=2, negated=[0])
    assert layout.centre == (0,) and layout.right == (3, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(left=(0, 1), right=(2,), centre=(), dims=2), "pair up"),
        (dict(left=(0,), right=(0,), centre=(1,), dims=2), "both left and right"),
        (dict(left=(0,), right=(1,), centre=(3,), dims=2), "out of range"),
        (dict(left=(0,), right=(1,), centre=(2, 2), dims=2), "both centre and centre"),
        (dict(left=(), right=(), centre=(), dims=2), "at least one joint"),
        (dict(left=(0,), right=(1,), centre=(2,), dims=2, negated=(2,)), "negated dim 2"),
        (dict(left=(0,), right=(1,), centre=(2,), dims=0), "dims must be"),
        (dict(left=(0,), right=(1,), centre=(2,), dims=2, negated=(0, 0)), "repeat"),
    ],
)
def test_bad_layouts_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ChiralLayout(**kwargs)


def test_missing_joint_is_reported():
    # Four joints named in groups but index 3 used: joint 2 is in no group.
    with pytest.raises(ValueError, match="out of range|in no group"):
        ChiralLayout(left=(0,), right=(1,), centre=(3,), dims=1)


def test_transform_rejects_wrong_shapes():
    layout = H36M_17.layout(2)
    with pytest.raises(ValueError, match="J\\*D = 17\\*2 = 34"):
        layout.transform(jnp.zeros((4, 33)))
    with pytest.raises(ValueError, match="17"):
        layout.check_features(jnp.zeros((4, 51)))


def _with_axes(rng, layout, x):
    """``x [..., J, D]`` with its joint and dim axes moved to random places."""
    axes = rng.choice(x.ndim, size=2, replace=False)
    return np.moveaxis(x, (-2, -1), tuple(axes)), (int(axes[0]), int(axes[1]))


@pytest.mark.parametrize("seed", range(4))
def test_transform_on_numpy_and_jax_agree_on_any_axes(seed):
    rng = np.random.default_rng(seed)
    layout = random_layout(rng)
    x = rng.normal(size=(2, 3, layout.num_joints, layout.dims)).astype(np.float32)
    moved, (joint_axis, dim_axis) = _with_axes(rng, layout, x)
    expected = np.moveaxis(layout.transform(x), (-2, -1), (joint_axis, dim_axis))
    on_jax = layout.transform(jnp.asarray(moved), joint_axis=joint_axis, dim_axis=dim_axis)
    assert isinstance(on_jax, jax.Array)
    np.testing.assert_array_equal(on_jax, expected)
    # Negative axes address the same ones; numpy stays numpy, of the same dtype.
    kw = dict(joint_axis=joint_axis - x.ndim, dim_axis=dim_axis - x.ndim)
    tx = layout.transform(moved, **kw)
    assert isinstance(tx, np.ndarray) and tx.dtype == np.float32
    np.testing.assert_array_equal(tx, expected)
    np.testing.assert_array_equal(layout.transform(tx, **kw), moved)  # an involution
    flat = x.reshape(2, 3, -1)
    np.testing.assert_array_equal(layout.transform(flat), layout.transform(x).reshape(2, 3, -1))


def test_transform_keeps_integer_dtypes_on_numpy():
    layout = ChiralLayout(left=(1,), right=(2,), centre=(0,), dims=2, negated=(0,))
    x = np.arange(12, dtype=np.int16).reshape(2, 3, 2)
    tx = layout.transform(x)
    assert tx.dtype == np.int16
    assert tx[0].tolist() == [[0, 1], [-4, 5], [-2, 3]]


def test_transform_under_jit_vmap_and_grad():
    layout = H36M_17.layout(3)
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=(2, 4, 3, 6, 17)).astype(np.float32)  # [B, D, T, J] each
    kw = dict(joint_axis=-1, dim_axis=1)

    @jax.jit
    def run(x, g):
        per_sample = jax.vmap(lambda x: layout.transform(x, joint_axis=-1, dim_axis=0))(x)
        grad = jax.grad(lambda x: jnp.sum(layout.transform(x, **kw) * g))(x)
        return layout.transform(x, **kw), per_sample, grad

    direct, per_sample, grad = run(x, g)
    np.testing.assert_array_equal(direct, layout.transform(x, **kw))
    np.testing.assert_array_equal(per_sample, direct)
    # T is a signed permutation (orthogonal, an involution): the gradient of <T x, g> is T g.
    np.testing.assert_array_equal(grad, layout.transform(g, **kw))


@pytest.mark.parametrize(
    ("shape", "kwargs", "message"),
    [
        ((3, 5, 16, 2), dict(joint_axis=2, dim_axis=0), r"J=17 joints on axis 2 .* \(16, 3\)"),
        ((3, 17), dict(joint_axis=2, dim_axis=0), r"axis 2 .* got shape \(3, 17\) \(2 axes\)"),
        ((17, 3), dict(joint_axis=0, dim_axis=-2), "must be different axes"),
        ((17, 3), dict(flat=True, joint_axis=0), "give no joint_axis"),
        ((5, 17, 2), dict(flat=False), r"D=3 dims on axis -1, got sizes \(17, 2\)"),
    ],
)
def test_transform_names_the_axis_sizes_expected_and_got(shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        H36M_17.layout(3).transform(np.zeros(shape), **kwargs)
