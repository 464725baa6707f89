"""Batching, windowed sampling, mirror augmentation and result files of the task core."""

import json

import numpy as np
import pytest

from chiral_jax import ChiralLayout
from chiral_jax.skeletons import H36M_17, OPENPOSE_18
from chiral_tasks.common.augment import flip_batch, mirror_where
from chiral_tasks.common.data import Batcher, WindowSampler
from chiral_tasks.common.results import (
    format_table,
    mean_std_over_seeds,
    paired_difference,
    plot_curves,
    read_results,
    write_results,
)

# -- Batcher ---------------------------------------------------------------------------


def test_batcher_covers_every_sample_once_per_epoch_in_a_seeded_order():
    b = Batcher({"x": np.arange(10), "y": np.arange(10) * 2}, batch_size=4, seed=3)
    assert len(b) == 3
    epoch0 = list(b)
    assert [len(batch["x"]) for batch in epoch0] == [4, 4, 2]
    seen0 = np.concatenate([batch["x"] for batch in epoch0])
    assert sorted(seen0.tolist()) == list(range(10))
    assert all(np.array_equal(batch["y"], 2 * batch["x"]) for batch in epoch0)
    np.testing.assert_array_equal(seen0, np.random.default_rng((3, 0)).permutation(10))
    seen1 = np.concatenate([batch["x"] for batch in b])
    np.testing.assert_array_equal(seen1, np.random.default_rng((3, 1)).permutation(10))
    assert b.state()["epoch"] == 2 and b.state()["batch"] == 0


def test_batcher_drop_last_and_no_shuffle():
    b = Batcher({"x": np.arange(10)}, batch_size=4, shuffle=False, drop_last=True)
    assert len(b) == 2
    assert [batch["x"].tolist() for batch in b] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="no batches"):
        Batcher({"x": np.arange(3)}, batch_size=4, drop_last=True)


def test_batcher_resumes_at_the_exact_next_batch():
    data = {"x": np.arange(23)}
    straight = Batcher(data, batch_size=5, seed=7)
    expected = [b["x"].tolist() for b in straight] + [b["x"].tolist() for b in straight]

    first = Batcher(data, batch_size=5, seed=7)
    got = [b["x"].tolist() for b in first]
    it = iter(first)
    got.append(next(it)["x"].tolist())
    got.append(next(it)["x"].tolist())
    saved = first.state()
    assert saved["epoch"] == 1 and saved["batch"] == 2

    second = Batcher(data, batch_size=5, seed=7)
    second.restore(json.loads(json.dumps(saved)))
    got += [b["x"].tolist() for b in second]
    assert got == expected


def test_batcher_restore_refuses_a_different_dataset_or_seed():
    saved = Batcher({"x": np.arange(12)}, batch_size=4, seed=0).state()
    with pytest.raises(ValueError, match="num_samples"):
        Batcher({"x": np.arange(13)}, batch_size=4, seed=0).restore(saved)
    with pytest.raises(ValueError, match="seed"):
        Batcher({"x": np.arange(12)}, batch_size=4, seed=1).restore(saved)
    with pytest.raises(ValueError, match="out of range"):
        Batcher({"x": np.arange(12)}, batch_size=4).restore({"epoch": 0, "batch": 4})


def test_batcher_over_a_fetch_callable_and_bad_inputs():
    b = Batcher(6, batch_size=4, fetch=lambda idx: {"i": idx * 10}, shuffle=False)
    assert [batch["i"].tolist() for batch in b] == [[0, 10, 20, 30], [40, 50]]
    with pytest.raises(ValueError, match="leading axis"):
        Batcher({"x": np.zeros(3), "y": np.zeros(4)}, batch_size=2)
    with pytest.raises(ValueError, match="fetch"):
        Batcher(6, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        Batcher({"x": np.zeros(3)}, batch_size=0)


def test_batcher_transform_draws_depend_only_on_the_position():
    def add_noise(rng, batch):
        return {"x": batch["x"] + rng.random(len(batch["x"]))}

    data = {"x": np.zeros(8)}
    full = [b["x"] for b in Batcher(data, batch_size=2, seed=1, transform=add_noise)]
    resumed = Batcher(data, batch_size=2, seed=1, transform=add_noise)
    resumed.restore({"epoch": 0, "batch": 2})
    tail = [b["x"] for b in resumed]
    assert len(tail) == 2
    for a, b in zip(full[2:], tail, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(full[0], full[1])


# -- WindowSampler ----------------------------------------------------------------------


def _frames(n, offset=0.0):
    """A sequence whose frame ``t`` holds the value ``offset + t``, shape [n, 1, 1]."""
    return (offset + np.arange(n, dtype=np.float64)).reshape(n, 1, 1)


def _values(x):
    """The frame values of windows shaped [B, W, 1, 1], as nested lists [B][W]."""
    return x.reshape(x.shape[:2]).tolist()


def test_window_sampler_windows_and_edge_padding_by_hand():
    # T=5, L=2: 3 chunks, offset (6 - 5) // 2 = 0, target starts 0, 2, 4.
    s = WindowSampler([_frames(5)], [_frames(5, 100.0)], chunk_length=2, pad=1)
    assert len(s) == 3
    batch = s.fetch(np.arange(3))
    assert _values(batch["inputs"]) == [[0, 0, 1, 2], [1, 2, 3, 4], [3, 4, 4, 4]]
    assert _values(batch["targets"]) == [[100, 101], [102, 103], [104, 104]]
    assert batch["sequence"].tolist() == [0, 0, 0]
    assert batch["start"].tolist() == [0, 2, 4]
    assert batch["inputs"].shape == (3, 4, 1, 1) and batch["targets"].shape == (3, 2, 1, 1)


def test_window_sampler_centres_chunks_and_counts_per_sequence():
    # T=4, L=3: 2 chunks, offset (6 - 4) // 2 = 1, target starts -1 and 2.
    s = WindowSampler([_frames(4), _frames(7, 10.0)], [_frames(4), _frames(7, 10.0)], 3, pad=2)
    assert len(s) == 2 + 3  # ceil(4/3) + ceil(7/3)
    batch = s.fetch(np.arange(5))
    assert batch["sequence"].tolist() == [0, 0, 1, 1, 1]
    # T=7, L=3: offset (9 - 7) // 2 = 1, starts -1, 2, 5.
    assert batch["start"].tolist() == [-1, 2, -1, 2, 5]
    assert _values(batch["targets"])[:2] == [[0, 0, 1], [2, 3, 3]]
    assert _values(batch["inputs"])[0] == [0, 0, 0, 0, 1, 2, 3]
    assert _values(batch["inputs"])[4] == [13, 14, 15, 16, 16, 16, 16]


def test_window_sampler_causal_shift_moves_the_input_window_into_the_past():
    s = WindowSampler([_frames(6)], None, chunk_length=1, pad=2, causal_shift=2)
    batch = s.fetch(np.array([0, 3]))
    assert "targets" not in batch
    # Target frame t sees inputs t - 4 .. t: the window ends at the output frame.
    assert _values(batch["inputs"]) == [[0, 0, 0, 0, 0], [0, 0, 1, 2, 3]]


def test_window_sampler_feeds_a_batcher_and_rejects_bad_sequences():
    s = WindowSampler([_frames(5), _frames(3)], [_frames(5), _frames(3)], chunk_length=1)
    b = Batcher(s, batch_size=3, shuffle=False)
    batches = list(b)
    assert len(b) == 3
    starts = np.concatenate([x["start"] for x in batches])
    assert starts.tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    with pytest.raises(ValueError, match="sequence 1: inputs have 3 frames but targets have 4"):
        WindowSampler([_frames(5), _frames(3)], [_frames(5), _frames(4)], 1)
    bad = _frames(5)
    bad[2] = np.nan
    with pytest.raises(ValueError, match=r"input sequence 0 has non-finite values at frames \[2\]"):
        WindowSampler([bad], None, 1)
    with pytest.raises(ValueError, match="T >= 1"):
        WindowSampler([np.zeros((0, 1, 1))], None, 1)


# -- mirror augmentation ----------------------------------------------------------------


def test_mirror_where_on_channels_first_skeleton_tensors():
    layout = OPENPOSE_18.layout(dims=3)  # x, y, score: only x negated
    x = np.random.default_rng(1).normal(size=(2, 3, 6, 18, 2))  # [N, C, T, V, M]
    out = mirror_where(np.array([True, False]), {"x": x}, {"x": layout}, axes={"x": (3, 1)})
    moved = np.moveaxis(x[0], (2, 0), (-2, -1))
    expected = np.moveaxis(layout.transform(moved), (-2, -1), (2, 0))
    np.testing.assert_array_equal(out["x"][0], expected)
    np.testing.assert_array_equal(out["x"][1], x[1])


def test_flip_batch_all_none_and_per_sample_consistency():
    layouts = {"pose2d": H36M_17.layout(dims=2), "pose3d": H36M_17.layout(dims=3)}
    rng = np.random.default_rng(0)
    batch = {
        "pose2d": rng.normal(size=(16, 3, 17, 2)).astype(np.float32),
        "pose3d": rng.normal(size=(16, 1, 17, 3)).astype(np.float32),
        "label": np.arange(16),
    }
    flipped, mask = flip_batch(np.random.default_rng(1), batch, layouts, prob=1.0)
    assert mask.all()
    for key, layout in layouts.items():
        np.testing.assert_array_equal(flipped[key], np.asarray(layout.transform(batch[key])))
    np.testing.assert_array_equal(flipped["label"], batch["label"])

    same, mask = flip_batch(np.random.default_rng(1), batch, layouts, prob=0.0)
    assert not mask.any()
    for key in batch:
        np.testing.assert_array_equal(same[key], batch[key])

    mixed, mask = flip_batch(np.random.default_rng(2), batch, layouts, prob=0.5)
    assert 0 < mask.sum() < 16
    for key, layout in layouts.items():
        for i in range(16):
            want = layout.transform(batch[key][i]) if mask[i] else batch[key][i]
            np.testing.assert_array_equal(mixed[key][i], want)


def test_mirrored_copies_pair_every_chunk_with_a_flagged_copy():
    layout = ChiralLayout(left=(1,), right=(2,), centre=(0,), dims=2, negated=(0,))
    seqs = [np.random.default_rng(0).normal(size=(5, 3, 2))]
    plain = WindowSampler(seqs, seqs, chunk_length=2, pad=1)
    doubled = WindowSampler(seqs, seqs, chunk_length=2, pad=1, mirrored_copies=True)
    assert len(doubled) == 2 * len(plain) == 6
    batch = doubled.fetch(np.arange(6))
    assert batch["flip"].tolist() == [False] * 3 + [True] * 3
    out = mirror_where(batch["flip"], batch, {"inputs": layout, "targets": layout})
    np.testing.assert_array_equal(out["inputs"][:3], plain.fetch(np.arange(3))["inputs"])
    np.testing.assert_array_equal(out["inputs"][3:], layout.transform(out["inputs"][:3]))
    np.testing.assert_array_equal(out["targets"][3:], layout.transform(out["targets"][:3]))


def test_flip_batch_rejects_bad_arguments():
    layout = ChiralLayout(left=(1,), right=(2,), centre=(0,), dims=2, negated=(0,))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="probability"):
        flip_batch(rng, {"x": np.zeros((2, 3, 2))}, {"x": layout}, prob=1.5)
    with pytest.raises(KeyError, match="'y'"):
        flip_batch(rng, {"x": np.zeros((2, 3, 2))}, {"y": layout})
    with pytest.raises(ValueError, match="batch axis of the mask"):
        flip_batch(
            rng, {"x": np.zeros((2, 3, 2)), "y": np.zeros((3, 3, 2))}, {"x": layout, "y": layout}
        )


# -- results ----------------------------------------------------------------------------


def test_write_results_converts_numpy_and_round_trips(tmp_path):
    path = tmp_path / "sub" / "results.json"
    write_results(path, {"mpjpe": np.float32(46.5), "per_action": {"Walk": np.array([1.0, 2.0])}})
    assert read_results(path) == {"mpjpe": 46.5, "per_action": {"Walk": [1.0, 2.0]}}
    with pytest.raises(TypeError, match="object"):
        write_results(path, {"bad": object()})
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid results file"):
        read_results(tmp_path / "broken.json")


def test_format_table_aligns_columns():
    rows = [
        {"model": "chiral", "mpjpe": 46.812, "epochs": 80},
        {"model": "baseline", "mpjpe": 47.1},
    ]
    lines = format_table(rows, {"model": "Model", "mpjpe": "MPJPE", "epochs": "Ep"}).splitlines()
    assert lines[0].split() == ["Model", "MPJPE", "Ep"]
    assert lines[2].split() == ["chiral", "46.81", "80"]
    assert lines[3].split() == ["baseline", "47.10", "-"]
    # Numbers are right-aligned under their header; text is left-aligned.
    assert lines[0].index("MPJPE") == lines[2].index("46.81")
    assert lines[2].index("chiral") == lines[3].index("baseline") == 0


def test_paired_difference_bootstrap_interval():
    """The interval holds the mean, is reproducible, excludes 0 for a consistent gap and
    contains it for noise; unpaired or single values are refused."""
    rng = np.random.default_rng(0)
    a = 10.0 + rng.normal(0.0, 1.0, 8)
    b = a + 2.0 + rng.normal(0.0, 0.3, 8)
    gap = paired_difference(a, b)
    assert gap["n"] == 8 and gap["ci95"][0] < gap["mean"] < gap["ci95"][1] < 0
    assert gap["mean"] == pytest.approx(float(np.mean(a - b)))
    assert paired_difference(a, b) == gap  # the same interval on every run
    same = paired_difference(rng.normal(0.0, 1.0, 8), rng.normal(0.0, 1.0, 8))
    assert same["ci95"][0] < 0 < same["ci95"][1]
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference([1.0], [2.0])
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [2.0, 3.0, 4.0])


def test_mean_std_over_seeds_nests_and_checks_keys():
    runs = [
        {"mpjpe": 40.0, "act": {"Walk": 1.0}, "model": "c"},
        {"mpjpe": 44.0, "act": {"Walk": 3.0}, "model": "c"},
    ]
    out = mean_std_over_seeds(runs, ddof=1)
    assert out["mpjpe"] == {"mean": 42.0, "std": pytest.approx(np.sqrt(8.0)), "n": 2}
    assert out["act"]["Walk"]["mean"] == 2.0 and out["model"] == "c"
    with pytest.raises(ValueError, match="keys"):
        mean_std_over_seeds([{"a": 1.0}, {"b": 1.0}])
    with pytest.raises(ValueError, match="differs"):
        mean_std_over_seeds([{"model": "a"}, {"model": "b"}])


def test_plot_curves_writes_a_png(tmp_path):
    path = tmp_path / "curves.png"
    plot_curves(
        path,
        {"train": ([1, 2, 3], [3.0, 2.0, 1.5]), "val": ([1, 2, 3], [3.5, 2.5, 2.0])},
        "epoch",
        "loss",
        "Loss",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="2 y values"):
        plot_curves(path, {"bad": ([1, 2, 3], [1.0, 2.0])}, "x", "y")
