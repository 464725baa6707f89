"""A sequence of chiral modules."""

from __future__ import annotations

import jax
from flax import nnx

from chiral_jax._activation import ChiralActivation
from chiral_jax._dropout import ChiralDropout
from chiral_jax._module import ChiralModule
from chiral_jax.even_odd import EvenOdd


class ChiralSequential(ChiralModule):
    """Chiral modules applied in order; layouts must chain (``None`` passes through).

    ``__call__`` on joint-basis arrays, :meth:`even_odd` on even/odd activations (each
    module's own even/odd form: no basis change in between; an activation followed by a
    dropout runs as one elementwise map), ``to_plain()`` an ``nnx.Sequential`` of the
    modules' plain forms.
    """

    def __init__(self, *layers: ChiralModule):
        layout = None
        for k, layer in enumerate(layers):
            if not hasattr(layer, "even_odd"):
                raise TypeError(f"layer {k} ({type(layer).__name__}) is not a chiral module")
            if layout is not None and layer.layout_in is not None and layer.layout_in != layout:
                raise ValueError(
                    f"layer {k} ({type(layer).__name__}) expects input layout "
                    f"{layer.layout_in}, but the layers before it give {layout}"
                )
            layout = layer.layout_out or layout
        self.layers = nnx.List(layers)
        self.layout_in = next((m.layout_in for m in layers if m.layout_in is not None), None)
        self.layout_out = layout

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x)
        return x

    def even_odd(self, z: EvenOdd) -> EvenOdd:
        """Each module's even/odd form in turn: no basis change in between."""
        self._check_even_odd(z)
        layers = list(self.layers)
        while layers:
            layer = layers.pop(0)
            if isinstance(layer, ChiralActivation) and layers and isinstance(
                layers[0], ChiralDropout
            ):
                # One pass over the pairs for both (the mask drawn over joint channels).
                dropout = layers.pop(0)
                z = layer.even_odd(z, scale=dropout.scale(z) if dropout.active else None)
            else:
                z = layer.even_odd(z)
        return z

    def to_plain(self, rngs: nnx.Rngs | None = None) -> nnx.Sequential:
        """An ``nnx.Sequential`` of the modules' plain forms (evaluation mode)."""
        return nnx.Sequential(*(layer.to_plain(rngs) for layer in self.layers))
