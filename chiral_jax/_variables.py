"""Variable types of the chiral layers."""

from flax import nnx


class ChiralParam(nnx.Param):
    """A free weight block of a tied chiral layer.

    A subclass of ``nnx.Param``: optimisers and ``nnx.state(model, nnx.Param)`` see
    it as usual; ``nnx.state(model, ChiralParam)`` selects only the free blocks.
    """
