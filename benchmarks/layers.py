"""Layer-level cases: chiral dense / conv1d (each ``impl``) against plain layers of the same shape.

A case builds one plain layer (``nnx.Linear`` or ``nnx.Conv``) and one chiral layer
per variant, all ``width -> width``, and times either the forward pass (``"fwd"``) or
the forward pass with gradients w.r.t. every parameter and the input (``"fwd+bwd"``:
``value_and_grad`` of ``<f(x), g>`` for a fixed random ``g``).
"""

from __future__ import annotations

import contextlib
import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

import chiral_jax.fused
from benchmarks.timing import Timing, Variant, flops, time_variants
from chiral_jax import ChiralConv1d, ChiralLayout, ChiralLinear
from chiral_jax.even_odd import EvenOdd
from chiral_jax.skeletons import H36M_17, MPII_16

PASSES = ("fwd", "fwd+bwd")


@contextlib.contextmanager
def fused_kernels(on: bool):
    """The fused CPU kernels on inside the block (yields False where they cannot be had),
    off otherwise; off again after it."""
    if not on:
        yield True
        return
    try:
        chiral_jax.fused.enable()
    except RuntimeError:
        yield False
        return
    try:
        yield True
    finally:
        chiral_jax.fused.disable()


def hidden_layout(width: int) -> ChiralLayout:
    """A paper-style hidden layout of ``width`` channels, a third of each joint's dims negated.

    Human3.6M's 17 joints (6 pairs, 5 centre) when 17 divides ``width`` (1020 = 17 x 60
    is the paper's), else MPII's 16 (6 pairs, 4 centre).
    """
    return (H36M_17 if width % 17 == 0 else MPII_16).hidden_layout(width, 1 / 3)


@dataclasses.dataclass(frozen=True)
class LayerCase:
    """``kind`` ("dense" or "conv"), ``width`` channels, ``batch`` rows (conv: sequences of
    ``frames`` output frames, kernel ``kernel_size``), which ``pass_`` to time, and
    whether a tanh follows the layer (``activation``).

    Variants: ``plain``; chiral ``dense`` and ``even_odd`` (the layer's ``impl`` on
    joint-basis arrays in and out; no ``dense`` with the activation) and ``even_odd_form``
    (activations in and out held as :class:`EvenOdd`: the layer's ``even_odd`` call, then
    ``map`` for the activation, as a network that keeps the even/odd form runs it).
    ``even_odd_form_fused`` is ``even_odd_form`` traced with the fused CPU kernels of
    :mod:`chiral_jax.fused` switched on (skipped where they cannot be built).
    """

    kind: str
    width: int
    batch: int
    pass_: str
    activation: bool = False
    frames: int = 243
    kernel_size: int = 3

    @property
    def rows(self) -> int:
        """Output rows per call (batch x frames for a conv)."""
        return self.batch * (self.frames if self.kind == "conv" else 1)

    @property
    def name(self) -> str:
        size = f"{self.batch}x{self.frames}" if self.kind == "conv" else str(self.batch)
        kind = self.kind + ("+tanh" if self.activation else "")
        return f"{kind} w{self.width} b{size} {self.pass_}"

    @property
    def variants(self) -> tuple[str, ...]:
        if self.activation:
            return ("plain", "even_odd", "even_odd_form", "even_odd_form_fused")
        return ("plain", "dense", "even_odd", "even_odd_form", "even_odd_form_fused")


def _layer(case: LayerCase, variant: str) -> nnx.Module:
    layout = hidden_layout(case.width)
    rngs = nnx.Rngs(0)
    impl = "even_odd" if variant.startswith("even_odd") else variant
    if case.kind == "dense":
        if variant == "plain":
            return nnx.Linear(case.width, case.width, rngs=rngs)
        return ChiralLinear(layout, layout, impl=impl, rngs=rngs)
    if case.kind == "conv":
        k = case.kernel_size
        if variant == "plain":
            return nnx.Conv(case.width, case.width, (k,), padding="VALID", rngs=rngs)
        return ChiralConv1d(layout, layout, k, impl=impl, rngs=rngs)
    raise ValueError(f"unknown layer kind {case.kind!r}; expected 'dense' or 'conv'")


def _forward(case: LayerCase, variant: str, layer: nnx.Module):
    """``f(layer, x)`` for the variant (``x`` is :class:`EvenOdd` in the even/odd form)."""
    if variant.startswith("even_odd_form"):
        if case.activation:
            return lambda layer, z: layer.even_odd(z).map("tanh")
        return lambda layer, z: layer.even_odd(z)
    if case.activation:
        return lambda layer, x: jnp.tanh(layer(x))
    return lambda layer, x: layer(x)


def _pure(case: LayerCase, variant: str):
    """``(fn, state)``: ``fn(state, x, cotangent)`` runs the pass (the cotangent is an
    argument, not a constant XLA could fold into the backward pass)."""
    layer = _layer(case, variant)
    graphdef, state = nnx.split(layer)
    apply = _forward(case, variant, layer)

    def forward(state, x):
        return apply(nnx.merge(graphdef, state), x)

    if case.pass_ == "fwd":
        return (lambda state, x, cotangent: forward(state, x)), state

    def loss(state, x, cotangent):
        pairs = zip(jax.tree.leaves(forward(state, x)), jax.tree.leaves(cotangent), strict=True)
        return sum(jnp.vdot(y, g) for y, g in pairs)

    return jax.value_and_grad(loss, argnums=(0, 1)), state


def _shapes(case: LayerCase) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Input and output shapes (flat joint basis)."""
    if case.kind == "dense":
        return (case.batch, case.width), (case.batch, case.width)
    frames_in = case.frames + case.kernel_size - 1
    return (case.batch, frames_in, case.width), (case.batch, case.frames, case.width)


def run_layer_case(case: LayerCase, rounds: int) -> dict:
    """Time one case; returns a JSON-ready record (seconds, ratios to plain, FLOPs)."""
    if case.pass_ not in PASSES:
        raise ValueError(f"pass must be one of {PASSES}, got {case.pass_!r}")
    in_shape, out_shape = _shapes(case)
    x = jax.random.normal(jax.random.key(1), in_shape, jnp.float32)
    cotangent = jax.random.normal(jax.random.key(2), out_shape, jnp.float32)
    layout = hidden_layout(case.width)
    variants, costs = [], {}
    for name in case.variants:
        fn, state = _pure(case, name)
        args = (state, x, cotangent)
        if name.startswith("even_odd_form"):
            to = jax.jit(EvenOdd.from_joint, static_argnums=1)
            args = (state, to(x, layout), to(cotangent, layout))
        with fused_kernels(name.endswith("_fused")) as on:
            if not on:
                continue
            compiled = jax.jit(fn).lower(*args).compile()
            costs[name] = flops(fn, *args)
        variants.append(Variant(name, compiled, args))
    timing: Timing = time_variants(variants, "plain", rounds=rounds)
    return {
        "case": case.name,
        **dataclasses.asdict(case),
        "rows": case.rows,
        "seconds": timing.seconds,
        "ratio": timing.ratio,
        "flops": costs,
        "rounds": timing.rounds,
    }
