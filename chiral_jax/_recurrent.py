"""Chiral recurrent cells (LSTM, GRU) and a scanned multi-layer wrapper.

A gate multiplies a signed channel; a product of two sign-carrying factors would
lose the sign, so every gate uses the hidden layout with no negated dims
(:meth:`ChiralLayout.unsigned`): gates swap with the joints but are invariant to
negation. Candidate and cell paths keep the hidden layout. Then
``c' = f * c + i * g`` and ``h' = o * tanh(c')`` are equivariant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from chiral_jax._layout import ChiralLayout
from chiral_jax._linear import ChiralLinear
from chiral_jax._tied import default_bias_init, default_kernel_init
from chiral_jax.activations import odd_activation
from chiral_jax.generators import Mode


def _gate_layout(hidden: ChiralLayout, gates: int) -> ChiralLayout:
    """``gates`` unsigned copies of each hidden joint's dims, stacked per joint."""
    return ChiralLayout(hidden.left, hidden.right, hidden.centre, gates * hidden.dims, ())


def _split_gates(z: jax.Array, hidden: ChiralLayout, gates: int) -> list[jax.Array]:
    """``[..., J * gates * D] -> gates x [..., J * D]`` (joint order preserved)."""
    z = z.reshape(z.shape[:-1] + (hidden.num_joints, gates, hidden.dims))
    return [z[..., g, :].reshape(z.shape[:-3] + (hidden.size,)) for g in range(gates)]


class _ChiralCell(nnx.Module):
    num_gates: int

    def __init__(
        self,
        layout_in: ChiralLayout,
        layout_hidden: ChiralLayout,
        *,
        mode: Mode = "complete",
        activation: str | Callable = "tanh",
        gate_activation: Callable = jax.nn.sigmoid,
        dtype=None,
        param_dtype=jnp.float32,
        precision: jax.lax.PrecisionLike = None,
        kernel_init=default_kernel_init,
        recurrent_kernel_init=default_kernel_init,
        bias_init=default_bias_init,
        impl: str = "auto",
        rngs: nnx.Rngs,
    ):
        self.layout_in = layout_in
        self.layout_hidden = layout_hidden
        self.activation = odd_activation(activation)
        self.gate_activation = gate_activation
        gates = _gate_layout(layout_hidden, self.num_gates)
        common = dict(
            mode=mode, dtype=dtype, param_dtype=param_dtype, precision=precision, impl=impl
        )
        self.input_gates = ChiralLinear(
            layout_in, gates, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs, **common
        )
        self.hidden_gates = ChiralLinear(
            layout_hidden, gates, use_bias=False, kernel_init=recurrent_kernel_init, rngs=rngs,
            **common,
        )
        self.input_candidate = ChiralLinear(
            layout_in, layout_hidden, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs,
            **common,
        )
        self.hidden_candidate = ChiralLinear(
            layout_hidden, layout_hidden, use_bias=self.num_gates == 2,
            kernel_init=recurrent_kernel_init, bias_init=bias_init, rngs=rngs, **common,
        )

    def _gates(self, x: jax.Array, h: jax.Array) -> list[jax.Array]:
        z = self.gate_activation(self.input_gates(x) + self.hidden_gates(h))
        return _split_gates(z, self.layout_hidden, self.num_gates)


class ChiralLSTMCell(_ChiralCell):
    """A chiral LSTM cell: ``(c, h), x -> (c', h'), h'``.

    Shapes: ``x [..., layout_in.size]``, ``c, h [..., layout_hidden.size]``.
    Equivariance: with ``x -> T_in x`` and ``(c, h) -> (T_h c, T_h h)``, the outputs
    map to ``(T_h c', T_h h')``. Gates (input, forget, output) use
    ``layout_hidden`` with no negated dims; ``activation`` must be odd.

    Keyword arguments: ``mode``, ``activation`` (odd), ``gate_activation``, ``dtype``,
    ``param_dtype``, ``precision``, ``kernel_init``, ``recurrent_kernel_init``,
    ``bias_init``, ``impl`` (passed to every :class:`ChiralLinear`), ``rngs``.
    """

    num_gates = 3

    def __call__(self, carry: tuple[jax.Array, jax.Array], x: jax.Array):
        c, h = carry
        i, f, o = self._gates(x, h)
        g = self.activation(self.input_candidate(x) + self.hidden_candidate(h))
        c = f * c + i * g
        h = o * self.activation(c)
        return (c, h), h

    def initialize_carry(self, batch_shape: tuple[int, ...], dtype=jnp.float32):
        """Zero ``(c, h)``, each shaped ``batch_shape + (layout_hidden.size,)``."""
        zeros = jnp.zeros(batch_shape + (self.layout_hidden.size,), dtype)
        return zeros, zeros


class ChiralGRUCell(_ChiralCell):
    """A chiral GRU cell: ``h, x -> h', h'``.

    ``r, z`` gates are unsigned; ``n = act(W_in x + b_in + r * (W_hn h + b_hn))``,
    ``h' = (1 - z) * n + z * h``. Shapes and contract as :class:`ChiralLSTMCell`.
    """

    num_gates = 2

    def __call__(self, carry: jax.Array, x: jax.Array):
        h = carry
        r, z = self._gates(x, h)
        n = self.activation(self.input_candidate(x) + r * self.hidden_candidate(h))
        h = (1.0 - z) * n + z * h
        return h, h

    def initialize_carry(self, batch_shape: tuple[int, ...], dtype=jnp.float32):
        """Zero ``h``, shaped ``batch_shape + (layout_hidden.size,)``."""
        return jnp.zeros(batch_shape + (self.layout_hidden.size,), dtype)


CELLS = {"lstm": ChiralLSTMCell, "gru": ChiralGRUCell}


class ChiralRNN(nnx.Module):
    """Stacked chiral recurrent layers scanned over time with ``jax.lax.scan``.

    Shapes: ``x [batch, time, layout_in.size] -> y [batch, time, hidden.size]``.
    Layer ``k`` maps ``layouts[k] -> layouts[k+1]`` (``layouts = [layout_in,
    *hidden_layouts]``). Dropout (plain, as in the paper) is applied to the
    output sequence of every layer but the last.

    Args:
      layout_in: input channel layout.
      hidden_layouts: one hidden layout per layer.
      cell: ``"lstm"`` or ``"gru"``.
      dropout: rate between layers.
      rngs: ``params`` and ``dropout`` streams.
      **cell_kwargs: passed to every cell (``mode``, ``dtype``, initialisers...).
    """

    def __init__(
        self,
        layout_in: ChiralLayout,
        hidden_layouts: Sequence[ChiralLayout],
        *,
        cell: str = "lstm",
        dropout: float = 0.0,
        rngs: nnx.Rngs,
        **cell_kwargs,
    ):
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        if not hidden_layouts:
            raise ValueError("ChiralRNN needs at least one hidden layout")
        layouts = [layout_in, *hidden_layouts]
        self.cells = nnx.List(
            [
                CELLS[cell](a, b, rngs=rngs, **cell_kwargs)
                for a, b in zip(layouts[:-1], layouts[1:], strict=True)
            ]
        )
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def initialize_carry(self, batch_shape: tuple[int, ...], dtype=jnp.float32) -> list:
        """One zero carry per layer (see the cells' ``initialize_carry``)."""
        return [c.initialize_carry(batch_shape, dtype) for c in self.cells]

    def __call__(self, x: jax.Array, carries: list | None = None):
        """Run all layers over the whole sequence; returns ``(y, final_carries)``."""
        if x.ndim != 3:
            raise ValueError(f"ChiralRNN expects [batch, time, channels], got shape {x.shape}")
        if carries is None:
            carries = self.initialize_carry(x.shape[:1], x.dtype)
        finals = []
        for k, (cell, carry) in enumerate(zip(self.cells, carries, strict=True)):
            graphdef, state = nnx.split(cell)

            def body(carry, x_t, graphdef=graphdef, state=state):
                return nnx.merge(graphdef, state)(carry, x_t)

            carry, y = jax.lax.scan(body, carry, jnp.swapaxes(x, 0, 1))
            finals.append(carry)
            x = jnp.swapaxes(y, 0, 1)
            if k < len(self.cells) - 1:
                x = self.dropout(x)
        return x, finals

    def step(self, carries: list, x: jax.Array):
        """One time step through every layer: ``x [batch, in] -> (carries', y [batch, hidden])``."""
        new = []
        for k, (cell, carry) in enumerate(zip(self.cells, carries, strict=True)):
            carry, x = cell(carry, x)
            new.append(carry)
            if k < len(self.cells) - 1:
                x = self.dropout(x)
        return new, x
