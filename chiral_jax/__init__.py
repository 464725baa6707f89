"""chiral_jax: chirality-equivariant layers for human-pose networks (JAX / Flax NNX).

The chirality transform ``T`` mirrors a pose: it negates the reflected
coordinate(s) and swaps every left joint with its right partner. Every layer
here satisfies ``f(T_in x) = T_out f(x)`` exactly, by construction: it stores
only its free weight blocks and assembles the tied kernel in a pure function.
"""

from chiral_jax._activation import ChiralActivation
from chiral_jax._attention import ChiralMultiHeadAttention
from chiral_jax._conv import ChiralConv1d
from chiral_jax._dropout import ChiralDropout
from chiral_jax._embedding import ChiralEmbedding, Embedding
from chiral_jax._layer_norm import CentredLayerNorm, ChiralLayerNorm
from chiral_jax._layout import ChiralLayout, layout_from_pairs
from chiral_jax._linear import ChiralInvariant, ChiralLinear
from chiral_jax._module import ChiralModule
from chiral_jax._norm import ChiralBatchNorm
from chiral_jax._recurrent import ChiralGRUCell, ChiralLSTMCell, ChiralRNN
from chiral_jax._sequential import ChiralSequential
from chiral_jax._variables import ChiralParam
from chiral_jax.activations import (
    ACTIVATIONS,
    ODD_ACTIVATIONS,
    activation,
    hardtanh,
    odd_activation,
)
from chiral_jax.even_odd import EvenOdd
from chiral_jax.flip import flip_average
from chiral_jax.generators import ChiralGenerator, ChiralParams
from chiral_jax.skeletons import SKELETONS, Skeleton
from chiral_jax.testing import assert_equivariant

__all__ = [
    "ACTIVATIONS",
    "CentredLayerNorm",
    "ChiralActivation",
    "ChiralBatchNorm",
    "ChiralConv1d",
    "ChiralDropout",
    "ChiralEmbedding",
    "ChiralGRUCell",
    "ChiralGenerator",
    "ChiralInvariant",
    "ChiralLSTMCell",
    "ChiralLayerNorm",
    "ChiralLayout",
    "ChiralLinear",
    "ChiralModule",
    "ChiralMultiHeadAttention",
    "ChiralParam",
    "ChiralParams",
    "ChiralRNN",
    "ChiralSequential",
    "Embedding",
    "EvenOdd",
    "ODD_ACTIVATIONS",
    "SKELETONS",
    "Skeleton",
    "activation",
    "assert_equivariant",
    "flip_average",
    "hardtanh",
    "layout_from_pairs",
    "odd_activation",
]
