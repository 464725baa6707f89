"""The interface every chiral module follows."""

from __future__ import annotations

from flax import nnx

from chiral_jax._layout import ChiralLayout
from chiral_jax.even_odd import EvenOdd


class ChiralModule(nnx.Module):
    """An equivariant module: ``f(T_in x) = T_out f(x)`` for its two layouts.

    In the spirit of escnn's ``EquivariantModule``, every chiral module offers

    * ``layout_in``, ``layout_out``: the :class:`ChiralLayout` of its input and output
      channels (``None`` for elementwise modules, which take any layout and keep it);
    * ``__call__(x)``: the module on joint-basis arrays ``[..., layout_in.size]``;
    * :meth:`even_odd`: the same map on activations in the even/odd basis
      (:class:`~chiral_jax.even_odd.EvenOdd`), so that networks composed of chiral
      modules can keep that form from input to output and change basis only there;
    * ``to_plain()``: plain Flax modules computing the same function (evaluation mode),
      for export.

    The default :meth:`even_odd` goes through the joint basis (two basis changes);
    layers override it with their direct form.
    """

    layout_in: ChiralLayout | None = None
    layout_out: ChiralLayout | None = None

    def even_odd(self, z: EvenOdd) -> EvenOdd:
        """The module on even/odd activations: ``EvenOdd`` in ``layout_in`` -> ``layout_out``."""
        self._check_even_odd(z)
        return EvenOdd.from_joint(self(z.to_joint()), self.layout_out or z.layout)

    def to_plain(self, rngs: nnx.Rngs | None = None):
        """Plain Flax module(s) with the same outputs, in evaluation mode."""
        raise NotImplementedError

    def _check_even_odd(self, z: EvenOdd) -> None:
        if not isinstance(z, EvenOdd):
            raise TypeError(
                f"{type(self).__name__}.even_odd takes EvenOdd activations, got {type(z).__name__}"
            )
        if self.layout_in is not None and z.layout != self.layout_in:
            raise ValueError(
                f"{type(self).__name__}.even_odd expects activations in its input layout "
                f"{self.layout_in}, got {z.layout}"
            )
