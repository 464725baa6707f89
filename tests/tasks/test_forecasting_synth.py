"""The procedural Penn Action generator: files the loader reads, deterministic, plausible."""

import numpy as np
import pytest
from _files import modes, snapshot, umask

from chiral_tasks.forecasting import penn, synth


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("penn")
    config = synth.SynthConfig(num_videos=30, min_frames=20, max_frames=60, seed=3)
    return folder, config, synth.generate(folder, config)


def test_files_round_trip_through_the_loader(generated):
    folder, config, paths = generated
    assert [p.name for p in paths] == [f"{i:04d}.mat" for i in range(1, 31)]
    train, test = penn.load_penn_action(folder)
    assert len(train) + len(test) == 30 and 10 <= len(train) <= 20
    actions, is_train = synth.assignments(config)
    for video in train + test:
        i = int(video.name) - 1
        fields = synth.synth_video(i, penn.PENN_ACTIONS[actions[i]], is_train[i], config)
        np.testing.assert_allclose(video.joints[..., 0], fields["x"], rtol=1e-6)
        np.testing.assert_allclose(video.joints[..., 1], fields["y"], rtol=1e-6)
        np.testing.assert_array_equal(video.visibility, fields["visibility"])
        np.testing.assert_allclose(video.bbox, fields["bbox"], rtol=1e-6)
        assert video.train == bool(is_train[i]) and video.action == penn.PENN_ACTIONS[actions[i]]
        assert video.image_size == tuple(fields["dimensions"][:2]) in synth.IMAGE_SIZES
        assert 20 <= video.num_frames <= 60 and video.pose in ("front", "back", "left", "right")
    samples = penn.make_samples(train, observed=2)
    assert samples.observed.shape[1:] == (2, 13, 2) and samples.future.shape[1:] == (16, 13, 2)


def test_every_penn_class_maps_to_a_motion_and_splits_are_balanced():
    from chiral_tasks.common.actions import ACTIONS

    assert set(synth.PENN_TO_MOTION) == set(penn.PENN_ACTIONS)
    assert set(synth.PENN_TO_MOTION.values()) <= set(ACTIONS)
    actions, train = synth.assignments(synth.SynthConfig(num_videos=150))
    counts = np.bincount(actions, minlength=15)
    assert counts.min() == counts.max() == 10
    assert all(train[actions == a].sum() == 5 for a in range(15))


def test_generation_is_deterministic_and_seed_dependent():
    config = synth.SynthConfig(num_videos=4, min_frames=20, max_frames=30, seed=1)
    a = synth.synth_video(2, "golf_swing", True, config)
    b = synth.synth_video(2, "golf_swing", True, config)
    c = synth.synth_video(2, "golf_swing", True, synth.SynthConfig(seed=2))
    np.testing.assert_array_equal(a["x"], b["x"])
    assert a["x"].shape != c["x"].shape or not np.allclose(a["x"], c["x"])


def test_visibility_marks_out_of_frame_and_occluded_joints(generated):
    folder, _, _ = generated
    train, test = penn.load_penn_action(folder)
    videos = train + test
    vis = np.concatenate([v.visibility for v in videos])
    assert 0.5 < vis.mean() < 0.99  # some joints hidden, most visible
    for v in videos:
        h, w = v.image_size
        x, y = v.joints[..., 0], v.joints[..., 1]
        outside = (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)
        assert not np.any(v.visibility & outside)
    # side views hide the far side more than front views do
    hidden = {"left": [], "right": []}
    for v in videos:
        if v.pose in hidden:
            hidden[v.pose].append(1 - v.visibility.mean(0))
    if hidden["left"] and hidden["right"]:
        left_view, right_view = np.mean(hidden["left"], 0), np.mean(hidden["right"], 0)
        right_joints, left_joints = [2, 4, 6, 8, 10, 12], [1, 3, 5, 7, 9, 11]
        assert left_view[right_joints].mean() > left_view[left_joints].mean()
        assert right_view[left_joints].mean() > right_view[right_joints].mean()


def test_occlusion_of_a_joint_behind_the_torso():
    pixels = np.zeros((1, 13, 2))
    depth = np.full((1, 13), 3.0)
    # torso spans a square around the origin at depth 3; the right wrist sits behind it
    pixels[0, [1, 2, 7, 8]] = [[-50, -50], [50, -50], [-50, 50], [50, 50]]
    pixels[0, 0] = [0, -120]
    pixels[0, [3, 5, 9, 11]] = [[-200, 0], [-300, 0], [-60, 200], [-60, 300]]
    pixels[0, [4, 10, 12]] = [[200, 0], [60, 200], [60, 300]]
    pixels[0, 6] = [0, 0]
    depth[0, 6] = 3.5
    hidden = synth.occluded(pixels, depth, focal=500.0)
    assert hidden[0, 6] and hidden.sum() == 1
    depth[0, 6] = 2.5  # in front of the torso now
    assert not synth.occluded(pixels, depth, focal=500.0).any()


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="min_frames"):
        synth.SynthConfig(min_frames=50, max_frames=40)
    with pytest.raises(ValueError, match="test_fraction"):
        synth.SynthConfig(test_fraction=1.5)


TINY = synth.SynthConfig(num_videos=3, min_frames=5, max_frames=8)


def test_generate_refuses_existing_label_files_before_any_work(tmp_path, monkeypatch):
    for name in ("0002.mat", "0003.mat"):
        (tmp_path / name).write_bytes(b"real Penn Action labels")
    (tmp_path / "README").write_text("unrelated")
    before = snapshot(tmp_path)

    def no_generation(*args):
        raise AssertionError("generated before checking the folder")

    monkeypatch.setattr(synth, "synth_video", no_generation)
    with pytest.raises(FileExistsError) as err:
        synth.generate(tmp_path, TINY)
    message = str(err.value)
    assert message.startswith(f"{tmp_path}: already holds 0002.mat (and 1 more file")
    assert "--overwrite" in message
    assert snapshot(tmp_path) == before


def test_generate_leaves_other_files_alone(tmp_path):
    (tmp_path / "0004.mat").write_bytes(b"not one of the three")
    (tmp_path / "README").write_text("unrelated")
    before = snapshot(tmp_path)
    with umask(0o022):
        paths = synth.generate(tmp_path, TINY)
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before} == before
    assert set(after) == set(before) | {p.name for p in paths}  # no temporaries
    assert modes(paths) == {0o644}


def test_generate_overwrite_replaces_its_files(tmp_path):
    (tmp_path / "0001.mat").write_bytes(b"stale")
    with umask(0o022):
        paths = synth.generate(tmp_path, TINY, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0001.mat", "0002.mat", "0003.mat"]
    train, test = penn.load_penn_action(tmp_path)
    assert len(train) + len(test) == 3
    assert modes(paths) == {0o644}
