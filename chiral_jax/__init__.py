"""chiral_jax: chirality-equivariant layers for human-pose networks (JAX / Flax NNX)."""

from chiral_jax._layout import ChiralLayout, layout_from_pairs
from chiral_jax.skeletons import SKELETONS, Skeleton

__all__ = ["ChiralLayout", "Skeleton", "SKELETONS", "layout_from_pairs"]
