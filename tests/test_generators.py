import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layouts import layout_pairs

from chiral_jax import ChiralGenerator, ChiralLayout, ChiralParams
from chiral_jax.skeletons import H36M_17

TOY = ChiralLayout(left=(0,), right=(1,), centre=(2,), dims=2, negated=(0,))
NAMED = dict(
    zip(
        "a b c d e f g h i j k l m n o p q t".split(),
        np.arange(1.0, 19.0),
        strict=True,
    )
)


def _toy_blocks(mode: str) -> dict:
    v = NAMED
    blocks = {
        "ln,ln": v["a"], "ln,lp": v["b"], "ln,rn": v["c"], "ln,rp": v["d"], "ln,cn": v["e"],
        "ln,cp": v["f"], "lp,ln": v["g"], "lp,lp": v["h"], "lp,rn": v["i"], "lp,rp": v["j"],
        "lp,cn": v["k"], "lp,cp": v["l"], "cn,ln": v["m"], "cn,lp": v["n"], "cn,cn": v["o"],
        "cp,lp": v["p"], "cp,cp": v["q"],
    }
    if mode == "complete":
        blocks["cp,ln"] = v["t"]
    return {k: jnp.full((1, 1, 1, 1), x) for k, x in blocks.items()}


@pytest.mark.parametrize("mode", ["paper", "complete"])
def test_toy_kernel_matches_the_hand_derived_matrix(mode):
    """Rows are outputs, columns inputs, both ordered [ln lp rn rp cn cp]."""
    a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, t = NAMED.values()
    t = t if mode == "complete" else 0.0
    expected = np.array(
        [
            [a, b, c, d, e, f],
            [g, h, i, j, k, l],
            [c, -d, a, -b, e, -f],
            [-i, j, -g, h, -k, l],
            [m, n, m, -n, o, 0],
            [t, p, -t, p, 0, q],
        ]
    )
    gen = ChiralGenerator(TOY, TOY, mode)
    kernel = gen.assemble_kernel(_toy_blocks(mode))
    np.testing.assert_array_equal(np.asarray(kernel).T, expected)
    assert gen.count(use_bias=False) == (18 if mode == "complete" else 17)


def test_bias_ties_left_to_right_and_zeroes_centre_negated():
    gen = ChiralGenerator(TOY, TOY)
    bias = gen.assemble_bias({"l": jnp.array([[1.0, 2.0]]), "cp": jnp.array([[3.0]])})
    np.testing.assert_array_equal(bias, [1.0, 2.0, -1.0, 2.0, 0.0, 3.0])


def test_paper_and_complete_counts_for_human36m():
    gen = ChiralGenerator(H36M_17.layout(2), H36M_17.layout(3), "paper")
    assert gen.count(use_bias=False) == 807
    full = ChiralGenerator(H36M_17.layout(2), H36M_17.layout(3), "complete")
    assert full.count(use_bias=False) == 867 == 34 * 51 // 2
    # The block the paper leaves out: 60 = |cp_out| * |ln_in| = (5 * 2) * (6 * 1).
    assert full.kernel_shapes()["cp,ln"] == (5, 2, 6, 1)


def _commutant_dimension(li: ChiralLayout, lo: ChiralLayout) -> int:
    """dim {W : T_in W = W T_out} for y = x @ W, by linear algebra."""
    t_in, t_out = li.matrix(), lo.matrix()
    constraint = np.kron(t_in, np.eye(lo.size)) - np.kron(np.eye(li.size), t_out)
    return li.size * lo.size - np.linalg.matrix_rank(constraint)


def _assembly_rank(gen: ChiralGenerator) -> int:
    shapes = gen.kernel_shapes()
    sizes = [int(np.prod(s)) for s in shapes.values()]

    def kernel_of(v):
        parts = jnp.split(v, np.cumsum(sizes)[:-1])
        blocks = {k: p.reshape(s) for (k, s), p in zip(shapes.items(), parts, strict=True)}
        return gen.assemble_kernel(blocks).reshape(-1)

    jac = jax.jacobian(kernel_of)(jnp.zeros(sum(sizes)))
    return int(np.linalg.matrix_rank(np.asarray(jac)))


# Two layout pairs by default, four more in the slow stage (a Jacobian rank each).
@pytest.mark.parametrize(
    ("li", "lo"),
    [
        pytest.param(*pair, marks=[pytest.mark.slow] if k >= 2 else [], id=f"li{k}-lo{k}")
        for k, pair in enumerate(layout_pairs(1, 6, max_joints=6, max_dims=3))
    ],
)
def test_complete_mode_spans_every_equivariant_map(li, lo):
    gen = ChiralGenerator(li, lo, "complete")
    count = gen.count(use_bias=False)
    assert count == lo.n_plus * li.n_plus + lo.n_minus * li.n_minus
    assert _assembly_rank(gen) == count == _commutant_dimension(li, lo)
    paper = ChiralGenerator(li, lo, "paper")
    assert _assembly_rank(paper) == paper.count(use_bias=False) <= count


@pytest.mark.parametrize("mode", ["paper", "complete"])
@pytest.mark.parametrize(("li", "lo"), layout_pairs(2, 4))
def test_project_inverts_assemble_and_chiralizes_dense_kernels(li, lo, mode):
    gen = ChiralGenerator(li, lo, mode, lead=(2,))
    key = jax.random.key(0)
    params = gen.init(key, jax.nn.initializers.normal(1.0), jax.nn.initializers.normal(1.0))
    assemble, project = jax.jit(gen.assemble), jax.jit(gen.project)
    kernel, bias = assemble(params)
    back = project(kernel, bias)
    jax.tree.map(np.testing.assert_array_equal, back, params)

    dense = jax.random.normal(jax.random.key(1), gen.kernel_shape)
    tied, _ = assemble(project(dense))
    x = jax.random.normal(jax.random.key(2), (5, li.size))
    for tap in range(2):
        y = x @ tied[tap]
        np.testing.assert_allclose(li.transform(x) @ tied[tap], lo.transform(y), atol=1e-5)
    # Orthogonal projection: the residual is orthogonal to every tied kernel.
    residual = dense - tied
    np.testing.assert_allclose(jnp.vdot(residual, kernel), 0.0, atol=1e-3)
    again, _ = assemble(project(tied))
    np.testing.assert_allclose(again, tied, atol=1e-6)


@pytest.mark.parametrize("mode", ["paper", "complete"])
def test_init_keeps_unit_output_variance(mode):
    """Over many draws, unit-variance inputs give outputs of mean ~0 and std ~1 per channel."""
    li = H36M_17.layout(2)
    lo = ChiralLayout.hidden(6, 5, 6, 1 / 3)
    gen = ChiralGenerator(li, lo, mode)
    keys = jax.random.split(jax.random.key(0), 2000)
    kernels = jax.jit(
        jax.vmap(
            lambda k: gen.assemble_kernel(gen.init(k, jax.nn.initializers.lecun_normal()).kernel)
        )
    )(keys)
    x = jax.random.normal(jax.random.key(1), (2000, li.size))
    y = jnp.einsum("ni,nio->no", x, kernels)
    np.testing.assert_allclose(jnp.mean(y, axis=0), 0.0, atol=0.1)
    # Each output channel (centre ones included) keeps unit variance.
    np.testing.assert_allclose(jnp.std(y, axis=0), 1.0, atol=0.1)


def test_bad_blocks_are_named():
    gen = ChiralGenerator(TOY, TOY)
    blocks = _toy_blocks("complete")
    blocks["ln,ln"] = jnp.zeros((2, 1, 1, 1))
    with pytest.raises(ValueError, match="'ln,ln' has shape"):
        gen.assemble_kernel(blocks)
    del blocks["cp,ln"]
    with pytest.raises(ValueError, match="missing \\['cp,ln'\\]"):
        gen.assemble_kernel(blocks)
    with pytest.raises(ValueError, match="mode must be"):
        ChiralGenerator(TOY, TOY, "full")
    with pytest.raises(ValueError, match="expected \\(6, 6\\)"):
        gen.project(jnp.zeros((6, 5)))


def test_params_are_a_pytree():
    gen = ChiralGenerator(TOY, TOY)
    init = jax.nn.initializers
    params = gen.init(jax.random.key(0), init.lecun_normal(), init.zeros)
    assert isinstance(params, ChiralParams)
    assert len(jax.tree.leaves(params)) == len(gen.block_names) + 2
