# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A tour of chirality
#
# A pose is joints × coordinates. Its **chirality transform** `T` is its mirror image:
# negate the reflected coordinate (x) and swap every left joint with its right partner.
# A chiral layer satisfies `f(T_in x) = T_out f(x)` exactly, because it stores only its
# free weight blocks and assembles a tied, sign-flipped kernel from them.
#
# This tour shows the transform on a toy pose, a layer's equivariance, the tied kernel,
# the parameter savings, the speed of the even/odd path, and a small 2D→3D lifting
# model trained on generated motion. The words are defined in the glossary of
# `docs/concepts.md`.
#
# Figures are saved as PNGs under `$CHIRAL_TOUR_OUT` (a temporary folder by default);
# `$CHIRAL_TOUR_STEPS` sets the lifting model's training steps.

# %%
import math
import os
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from IPython.display import Image, display
from matplotlib.colors import hsv_to_rgb

from chiral_jax import ChiralGenerator, ChiralLayout, ChiralLinear, EvenOdd, assert_equivariant
from chiral_jax.skeletons import H36M_17
from chiral_tasks.common.camera import make_cameras, project_to_2d
from chiral_tasks.common.motion import make_subjects, simulate, to_skeleton
from chiral_tasks.lifting.model import TemporalModel
from chiral_tasks.lifting.plots import plot_pose

OUT = Path(os.environ.get("CHIRAL_TOUR_OUT") or tempfile.mkdtemp(prefix="chiral_tour_"))
OUT.mkdir(parents=True, exist_ok=True)
TRAIN_STEPS = int(os.environ.get("CHIRAL_TOUR_STEPS", "1000"))


def save(fig, name):
    """Save ``fig`` as ``OUT/<name>.png`` and show it."""
    fig.savefig(OUT / f"{name}.png", dpi=100, bbox_inches="tight")
    plt.show()


print("figures go to", OUT)

# %% [markdown]
# ## 1. The transform on a toy pose
#
# Three joints — left hand, right hand, head — with `(x, y)` each. The layout names the
# mirror pair (left hand ↔ right hand), the centre joint (head) and the negated dim (x).

# %%
toy = ChiralLayout(left=(0,), right=(1,), centre=(2,), dims=2, negated=(0,))
TOY_NAMES = ("left hand", "right hand", "head")
TOY_COLOURS = ("tab:blue", "tab:red", "0.3")

pose = jnp.array([[0.6, 1.4], [-0.5, 0.3], [0.1, 1.0]])  # the left hand is raised
mirrored = toy.transform(pose)


def draw_toy(ax, p, title):
    """A toy pose [3, 2]: arms from the head to each hand, joints coloured by side."""
    p = np.asarray(p)
    for hand in (0, 1):
        ax.plot(*p[[2, hand]].T, color=TOY_COLOURS[hand], lw=3)
    for j, name in enumerate(TOY_NAMES):
        ax.scatter(*p[j], s=120, color=TOY_COLOURS[j], zorder=3)
        ax.annotate(name, p[j], xytext=(6, 6), textcoords="offset points")
    ax.axvline(0.0, color="0.7", ls="--", lw=1)
    ax.set(xlim=(-1.2, 1.2), ylim=(0.0, 1.8), aspect="equal", title=title)


fig, axes = plt.subplots(1, 2, figsize=(9, 4))
draw_toy(axes[0], pose, "x: the left hand is raised")
draw_toy(axes[1], mirrored, "T x: now the right hand is")
save(fig, "toy_pose")
print("T x =", mirrored.tolist())
print("T is an involution:", bool(jnp.all(toy.transform(mirrored) == pose)))

# %% [markdown]
# ## 2. A chiral layer commutes with the mirror
#
# A `ChiralLinear` from the toy layout to itself, applied to the mirrored pose, gives the
# mirror of its output on the original pose. A plain `nnx.Linear` of the same shape
# does not.

# %%
layer = ChiralLinear(toy, toy, rngs=nnx.Rngs(0))
x = pose.reshape(-1)  # [J * D], joint-major
f_of_tx = layer(toy.transform(x)).reshape(3, 2)
t_of_fx = toy.transform(layer(x)).reshape(3, 2)

fig, axes = plt.subplots(1, 2, figsize=(9, 4))
draw_toy(axes[0], f_of_tx, "f(T x)")
draw_toy(axes[1], t_of_fx, "T f(x)")
for ax in axes:
    ax.set(xlim=(-2.5, 2.5), ylim=(-2.5, 2.5))
save(fig, "equivariance")

plain = nnx.Linear(6, 6, rngs=nnx.Rngs(0))
print("chiral: max |f(Tx) - T f(x)| =", float(jnp.max(jnp.abs(f_of_tx - t_of_fx))))
print(
    "plain:  max |f(Tx) - T f(x)| =",
    float(jnp.max(jnp.abs(plain(toy.transform(x)) - toy.transform(plain(x))))),
)
batch = jax.random.normal(jax.random.key(1), (16, toy.size))
assert_equivariant(layer, toy, toy, batch)  # raises if the contract fails

# %% [markdown]
# ## 3. The tied kernel
#
# `ChiralGenerator(layout_in, layout_out, mode)` lists the free blocks. Filling every
# free entry with its own number and assembling shows the tying: an entry and its mirror
# share a number (and a colour here), with the sign the mirror gives it; blank entries
# are structural zeros. Rows are outputs, columns inputs (the transpose of the stored
# `[n_in, n_out]` kernel).
#
# The constraint allows one block the paper's matrix leaves out: `W_cp,ln` (centre
# joints' positive dims from the left joints' negated dims, mirrored as
# `W_cp,rn = −W_cp,ln`), outlined in black. `"complete"` mode (the default) has it;
# `"paper"` mode sets it to zero.


# %%
def numbered_kernel(gen):
    """The assembled kernel [n_out, n_in] with free entries numbered 1, 2, ... (signed),
    and the numbers belonging to the ``cp,ln`` block."""
    blocks, start, cp_ln = {}, 1, set()
    for name, shape in gen.kernel_shapes().items():
        size = math.prod(shape)
        blocks[name] = jnp.arange(start, start + size, dtype=jnp.float32).reshape(shape)
        if name == "cp,ln":
            cp_ln = set(range(start, start + size))
        start += size
    return np.asarray(gen.assemble_kernel(blocks)).T.astype(int), cp_ln


def colour_image(kernel):
    """RGB image: one hue per free number (golden-ratio spread), white for zeros."""
    ids = np.abs(kernel)
    hsv = np.stack([(ids * 0.618034) % 1.0, np.full(ids.shape, 0.55), np.ones(ids.shape)], -1)
    rgb = hsv_to_rgb(hsv)
    rgb[ids == 0] = 1.0
    return rgb


def draw_kernel(ax, kernel, outline, title, numbers=False):
    """Draw a numbered kernel; ``outline`` marks entries [n_out, n_in] with a black box."""
    ax.imshow(colour_image(kernel), interpolation="nearest")
    if numbers:
        for (r, c), v in np.ndenumerate(kernel):
            if v:
                ax.text(c, r, f"{v:+d}", ha="center", va="center", fontsize=7)
    else:
        rows, cols = np.nonzero(kernel < 0)
        ax.scatter(cols, rows, marker="_", s=12, color="k", lw=0.8)
    for r, c in zip(*np.nonzero(outline), strict=True):
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="k", lw=1.5))
    ax.set(title=title, xlabel="input channel", ylabel="output channel")


def channel_labels(names, layout):
    """``name.x``, ``name.y``, ... for every flattened channel of ``layout``."""
    return [f"{n}.{'xyz'[d]}" for n in names for d in range(layout.dims)]


def compare_modes(layout_in, layout_out, name, numbers, labels):
    """Complete and paper kernels side by side, ``cp,ln`` entries outlined in both;
    ``labels``: the input and output channel names."""
    complete, cp_ln = numbered_kernel(ChiralGenerator(layout_in, layout_out, "complete"))
    paper, _ = numbered_kernel(ChiralGenerator(layout_in, layout_out, "paper"))
    outline = np.isin(np.abs(complete), list(cp_ln))
    size = (11, 5) if numbers else (15, 11)
    fig, axes = plt.subplots(1, 2, figsize=size)
    for ax, kernel, mode in ((axes[0], complete, "complete"), (axes[1], paper, "paper")):
        free = len(np.unique(np.abs(kernel[kernel != 0])))
        draw_kernel(ax, kernel, outline, f"{mode}: {free} free entries", numbers)
        ax.set_xticks(range(len(labels[0])), labels[0], rotation=90)
        ax.set_yticks(range(len(labels[1])), labels[1])
        ax.tick_params(labelsize=7 if numbers else 5)
    save(fig, name)
    return complete, paper, outline


toy_3d = ChiralLayout(left=(0,), right=(1,), centre=(2,), dims=3, negated=(0,))
labels = (channel_labels(("L", "R", "H"), toy), channel_labels(("L", "R", "H"), toy_3d))
complete, paper, outline = compare_modes(toy, toy_3d, "kernel_toy", True, labels)
print(
    "cp,ln entries (head y, z from the hands' x):",
    int(outline.sum()),
    "| zero in paper mode:",
    bool(np.all(paper[outline] == 0)),
)

# %% [markdown]
# The same for Human3.6M's 17 joints, 2D → 3D (34 → 51 channels, joints in the
# dataset's order, so pairs and centre joints interleave). Short dashes mark negative
# entries.

# %%
pose_2d, pose_3d = H36M_17.layout(2), H36M_17.layout(3)
labels = (
    channel_labels(H36M_17.joint_names, pose_2d),
    channel_labels(H36M_17.joint_names, pose_3d),
)
complete, paper, outline = compare_modes(pose_2d, pose_3d, "kernel_h36m", False, labels)

# %% [markdown]
# ## 4. Parameter counts
#
# The complete mode has `n+_out·n+_in + n−_out·n−_in` free weights, about half of a plain
# layer's `n_out·n_in`; the paper's matrix drops the `cp,ln` block on top of that.
# Weights only (biases excluded).

# %%
hidden = H36M_17.hidden_layout(1020, 1 / 3)  # 17 joints x 60 dims, a third of them negated
cases = {
    "Human3.6M 2D -> 3D (34 -> 51)": (H36M_17.layout(2), H36M_17.layout(3)),
    "hidden 1020 -> 1020": (hidden, hidden),
}
print(f"{'layer':32s} {'plain':>9s} {'paper':>9s} {'complete':>9s} {'complete/plain':>15s}")
counts = {}
for name, (li, lo) in cases.items():
    plain_count = li.size * lo.size
    paper_count = ChiralGenerator(li, lo, "paper").count(use_bias=False)
    complete_count = ChiralGenerator(li, lo, "complete").count(use_bias=False)
    counts[name] = (paper_count, complete_count, plain_count)
    print(
        f"{name:32s} {plain_count:9d} {paper_count:9d} {complete_count:9d} "
        f"{complete_count / plain_count:15.3f}"
    )
assert counts["Human3.6M 2D -> 3D (34 -> 51)"] == (807, 867, 1734)

# %% [markdown]
# ## 5. The even/odd path
#
# In the basis `u = x_L + s·x_R`, `v = x_L − s·x_R` (centre channels as they are) the
# tied kernel is block diagonal, so a layer is two half-size matmuls (`impl="even_odd"`)
# instead of one with the assembled kernel (`impl="dense"`); `impl="auto"` picks by
# width, with a cost model (`chiral_jax.even_odd.prefers_even_odd`): the even/odd path
# when the multiply-adds it saves outweigh the basis change. Below: the jitted forward
# pass, free-block assembly included, of a hidden layer 136 and 1020 (the paper's width)
# channels wide, against `nnx.Linear`, on a batch of 256, and the path `"auto"` takes.
# The numbers are medians of interleaved rounds on whatever machine runs this notebook,
# printed as measured: at small widths the assembly and the basis change can cost more
# than the halved matmul saves. The `even/odd form` column keeps input and output in the
# even/odd basis (`EvenOdd` activations, `layer.even_odd(z)`), as a network of chiral
# modules does that changes basis only at its ends: the lifting `TemporalModel` runs
# that way (`impl="even_odd"`) when it is wide enough. Everything here runs on XLA ops;
# on a CPU, `chiral_jax.fused.enable()` (opt-in) would run the basis changes and the odd
# activations between such layers as fused C++ kernels, with the same results.


# %%
def compiled(module, even_odd_form=False):
    """A jitted pure forward pass of ``module``: ``fn(state, x)``; with ``even_odd_form``,
    the layer's ``even_odd`` on ``x`` held as :class:`EvenOdd` activations."""
    graphdef, state = nnx.split(module)
    if not even_odd_form:
        fn = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    else:
        fn = jax.jit(lambda state, z: nnx.merge(graphdef, state).even_odd(z))
    return fn, state


def median_seconds(variants, inputs, rounds=15):
    """Median wall time per call of each compiled variant, timed in interleaved rounds."""
    for name, (fn, state) in variants.items():
        jax.block_until_ready(fn(state, inputs[name]))  # compile
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (fn, state) in variants.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(state, inputs[name]))
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


names = ("plain", "dense", "even_odd", "even/odd form")
print(
    f"{'width':>6s} {'auto':>9s} "
    + " ".join(f"{n + ' us':>16s}" for n in names)
    + "  ratios to plain"
)
for dims in (8, 60):
    lay = H36M_17.hidden_layout(17 * dims, 1 / 3)
    x = jax.random.normal(jax.random.key(0), (256, lay.size))
    rngs = nnx.Rngs(0)
    auto = ChiralLinear(lay, lay, rngs=rngs)
    variants = {
        "plain": compiled(nnx.Linear(lay.size, lay.size, rngs=rngs)),
        "dense": compiled(ChiralLinear(lay, lay, impl="dense", rngs=rngs)),
        "even_odd": compiled(ChiralLinear(lay, lay, impl="even_odd", rngs=rngs)),
        "even/odd form": compiled(auto, even_odd_form=True),
    }
    inputs = {n: x for n in names} | {"even/odd form": EvenOdd.from_joint(x, lay)}
    t = median_seconds(variants, inputs)
    print(
        f"{lay.size:6d} {auto.resolved_impl:>9s} "
        + " ".join(f"{t[n] * 1e6:16.0f}" for n in names)
        + "  "
        + " / ".join(f"{t[n] / t['plain']:.2f}" for n in names[1:])
    )

# %% [markdown]
# ## 6. A small lifting model
#
# VideoPose3D's temporal convolutional network (`chiral_tasks.lifting.model.TemporalModel`),
# chiral: an expand convolution and one residual block, both of width 3 (receptive field
# 9), 17 × 8 hidden channels: narrow enough that `impl="auto"` runs it `"dense"`
# (joint-basis activations; `impl="even_odd"` is the same function in the even/odd
# basis). Data: the procedural humanoid of `chiral_tasks.common.motion`,
# filmed by four Human3.6M-like cameras; inputs are 2D poses in normalised screen
# coordinates, targets 3D poses in the camera frame relative to the hip. The training
# data holds only right-handed performances; the test sequence is a held-out subject
# waving with the left hand. `TRAIN_STEPS` Adam steps on random 40-frame windows (the
# default, 1000, takes about a minute on a small CPU).

# %%
FPS, FRAMES = 50, 200
CAMERAS = make_cameras(seed=0)
SUBJECTS = make_subjects(3, seed=0)


def film(subject, action, seed, handedness):
    """Per-camera ``(2D [T, 17, 2], 3D [T, 17, 3])`` of one simulated sequence."""
    world = simulate(action, subject, FRAMES, FPS, seed, handedness)
    world = to_skeleton(world, H36M_17)
    views = []
    for camera in CAMERAS:
        cam = camera.world_to_camera(world)
        screen = project_to_2d(cam, camera.intrinsics_normalized())
        views.append((screen.astype(np.float32), (cam - cam[:, :1]).astype(np.float32)))
    return views


ACTIONS = ("walking", "waving", "boxing", "squat", "kicking")
train_views = [
    view
    for s, subject in enumerate(SUBJECTS[:2])
    for a, action in enumerate(ACTIONS)
    for view in film(subject, action, seed=10 * s + a, handedness="right")
]
inputs = np.stack([v[0] for v in train_views])  # [sequences, T, 17, 2]
targets = np.stack([v[1] for v in train_views])  # [sequences, T, 17, 3]
test_2d, test_3d = film(SUBJECTS[2], "waving", seed=99, handedness="left")[0]
print("training sequences:", inputs.shape, targets.shape)

# %%
model = TemporalModel(
    H36M_17,
    H36M_17,
    chiral=True,
    filter_widths=(3, 3),
    channels=17 * 8,
    dropout=0.1,
    rngs=nnx.Rngs(0),
)
RF, WINDOW, BATCH = model.receptive_field, 40, 32
print("form:", model.impl, "| receptive field:", RF, "| parameters:", model.num_params)
optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)


@nnx.jit
def train_step(model, optimizer, x, y):
    def mpjpe(model):
        return jnp.linalg.norm(model(x) - y, axis=-1).mean()

    loss, grads = nnx.value_and_grad(mpjpe)(model)
    optimizer.update(model, grads)
    return loss


def sample(rng):
    """Random windows: 2D [B, WINDOW, 17, 2] and the 3D of their output frames."""
    seq = rng.integers(len(inputs), size=BATCH)
    start = rng.integers(FRAMES - WINDOW + 1, size=BATCH)
    frames = start[:, None] + np.arange(WINDOW)
    outputs = frames[:, RF // 2 : WINDOW - RF // 2]
    return inputs[seq[:, None], frames], targets[seq[:, None], outputs]


rng = np.random.default_rng(0)
model.train()
start = time.perf_counter()
for step in range(1, TRAIN_STEPS + 1):
    loss = train_step(model, optimizer, *sample(rng))
    if step % max(1, TRAIN_STEPS // 5) == 0:
        print(f"step {step:5d}  train MPJPE {1000 * float(loss):6.1f} mm")
print(f"{TRAIN_STEPS} steps in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# Predictions on the held-out left-handed sequence, and on its mirror image mirrored
# back: `T_out f(T_in x)`. For a chiral model (in evaluation mode) the two are equal
# to float rounding — test-time flip augmentation would change nothing.

# %%
model.eval()
predict = nnx.jit(lambda model, x: model(x[None])[0])  # [T, 17, 2] -> [T - RF + 1, 17, 3]
predicted = np.asarray(predict(model, test_2d))
unmirrored = np.asarray(pose_3d.transform(predict(model, pose_2d.transform(test_2d))))
truth = test_3d[RF // 2 : FRAMES - RF // 2]
print(f"test MPJPE {1000 * np.linalg.norm(predicted - truth, axis=-1).mean():.1f} mm")
print(f"max |f(x) - T f(T x)| = {np.abs(predicted - unmirrored).max():.2e} m")

# The frame where the (waving) left wrist is highest: image y points down.
frame = int(np.argmin(truth[:, H36M_17.joint_names.index("left_wrist"), 1]))
plot_pose(
    OUT / "lifting.png",
    H36M_17,
    test_2d[frame + RF // 2],
    {"ground truth": truth[frame], "prediction": predicted[frame], "T f(T x)": unmirrored[frame]},
    title="held-out subject, left-handed waving (left limbs blue, right red)",
)
display(Image(filename=OUT / "lifting.png"))
