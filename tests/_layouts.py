"""Seeded random layouts for the tests: any joint order, any negated dims."""

import numpy as np

from chiral_jax import ChiralLayout


def random_layout(
    rng: np.random.Generator, *, max_joints: int = 20, max_dims: int = 8, dims: int | None = None
) -> ChiralLayout:
    """1..max_joints joints in a random order; 0.. pairs; |Dn| anywhere in 0..D."""
    num_joints = int(rng.integers(1, max_joints + 1))
    pairs = int(rng.integers(0, num_joints // 2 + 1))
    order = rng.permutation(num_joints)
    d = int(rng.integers(1, max_dims + 1)) if dims is None else dims
    negated = rng.choice(d, size=int(rng.integers(0, d + 1)), replace=False)
    return ChiralLayout(
        left=tuple(order[:pairs]),
        right=tuple(order[pairs : 2 * pairs]),
        centre=tuple(order[2 * pairs :]),
        dims=d,
        negated=tuple(negated),
    )


def layout_pairs(seed: int, count: int, **kwargs) -> list[tuple[ChiralLayout, ChiralLayout]]:
    """``count`` (in, out) layout pairs; outputs reuse or change the joint structure."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        a = random_layout(rng, **kwargs)
        b = random_layout(rng, **kwargs) if rng.random() < 0.5 else a.with_dims(
            int(rng.integers(1, 6)), float(rng.random())
        )
        out.append((a, b))
    return out
