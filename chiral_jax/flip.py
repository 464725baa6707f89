"""Test-time flip augmentation: average a model with its mirrored twin.

For any ``fn`` from poses of layout ``L_in`` to outputs of layout ``L_out``,

    g(x) = (fn(x) + T_out fn(T_in x)) / 2

is exactly equivariant, ``g(T_in x) = T_out g(x)`` (``T`` is an involution). For an
``fn`` that already is equivariant (any chiral model) the second term equals the
first, so ``g = fn`` up to float rounding and the augmentation is wasted work.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from chiral_jax._layout import ChiralLayout


def flip_average(
    fn: Callable,
    layout_in: ChiralLayout,
    layout_out: ChiralLayout,
    *,
    stacked: bool = True,
    argnum: int = 0,
) -> Callable:
    """``fn`` with test-time flip augmentation: ``(fn(x) + T_out fn(T_in x)) / 2``.

    The implementation is just::

        x_flip = layout_in.transform(x)
        y, y_flip = fn(x), fn(x_flip)      # stacked: one call on concat([x, x_flip])
        return (y + layout_out.transform(y_flip)) / 2

    Args:
      fn: the model, ``fn(..., x, ...) -> y``; ``x`` is ``[B, ..., J_in, D_in]`` (or
        flattened ``[B, ..., J_in*D_in]``) and ``y`` ``[B, ..., J_out, D_out]`` (or
        flattened), read as :meth:`ChiralLayout.transform` reads them.
      layout_in, layout_out: the layouts of ``x`` and ``y``.
      stacked: run ``fn`` once on the batch and its mirror concatenated on the
        leading axis (``2B`` rows): the same result in one call when ``fn`` treats
        rows independently, as a model in evaluation mode does. ``False`` calls
        ``fn`` twice, for functions whose rows interact (batch statistics) or
        whose batch size is fixed.
      argnum: the position of ``x`` among the positional arguments, e.g. ``1``
        for ``fn(state, x)``. The other arguments (and keyword arguments) reach
        both calls unchanged: pass only ones the mirror does not act on.

    Returns:
      ``g(*args, **kwargs)`` with ``fn``'s signature and output shape. ``g`` is
      chirality equivariant for any ``fn``, and equals ``fn`` when ``fn`` is.

    >>> from flax import nnx
    >>> from chiral_jax import ChiralLinear
    >>> from chiral_jax.skeletons import H36M_17
    >>> lin = ChiralLinear(H36M_17.layout(2), H36M_17.layout(3), rngs=nnx.Rngs(0))
    >>> x = jnp.ones((4, 34))
    >>> averaged = flip_average(lin, H36M_17.layout(2), H36M_17.layout(3))
    >>> bool(jnp.allclose(averaged(x), lin(x), atol=1e-5))
    True
    """

    def averaged(*args, **kwargs):
        x = args[argnum]

        def call(pose):
            return fn(*args[:argnum], pose, *args[argnum + 1 :], **kwargs)

        x_flip = layout_in.transform(x)
        if stacked:
            y, y_flip = jnp.split(call(jnp.concatenate([x, x_flip], axis=0)), 2, axis=0)
        else:
            y, y_flip = call(x), call(x_flip)
        return (y + layout_out.transform(y_flip)) / 2

    return averaged
