"""The fused CPU kernels (opt-in): the same values and derivatives as the XLA ops of
:mod:`chiral_jax.even_odd`, equivariant, and kept apart from the pure core.

The kernels are compiled on first use; where a C++ compiler exists (as on CI) they must
build, so a broken kernel fails here. Without a compiler these tests skip.
"""

import contextlib
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

import chiral_jax.fused
from chiral_jax import ChiralLayout, ChiralLinear, assert_equivariant
from chiral_jax.even_odd import EvenOdd
from chiral_jax.fused import _build, _primitives

HAS_COMPILER = _build._compiler() is not None
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler to build the kernels")

KINDS = sorted(chiral_jax.fused.KINDS)
# Random layouts (any joint order and negated dims), and no pairs / no centre joints.
LAYOUTS = [random_layout(np.random.default_rng(seed), max_joints=9) for seed in (1, 2, 3)] + [
    ChiralLayout(left=(), right=(), centre=(2, 0, 1), dims=3, negated=(1,)),
    ChiralLayout(left=(3, 0), right=(1, 2), centre=(), dims=2, negated=(0, 1)),
]


@contextlib.contextmanager
def fused(on: bool = True):
    """The fused kernels switched on (or off) inside the block, restored after it."""
    before = chiral_jax.fused.enabled()
    chiral_jax.fused.enable() if on else chiral_jax.fused.disable()
    try:
        yield
    finally:
        chiral_jax.fused.enable() if before else chiral_jax.fused.disable()


def test_the_core_imports_no_fused_kernels():
    """``import chiral_jax`` (layers, even/odd basis) loads nothing of the fused package,
    and the default is XLA ops."""
    code = (
        "import sys, chiral_jax, chiral_jax.even_odd as eo; "
        "print(any(m.startswith('chiral_jax.fused') for m in sys.modules), eo.fused_ops())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "None"]


@needs_compiler
def test_kernels_build_here():
    library, reason = _build.load()
    assert library is not None, reason


def _apply(x, layout, fn):
    return EvenOdd.from_joint(x, layout).map(fn).to_joint()


def _both(f, *args):
    """``f`` compiled twice for ``args``: with XLA ops, and with the fused kernels."""
    # A fresh function per trace: jax caches traces per function, and the switch acts
    # at trace time.
    with fused(False):
        xla = jax.jit(lambda *a: f(*a)).lower(*args).compile()
    with fused(True):
        kernel = jax.jit(lambda *a: f(*a)).lower(*args).compile()
    return xla, kernel


@needs_compiler
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_kernel_equals_xla_path_in_values_and_gradients(layout, kind):
    """Values and input gradients of ``<f(x), g>`` under jit, 1e-5 relative; inputs of
    scale 3 reach hardtanh's and tanh's saturated ranges."""
    x = 3 * normal(0, (3, 5, layout.size))
    g = normal(1, x.shape)

    def f(x):
        return jax.value_and_grad(lambda x: jnp.vdot(_apply(x, layout, kind), g))(x)

    xla, kernel = _both(f, x)
    assert_trees_close(xla(x), kernel(x))
    text = kernel.as_text()
    assert "chiral_odd_map_forward" in text and "chiral_odd_map_backward" in text
    assert "chiral_odd_map" not in xla.as_text()


@needs_compiler
@pytest.mark.parametrize("kind", KINDS)
def test_forward_mode_and_second_derivatives_match_the_xla_path(kind):
    """``jacfwd`` runs the kernel's JVP primitive; a Hessian also needs the slope's
    derivative through the outputs (taken from the XLA formula)."""
    layout = LAYOUTS[0]
    x = 2 * normal(5, (2, layout.size))

    def loss(x):
        return jnp.sum(jnp.sin(_apply(x, layout, kind)) * x)

    for transform in (jax.jacfwd, jax.hessian):
        ref, got = (compiled(x) for compiled in _both(transform(loss), x))
        assert_trees_close(ref, got)


@needs_compiler
@pytest.mark.parametrize("kind", KINDS)
def test_kernel_is_equivariant_under_jit_vmap_and_grad(kind):
    layout = random_layout(np.random.default_rng(7), max_joints=9, dims=3)
    x = 2 * normal(2, (4, 6, layout.size))

    def f(x):
        return _apply(x, layout, kind)

    with fused():
        assert_equivariant(jax.jit(f), layout, layout, x)
        assert_equivariant(jax.jit(jax.vmap(f)), layout, layout, x)
        # The gradient of an invariant loss is equivariant (same layout as x).
        loss = jax.grad(lambda x: jnp.sum(f(x) ** 2 + jnp.sin(f(x)) * f(x)))
        assert_equivariant(jax.jit(loss), layout, layout, x)
        # vmap of the kernel equals the kernel on the stacked batch, with gradients.
        assert_trees_close(
            jax.vmap(jax.grad(lambda x: jnp.sum(f(x) ** 3)))(x),
            jax.grad(lambda x: jnp.sum(f(x) ** 3))(x),
        )


@needs_compiler
def test_layers_run_the_kernels_when_enabled_and_xla_ops_otherwise():
    layout = ChiralLayout.hidden(pairs=3, centre=2, dims=6, negated=2)
    layer = ChiralLinear(layout, layout, impl="even_odd", rngs=nnx.Rngs(0))
    x = normal(3, (16, layout.size))

    def network(x):
        return layer.even_odd(EvenOdd.from_joint(x, layout)).map("tanh").to_joint()

    xla, kernel = (compiled.as_text() for compiled in _both(network, x))
    assert "chiral_odd_map" not in xla and "chiral_split" not in xla
    assert "chiral_odd_map_forward" in kernel and "chiral_split" in kernel
    with fused():
        assert_trees_close(jnp.tanh(layer(x)), jax.jit(network)(x))
        # A dropout mask (any `scale`) or a custom odd callable: XLA ops, no primitive.
        z = EvenOdd.from_joint(x, layout)
        scaled = jax.make_jaxpr(lambda z, m: z.map("tanh", scale=m))(z, x)
        assert "chiral_odd_map" not in str(scaled)
        assert "chiral_odd_map" not in str(jax.make_jaxpr(lambda z: z.map(lambda a: a**3))(z))
        # Another dtype: the primitive lowers to XLA ops.
        z16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), z)
        lowered = jax.jit(lambda z: z.map("tanh")).lower(z16).as_text()
        assert "chiral_odd_map_forward" not in lowered
        assert_trees_close(
            z.map("tanh").to_joint(), z16.map("tanh").to_joint().astype(jnp.float32), rtol=1e-2
        )


def _fresh_process(env: dict[str, str]) -> subprocess.CompletedProcess:
    """Enables the kernels in a new process: prints the one-line error or KERNEL."""
    code = """
import jax, jax.numpy as jnp
import chiral_jax.fused
from chiral_jax import ChiralLayout
from chiral_jax.even_odd import EvenOdd
try:
    chiral_jax.fused.enable()
except RuntimeError as err:
    print("ERROR", err); raise SystemExit(3)
layout = ChiralLayout.hidden(pairs=2, centre=1, dims=3, negated=1)
x = jnp.linspace(-3, 3, 4 * layout.size).reshape(4, layout.size)
f = jax.jit(lambda x: EvenOdd.from_joint(x, layout).map("tanh").to_joint())
assert jnp.allclose(f(x), jnp.tanh(x), atol=1e-6)
print("KERNEL" if "chiral_odd_map_forward" in f.lower(x).as_text() else "NO KERNEL")
"""
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )


@pytest.mark.slow
@needs_compiler
def test_enable_builds_once_remembers_failures_and_rebuilds_damaged_caches(tmp_path):
    """A failed build gives a one-line error, is remembered by later processes (not
    retried) until its record is deleted; a damaged cache entry is rebuilt."""
    failing = tmp_path / "cache-failing"
    broken = _fresh_process({"CXX": "false", "CHIRAL_JAX_CACHE_DIR": str(failing)})
    assert broken.returncode == 3 and "compiling even_odd.cc failed" in broken.stdout, broken
    (record,) = failing.glob("*.failed")
    again = _fresh_process({"CXX": "false", "CHIRAL_JAX_CACHE_DIR": str(failing)})
    assert again.returncode == 3 and "an earlier build failed" in again.stdout, again
    assert str(record) in again.stdout
    missing = _fresh_process({"CXX": "no-such-compiler", "CHIRAL_JAX_CACHE_DIR": str(tmp_path)})
    assert missing.returncode == 3 and "no C++ compiler" in missing.stdout, missing
    cache = tmp_path / "cache"
    built = _fresh_process({"CHIRAL_JAX_CACHE_DIR": str(cache)})
    assert built.returncode == 0 and built.stdout.strip() == "KERNEL", built.stderr
    (library,) = cache.glob("*.so")
    library.write_bytes(b"not a shared library")
    rebuilt = _fresh_process({"CHIRAL_JAX_CACHE_DIR": str(cache)})
    assert rebuilt.returncode == 0 and rebuilt.stdout.strip() == "KERNEL", rebuilt.stderr
    assert library.read_bytes() != b"not a shared library"


@needs_compiler
@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_basis_change_kernels_equal_xla_ops_and_are_each_others_transpose(layout):
    """split / merge against :func:`to_even_odd` / :func:`from_even_odd`'s XLA ops, forward
    and under ``grad`` and ``jvp``; the primitives' scaled forms are transposes of each
    other (``<split(x), g> = <x, merge_1(g)>``)."""
    canonical = ChiralLayout.hidden(
        len(layout.left), len(layout.centre), layout.dims, len(layout.negated)
    )
    x = normal(6, (3, 4, canonical.size))
    plus, minus = normal(7, (3, 4, canonical.n_plus)), normal(8, (3, 4, canonical.n_minus))
    _primitives.register(_build.load()[0])
    split = functools.partial(_primitives.split, layout=canonical)
    merge = functools.partial(_primitives.merge, layout=canonical)
    xla_split = functools.partial(jax.jit(EvenOdd.from_joint, static_argnums=1), layout=canonical)

    assert "chiral_split" in jax.jit(split).lower(x).as_text()
    assert "chiral_merge" in jax.jit(merge).lower(plus, minus).as_text()
    with fused(False):
        ref_z = xla_split(x)
        ref_x = EvenOdd(plus, minus, canonical).to_joint()
    assert_trees_close((ref_z.plus, ref_z.minus), jax.jit(split)(x))
    assert_trees_close(ref_x, jax.jit(merge)(plus, minus))
    for f, args in ((split, (x,)), (merge, (plus, minus))):
        # Linear maps: the tangent of f along its own input is f of it.
        assert_trees_close(
            jax.tree.leaves(jax.jit(lambda *a, f=f: jax.jvp(f, a, a)[1])(*args)),
            jax.tree.leaves(f(*args)),
        )
    merge_1 = _primitives._merge_p.bind(plus, minus, **_primitives._basis(canonical), scale=1.0)[0]
    lhs = sum(jnp.vdot(a, b) for a, b in zip(split(x), (plus, minus), strict=True))
    np.testing.assert_allclose(lhs, jnp.vdot(x, merge_1), rtol=1e-5)
    # ... and reverse mode runs that transpose: the gradient of <split(x), g> is merge_1(g).
    grad = jax.jit(
        jax.grad(
            lambda x: sum(jnp.vdot(a, b) for a, b in zip(split(x), (plus, minus), strict=True))
        )
    )(x)
    assert_trees_close(grad, merge_1)


_SHARDED = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import chiral_jax.fused
from chiral_jax import ChiralLayout
from chiral_jax.even_odd import EvenOdd
chiral_jax.fused.enable()
layout = ChiralLayout.hidden(pairs=2, centre=1, dims=3, negated=1)
mesh = Mesh(np.array(jax.devices()), ("d",))
x = jnp.linspace(-3, 3, 8 * layout.size).reshape(8, layout.size)
def f(x):
    return EvenOdd.from_joint(x, layout).map("tanh").to_joint()
sharded = jax.jit(f).lower(jax.device_put(x, NamedSharding(mesh, P("d")))).compile()
per_shard = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=P("d"), out_specs=P("d")))
assert jnp.allclose(sharded(jax.device_put(x, NamedSharding(mesh, P("d")))), jnp.tanh(x), atol=1e-6)
assert jnp.allclose(per_shard(x), jnp.tanh(x), atol=1e-6)
print(len(jax.devices()), "chiral_odd_map" in sharded.as_text(), "all-gather" in sharded.as_text(),
      "chiral_odd_map" in per_shard.lower(x).compile().as_text())
"""


@needs_compiler
def test_partitioned_computations_use_xla_ops_and_shard_map_the_kernel():
    """XLA cannot partition a custom call (it would gather every operand): a ``jit`` over
    4 devices lowers to XLA ops with no all-gather; inside ``shard_map`` each device runs
    the kernel on its shard."""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    done = subprocess.run([sys.executable, "-c", _SHARDED], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "False", "False", "True"]
