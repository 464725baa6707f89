"""The procedural Kinetics-skeleton generator, its two formats, and the augmentation."""

import json

import numpy as np
import pytest
from _files import modes, snapshot, umask

from chiral_tasks.recognition import synth
from chiral_tasks.recognition.augment import Augment, crop, valid_length
from chiral_tasks.recognition.data import class_names, load_split
from chiral_tasks.recognition.kinetics import load_clip, load_kinetics_dir, load_npy_split
from chiral_tasks.recognition.synth import SynthConfig, generate

TINY = SynthConfig(
    classes=("waving", "squat"), clips_per_class=4, val_fraction=0.25, min_frames=40,
    max_frames=80, second_person=0.5,
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    counts = generate(root, TINY)
    return root, counts


def test_json_round_trip_matches_the_npy_split(tiny):
    root, counts = tiny
    assert counts == {"train": 6, "val": 2}
    for split in ("train", "val"):
        data, labels, ids = load_kinetics_dir(
            root / f"kinetics_{split}", root / f"kinetics_{split}_label.json"
        )
        npy, npy_labels, names = load_npy_split(
            root / f"{split}_data.npy", root / f"{split}_label.json"
        )
        assert data.shape == (counts[split], 3, 300, 18, 2)
        np.testing.assert_array_equal(np.asarray(npy), data)
        np.testing.assert_array_equal(npy_labels, labels)
        assert names == ids and f"{split}_empty" not in ids  # has_skeleton false: skipped
        assert sorted(set(labels.tolist())) == [0, 1]
        for fmt in ("json", "npy"):
            loaded = load_split(root, split, format=fmt)
            np.testing.assert_array_equal(np.asarray(loaded.data), data)
    assert class_names(root, 2) == ["waving", "squat"]
    index = json.loads((root / "kinetics_train_label.json").read_text())
    assert index["train_empty"]["has_skeleton"] is False
    assert index["train_00001"] == {"has_skeleton": True, "label": "squat", "label_index": 1}


def test_detections_look_like_openpose(tiny):
    root, _ = tiny
    data, _, _ = load_npy_split(root / "train_data.npy", root / "train_label.json")
    data = np.asarray(data)
    score, xy = data[:, 2], data[:, :2]
    seen = score > 0
    assert 0.0 < seen.mean() < 1.0 and score.max() <= 1.0
    assert np.all(np.abs(xy) <= 0.5) and np.all(xy[:, 0][~seen] == 0)
    lost_inside = ~seen[:, :, :, 0] & seen[:, :, :, 0].any(axis=2, keepdims=True)
    assert lost_inside.any()  # some joints missing in frames where the person is detected
    lengths = valid_length(data)
    assert lengths.min() >= 1 and lengths.max() <= TINY.max_frames
    assert (data[:, 2, :, :, 1] > 0).any()  # a second person appears somewhere
    # Image y points down: the nose is above the ankles on average.
    nose_y = xy[:, 1, :, 0][seen[:, :, 0]].mean()
    ankle_y = xy[:, 1, :, 10][seen[:, :, 10]].mean()
    assert nose_y < ankle_y


def test_generator_is_deterministic(tiny, tmp_path):
    root, _ = tiny
    generate(tmp_path, TINY)
    for name in ("kinetics_val/val_00001.json", "val_label.json"):
        assert (tmp_path / name).read_bytes() == (root / name).read_bytes()


def test_clips_longer_than_300_frames_are_cropped_by_the_loader(tmp_path):
    config = SynthConfig(
        classes=("clapping", "boxing"), clips_per_class=2, val_fraction=0.5,
        min_frames=320, max_frames=330, second_person=0.0, missing=0.0, missed_person=0.0,
    )  # fmt: skip
    generate(tmp_path, config)
    path = tmp_path / "kinetics_train" / "train_00000.json"
    frames = json.loads(path.read_text())["data"]
    assert max(f["frame_index"] for f in frames) >= 320
    data, _ = load_clip(path)
    assert data.shape == (3, 300, 18, 2)
    assert (data[2, -1, :, 0] > 0).any()  # frame 300 is kept, later ones dropped


def test_augment_crops_valid_frames_and_keeps_lost_joints_at_zero(tiny):
    root, _ = tiny
    data = np.asarray(load_split(root, "train").data[:4])
    rng = np.random.default_rng(0)
    cropped = crop(rng, data, 32)
    assert cropped.shape == (4, 3, 32, 18, 2)
    assert np.all(cropped[:, 2].max(axis=(1, 2, 3)) > 0)
    out = Augment(window=32)(np.random.default_rng(1), {"data": data, "label": np.arange(4)})
    again = Augment(window=32)(np.random.default_rng(1), {"data": data, "label": np.arange(4)})
    np.testing.assert_array_equal(out["data"], again["data"])
    lost = out["data"][:, 2] == 0
    assert np.all(out["data"][:, 0][lost] == 0) and np.all(out["data"][:, 1][lost] == 0)
    unmoved = crop(np.random.default_rng(1), data, 32)
    assert not np.allclose(out["data"][:, 0][~lost], unmoved[:, 0][~lost])


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="unknown actions"):
        SynthConfig(classes=("waving", "moonwalk"))
    with pytest.raises(ValueError, match="each split"):
        SynthConfig(clips_per_class=1)
    with pytest.raises(ValueError, match="window"):
        Augment(window=0)


MINI = SynthConfig(
    classes=("waving", "squat"), clips_per_class=2, val_fraction=0.5, min_frames=5, max_frames=8
)


def test_generate_refuses_existing_files_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "kinetics_train").mkdir()
    (tmp_path / "kinetics_train" / "train_00001.json").write_text("{}")
    (tmp_path / "kinetics_train" / "-3B32lodo2M.json").write_text("{}")  # a real clip's name
    (tmp_path / "kinetics_val_label.json").write_text('{"real": "index"}')
    (tmp_path / "train_label.pkl").write_bytes(b"unrelated")
    before = snapshot(tmp_path)

    def no_generation(*args):
        raise AssertionError("generated before checking the folder")

    monkeypatch.setattr(synth, "make_clip", no_generation)
    with pytest.raises(FileExistsError) as err:
        generate(tmp_path, MINI)
    message = str(err.value)
    assert message.startswith(
        f"{tmp_path}: already holds kinetics_train/train_00001.json (and 1 more file "
    )
    assert "--overwrite" in message
    assert snapshot(tmp_path) == before


def test_generate_leaves_other_files_alone(tmp_path):
    (tmp_path / "train_label.pkl").write_bytes(b"ST-GCN's pickled labels")
    (tmp_path / "README").write_text("unrelated")
    before = snapshot(tmp_path)
    with umask(0o022):
        generate(tmp_path, MINI)
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before} == before
    written = synth.output_paths(tmp_path, MINI)
    new = set(before) | {str(p.relative_to(tmp_path)) for p in written}
    assert set(after) == new | {"kinetics_train", "kinetics_val"}  # no temporaries
    assert modes(written) == {0o644}


def test_generate_overwrite_replaces_its_files(tmp_path):
    (tmp_path / "label_name.txt").write_text("stale\n")
    (tmp_path / "val_data.npy").write_bytes(b"stale")
    with umask(0o022):
        counts = generate(tmp_path, MINI, overwrite=True)
    assert (tmp_path / "label_name.txt").read_text() == "waving\nsquat\n"
    data, labels, _ = load_npy_split(tmp_path / "val_data.npy", tmp_path / "val_label.json")
    assert len(data) == len(labels) == counts["val"] == 2
    assert modes(synth.output_paths(tmp_path, MINI)) == {0o644}
