"""The fused CPU kernels: the same values and derivatives as XLA ops, and equivariant.

The kernel is compiled on first use; where a C++ compiler exists (as on CI) it must
build, so a broken kernel fails here rather than silently falling back.
"""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layouts import random_layout
from _numeric import assert_trees_close, normal
from flax import nnx

from chiral_jax import ChiralLayout, ChiralLinear, assert_equivariant, native
from chiral_jax.eigen import EigenActivations, basis_params

HAS_COMPILER = native._compiler() is not None
pytestmark = pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler to build the kernel")

KINDS = sorted(native.KINDS)
# Random layouts (any joint order and negated dims), and no pairs / no centre joints.
LAYOUTS = [random_layout(np.random.default_rng(seed), max_joints=9) for seed in (1, 2, 3)] + [
    ChiralLayout(left=(), right=(), centre=(2, 0, 1), dims=3, negated=(1,)),
    ChiralLayout(left=(3, 0), right=(1, 2), centre=(), dims=2, negated=(0, 1)),
]


def test_kernel_builds_here():
    assert native.available(), native.unavailable_reason()


def _apply(x, layout, fn, impl):
    return EigenActivations.from_joint(x, layout).map(fn, impl=impl).to_joint()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_kernel_equals_xla_path_in_values_and_gradients(layout, kind):
    """Values and input gradients of ``<f(x), g>`` under jit, 1e-5 relative; inputs of
    scale 3 reach hardtanh's and tanh's saturated ranges."""
    x = 3 * normal(0, (3, 5, layout.size))
    g = normal(1, x.shape)

    @jax.jit
    def both(x):
        def loss(x, impl):
            y = _apply(x, layout, kind, impl)
            return jnp.vdot(y, g), y

        return [jax.value_and_grad(loss, has_aux=True)(x, impl) for impl in ("xla", "native")]

    ((_, y_xla), g_xla), ((_, y_native), g_native) = both(x)
    assert_trees_close((y_xla, g_xla), (y_native, g_native))
    hlo = jax.jit(jax.grad(lambda x: jnp.vdot(_apply(x, layout, kind, "auto"), g))).lower(x)
    assert {"chiral_odd_map_forward", "chiral_odd_map_backward"} <= set(
        t for t in native.KERNEL_TARGETS if t in hlo.as_text()
    )


@pytest.mark.parametrize("kind", KINDS)
def test_forward_mode_and_second_derivatives_match_the_xla_path(kind):
    """``jacfwd`` runs the kernel's JVP primitive; a Hessian also needs the slope's
    derivative through the outputs (taken from the XLA formula)."""
    layout = LAYOUTS[0]
    x = 2 * normal(5, (2, layout.size))

    def loss(impl):
        return lambda x: jnp.sum(jnp.sin(_apply(x, layout, kind, impl)) * x)

    for transform in (jax.jacfwd, jax.hessian):
        ref, got = (jax.jit(transform(loss(impl)))(x) for impl in ("xla", "auto"))
        assert_trees_close(ref, got)


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_is_equivariant_under_jit_vmap_and_grad(kind):
    layout = random_layout(np.random.default_rng(7), max_joints=9, dims=3)
    x = 2 * normal(2, (4, 6, layout.size))

    def f(x):
        return _apply(x, layout, kind, "native")

    assert_equivariant(jax.jit(f), layout, layout, x)
    assert_equivariant(jax.jit(jax.vmap(f)), layout, layout, x)
    # The gradient of an invariant loss is equivariant (same layout as x).
    loss = jax.grad(lambda x: jnp.sum(f(x) ** 2 + jnp.sin(f(x)) * f(x)))
    assert_equivariant(jax.jit(loss), layout, layout, x)
    # vmap of the kernel equals the kernel on the stacked batch, with gradients.
    assert_trees_close(jax.vmap(jax.grad(lambda x: jnp.sum(f(x) ** 3)))(x),
                       jax.grad(lambda x: jnp.sum(f(x) ** 3))(x))


def test_auto_runs_the_kernel_after_a_layer_and_matches_the_flat_network():
    layout = ChiralLayout.hidden(pairs=3, centre=2, dims=6, negated=2)
    layer = ChiralLinear(layout, layout, impl="eigen", rngs=nnx.Rngs(0))
    x = normal(3, (16, layout.size))

    def structured(x):
        return layer.eigen_call(EigenActivations.from_joint(x, layout)).map("tanh").to_joint()

    assert "chiral_odd_map_forward" in jax.jit(structured).lower(x).as_text()
    assert_trees_close(jnp.tanh(layer(x)), jax.jit(structured)(x))
    # A dropout (or any `then` map) or a custom odd callable: XLA ops, no primitive.
    z = EigenActivations.from_joint(x, layout)
    assert "chiral_odd_map" not in str(jax.make_jaxpr(lambda z: z.map("tanh", then=abs))(z))
    assert "chiral_odd_map" not in str(jax.make_jaxpr(lambda z: z.map(lambda a: a**3))(z))
    # Another dtype: the primitive lowers to XLA ops.
    z16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), z)
    lowered = jax.jit(lambda z: z.map("tanh")).lower(z16).as_text()
    assert "chiral_odd_map_forward" not in lowered
    assert_trees_close(z.map("tanh").to_joint(), z16.map("tanh").to_joint().astype(jnp.float32),
                       rtol=1e-2)


def test_native_impl_explains_what_it_cannot_run():
    layout = ChiralLayout.hidden(pairs=1, centre=1, dims=2, negated=1)
    z = EigenActivations.from_joint(normal(4, (2, layout.size)), layout)
    with pytest.raises(ValueError, match="supports the activations"):
        z.map(lambda a: a**3, impl="native")
    with pytest.raises(ValueError, match="no `then`"):
        z.map("tanh", then=lambda a: a, impl="native")
    with pytest.raises(ValueError, match="float32"):
        jax.tree.map(lambda a: a.astype(jnp.bfloat16), z).map("tanh", impl="native")
    with pytest.raises(ValueError, match="impl must be"):
        z.map("tanh", impl="fast")


def _fresh_process(env: dict[str, str]) -> subprocess.CompletedProcess:
    """Maps a tanh in a new process: prints the warning (exit 3) or that the kernel ran."""
    code = """
import sys, warnings
import jax, jax.numpy as jnp
from chiral_jax import ChiralLayout
from chiral_jax.eigen import EigenActivations, basis_params
layout = ChiralLayout.hidden(pairs=2, centre=1, dims=3, negated=1)
x = jnp.linspace(-3, 3, 4 * layout.size).reshape(4, layout.size)
f = jax.jit(lambda x: EigenActivations.from_joint(x, layout).map("tanh").to_joint())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert jnp.allclose(f(x), jnp.tanh(x), atol=1e-6)
    ran = "chiral_odd_map_forward" in f.lower(x).as_text()
if caught:
    print("WARNED", caught[0].message, ran); sys.exit(3)
print("KERNEL" if ran else "NO KERNEL")
"""
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )


@pytest.mark.slow
def test_without_the_kernel_everything_falls_back_with_one_warning(tmp_path):
    """Without the kernel the same function runs on XLA ops (the values are checked in the
    child process), after one warning naming the reason."""
    broken = _fresh_process({"CXX": "no-such-compiler", "CHIRAL_JAX_CACHE_DIR": str(tmp_path)})
    assert broken.returncode == 3, broken.stdout + broken.stderr
    assert "no C++ compiler" in broken.stdout and broken.stdout.strip().endswith("False")
    off = _fresh_process({"CHIRAL_JAX_NATIVE": "0"})
    assert off.returncode == 3 and "CHIRAL_JAX_NATIVE=0" in off.stdout, off.stderr
    built = _fresh_process({"CHIRAL_JAX_CACHE_DIR": str(tmp_path)})
    assert built.returncode == 0 and built.stdout.strip() == "KERNEL", built.stderr
    (library,) = tmp_path.iterdir()
    assert library.suffix == ".so"
    # A damaged cache entry is rebuilt.
    library.write_bytes(b"not a shared library")
    rebuilt = _fresh_process({"CHIRAL_JAX_CACHE_DIR": str(tmp_path)})
    assert rebuilt.returncode == 0 and rebuilt.stdout.strip() == "KERNEL", rebuilt.stderr
    assert library.read_bytes() != b"not a shared library"


@pytest.mark.parametrize("scale", [1.0, 0.5])
@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_basis_change_kernels_equal_xla_ops_and_are_each_others_transpose(layout, scale):
    """split / merge (the kernels under ``to_eigen`` / ``from_eigen``) against their XLA
    formulas, forward and under ``grad`` and ``jvp``; ``split_k`` and ``merge_k`` are
    transposes (``<split(x), g> = <x, merge(g)>``)."""
    params = dict(basis_params(layout), scale=scale)
    canonical = ChiralLayout.hidden(len(layout.left), len(layout.centre), layout.dims,
                                    len(layout.negated))
    x = normal(6, (3, 4, canonical.size))
    plus, minus = normal(7, (3, 4, canonical.n_plus)), normal(8, (3, 4, canonical.n_minus))

    def split(x):
        return native.split(x, **params)

    def merge(p, m):
        return native.merge(p, m, **params)

    def xla_split(x):
        return native._xla_split(x, **params)

    def xla_merge(p, m):
        return native._xla_merge(p, m, **params)[0]

    assert "chiral_split" in jax.jit(split).lower(x).as_text()
    assert "chiral_merge" in jax.jit(merge).lower(plus, minus).as_text()
    assert_trees_close(xla_split(x), jax.jit(split)(x))
    assert_trees_close(xla_merge(plus, minus), jax.jit(merge)(plus, minus))
    for f, ref, args in ((split, xla_split, (x,)), (merge, xla_merge, (plus, minus))):
        cotangent = jax.tree.leaves(f(*args))
        argnums = tuple(range(len(args)))

        def loss(fn, *a, cotangent=cotangent):
            pairs = zip(jax.tree.leaves(fn(*a)), cotangent, strict=True)
            return sum(jnp.vdot(o, c) for o, c in pairs)

        got = jax.jit(jax.grad(functools.partial(loss, f), argnums=argnums))(*args)
        assert_trees_close(jax.grad(functools.partial(loss, ref), argnums=argnums)(*args), got)
        tangent = jax.jit(lambda *a, f=f: jax.jvp(f, a, a)[1])(*args)
        assert_trees_close(jax.jvp(ref, args, args)[1], tangent)
    lhs = sum(jnp.vdot(a, b) for a, b in zip(split(x), (plus, minus), strict=True))
    np.testing.assert_allclose(lhs, jnp.vdot(x, merge(plus, minus)), rtol=1e-5)


def test_basis_change_kernels_reject_mismatched_shapes():
    params = dict(left=1, centre=1, joint_dims=2, negated=1)
    with pytest.raises(ValueError, match="split: x"):
        native.split(jnp.ones((2, 5)), **params)
    with pytest.raises(ValueError, match="merge: plus"):
        native.merge(jnp.ones((2, 3)), jnp.ones((3, 3)), **params)


_SHARDED = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from chiral_jax import ChiralLayout
from chiral_jax.eigen import EigenActivations, basis_params
layout = ChiralLayout.hidden(pairs=2, centre=1, dims=3, negated=1)
mesh = Mesh(np.array(jax.devices()), ("d",))
x = jnp.linspace(-3, 3, 8 * layout.size).reshape(8, layout.size)
def f(x):
    return EigenActivations.from_joint(x, layout).map("tanh").to_joint()
sharded = jax.jit(f).lower(jax.device_put(x, NamedSharding(mesh, P("d")))).compile()
per_shard = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=P("d"), out_specs=P("d")))
assert jnp.allclose(sharded(jax.device_put(x, NamedSharding(mesh, P("d")))), jnp.tanh(x), atol=1e-6)
assert jnp.allclose(per_shard(x), jnp.tanh(x), atol=1e-6)
print(len(jax.devices()), "chiral_odd_map" in sharded.as_text(), "all-gather" in sharded.as_text(),
      "chiral_odd_map" in per_shard.lower(x).compile().as_text())
"""


def test_partitioned_computations_use_xla_ops_and_shard_map_the_kernel():
    """XLA cannot partition a custom call (it would gather every operand): a ``jit`` over
    4 devices lowers to XLA ops with no all-gather; inside ``shard_map`` each device runs
    the kernel on its shard."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", _SHARDED], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "False", "False", "True"]
