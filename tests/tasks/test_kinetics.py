"""Kinetics-skeleton files (ST-GCN layouts), the clip mirror and recognition metrics."""

import json
import pickle

import numpy as np
import pytest

from chiral_jax.skeletons import OPENPOSE_18
from chiral_tasks.recognition import kinetics
from chiral_tasks.recognition.data import class_names
from chiral_tasks.recognition.metrics import confusion_matrix, plot_confusion, topk_accuracy


def _skeleton(rng, score_scale=1.0):
    pose = rng.uniform(0.05, 0.95, size=(18, 2))
    score = rng.uniform(0.2, 1.0, size=18) * score_scale
    return pose, score


def _frames(rng, num_frames, persons=1):
    return [[_skeleton(rng) for _ in range(persons)] for _ in range(num_frames)]


def test_json_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    frames = _frames(rng, 4)
    frames[1][0][1][[3, 7]] = 0.0  # two joints undetected in frame 1
    frames[2] = []  # a frame with no skeleton
    kinetics.write_clip_json(tmp_path / "a.json", frames, "abseiling", 3)
    data, label = kinetics.load_clip(tmp_path / "a.json", num_frames=6)
    assert label == 3
    assert data.shape == (3, 6, 18, 2) and data.dtype == np.float32
    for t in (0, 1, 3):
        pose, score = frames[t][0]
        expected_xy = np.where(score[:, None] > 0, pose - 0.5, 0.0)
        np.testing.assert_allclose(data[:2, t, :, 0].T, expected_xy, atol=1e-6)
        np.testing.assert_allclose(data[2, t, :, 0], score, atol=1e-6)
    assert not data[:, 1, [3, 7], 0].any()
    assert not data[:, 2].any() and not data[:, 4:].any() and not data[..., 1].any()


def test_frame_index_is_one_based(tmp_path):
    rng = np.random.default_rng(1)
    pose, score = _skeleton(rng)
    clip = {
        "data": [
            {
                "frame_index": 5,
                "skeleton": [{"pose": pose.reshape(-1).tolist(), "score": score.tolist()}],
            }
        ],
        "label": "x",
        "label_index": 0,
    }
    (tmp_path / "c.json").write_text(json.dumps(clip))
    data, _ = kinetics.load_clip(tmp_path / "c.json", num_frames=10)
    assert data[2, 4, :, 0].sum() > 0
    assert not np.delete(data, 4, axis=1).any()
    np.testing.assert_allclose(data[0, 4, :, 0], pose[:, 0] - 0.5, atol=1e-6)


def test_long_clip_is_cropped(tmp_path):
    frames = _frames(np.random.default_rng(2), 305)
    kinetics.write_clip_json(tmp_path / "long.json", frames, "x", 1)
    data, _ = kinetics.load_clip(tmp_path / "long.json")
    assert data.shape == (3, 300, 18, 2)
    np.testing.assert_allclose(data[2, 299, :, 0], frames[299][0][1], atol=1e-6)


def test_persons_ranked_per_frame_by_summed_score(tmp_path):
    rng = np.random.default_rng(3)
    weak, mid, strong = (_skeleton(rng, s) for s in (0.1, 0.5, 1.0))
    frames = [[weak, mid, strong], [strong, weak, mid], [weak]]
    kinetics.write_clip_json(tmp_path / "p.json", frames, "x", 0)
    data, _ = kinetics.load_clip(tmp_path / "p.json", num_frames=3)
    for t in (0, 1):
        np.testing.assert_allclose(data[2, t, :, 0], strong[1], atol=1e-6)
        np.testing.assert_allclose(data[2, t, :, 1], mid[1], atol=1e-6)
    np.testing.assert_allclose(data[2, 2, :, 0], weak[1], atol=1e-6)
    assert not data[:, 2, :, 1].any()
    # Only the first num_person_in skeletons of a frame are read.
    data, _ = kinetics.load_clip(tmp_path / "p.json", num_frames=3, num_person_in=2)
    np.testing.assert_allclose(data[2, 0, :, 0], mid[1], atol=1e-6)


def _write_raw(path, frame_changes=None, **clip_changes):
    pose, score = _skeleton(np.random.default_rng(4))
    skeleton = {"pose": pose.reshape(-1).tolist(), "score": score.tolist()}
    frame = {"frame_index": 1, "skeleton": [skeleton]}
    for key, value in (frame_changes or {}).items():
        target = skeleton if key in ("pose", "score") else frame
        if value is None:
            del target[key]
        else:
            target[key] = value
    clip = {"data": [frame], "label": "x", "label_index": 0}
    for key, value in clip_changes.items():
        if value is None:
            del clip[key]
        else:
            clip[key] = value
    path.write_text(json.dumps(clip))


@pytest.mark.parametrize(
    ("frame_changes", "clip_changes", "message"),
    [
        ({}, {"data": None}, "missing keys \\['data'\\]"),
        ({}, {"label_index": None}, "missing keys \\['label_index'\\]"),
        ({"skeleton": None}, {}, "data\\[0\\]: missing keys \\['skeleton'\\]"),
        ({"score": None}, {}, "skeleton\\[0\\]: missing keys \\['score'\\]"),
        ({"pose": [0.5] * 34}, {}, "pose: expected a list of 36 numbers, got 34"),
        ({"score": [0.5] * 17}, {}, "score: expected a list of 18 numbers, got 17"),
        ({"pose": [float("nan")] * 36}, {}, "pose: NaN"),
        ({"frame_index": 0}, {}, "frame_index must be >= 1"),
        ({"skeleton": []}, {}, "no skeleton in the first 300 frames"),
        ({}, {"label_index": "3"}, "label_index: expected an integer"),
        ({}, {"label_index": -1}, "label_index: must be >= 0, got -1"),
        ({}, {"label_index": True}, "label_index: expected an integer"),
        # Finite in float64, inf once cast to the float32 the clip is returned in.
        ({"pose": [1e300] * 36}, {}, "pose: values beyond the float32 range"),
        ({"score": [0.5] * 17 + [-1e39]}, {}, "score: values beyond the float32 range"),
        ({"pose": [10**400] * 36}, {}, "pose: value out of range"),
        ({"pose": [True] * 36}, {}, "pose: expected numbers, got True"),
        ({"score": [0.5] * 17 + [False]}, {}, "score: expected numbers, got False"),
        ({"score": ["0.5"] * 18}, {}, "score: expected numbers, got '0.5'"),
        ({"pose": [[0.5]] * 36}, {}, "pose: expected numbers, got \\[0.5\\]"),
    ],
)
def test_invalid_clip_raises_naming_file(tmp_path, frame_changes, clip_changes, message):
    path = tmp_path / "bad_clip.json"
    _write_raw(path, frame_changes, **clip_changes)
    with pytest.raises(ValueError, match=message) as err:
        kinetics.load_clip(path)
    assert "bad_clip.json" in str(err.value)


def test_invalid_json_and_missing_file(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        kinetics.load_clip(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="absent.json"):
        kinetics.load_clip(tmp_path / "absent.json")


def _make_dir(tmp_path):
    rng = np.random.default_rng(5)
    clips = tmp_path / "clips"
    clips.mkdir()
    index = {}
    for video_id, label, has_skeleton in (
        ("vid_b", 2, True),
        ("vid_a", 0, True),
        ("vid_c", 1, False),
    ):
        frames = _frames(rng, 3) if has_skeleton else []
        kinetics.write_clip_json(clips / f"{video_id}.json", frames, f"class{label}", label)
        index[video_id] = {
            "has_skeleton": has_skeleton,
            "label": f"class{label}",
            "label_index": label,
        }
    kinetics.write_label_index(tmp_path / "index.json", index)
    return clips, index


def test_load_kinetics_dir_skips_clips_without_skeleton(tmp_path):
    clips, _ = _make_dir(tmp_path)
    data, labels, ids = kinetics.load_kinetics_dir(clips, tmp_path / "index.json", num_frames=8)
    assert ids == ["vid_a", "vid_b"]
    np.testing.assert_array_equal(labels, [0, 2])
    assert data.shape == (2, 3, 8, 18, 2)
    single, _ = kinetics.load_clip(clips / "vid_b.json", num_frames=8)
    np.testing.assert_array_equal(data[1], single)


def test_load_kinetics_dir_label_disagreements(tmp_path):
    clips, index = _make_dir(tmp_path)
    index["vid_a"]["label_index"] = 5
    kinetics.write_label_index(tmp_path / "index.json", index)
    with pytest.raises(ValueError, match="vid_a.json: label_index 0 disagrees"):
        kinetics.load_kinetics_dir(clips, tmp_path / "index.json")
    del index["vid_a"]
    kinetics.write_label_index(tmp_path / "index.json", index)
    with pytest.raises(ValueError, match="'vid_a' is not in"):
        kinetics.load_kinetics_dir(clips, tmp_path / "index.json")


def test_negative_label_in_label_index_raises(tmp_path):
    clips, index = _make_dir(tmp_path)
    # Clip and index agree on -1: still not a class.
    rng = np.random.default_rng(8)
    kinetics.write_clip_json(clips / "vid_a.json", _frames(rng, 3), "class0", -1)
    index["vid_a"]["label_index"] = -1
    kinetics.write_label_index(tmp_path / "index.json", index)
    with pytest.raises(ValueError, match="index.json: 'vid_a': label_index: must be >= 0"):
        kinetics.load_kinetics_dir(clips, tmp_path / "index.json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label_index": -3}, "label_index: must be >= 0, got -3"),
        ({"label_index": 1.0}, "label_index: expected an integer"),
        ({"has_skeleton": "false"}, "has_skeleton must be true or false, got 'false'"),
        ({"has_skeleton": 0}, "has_skeleton must be true or false"),
        ({"label": 3}, "label must be a string"),
    ],
)
def test_malformed_label_index_raises_naming_file(tmp_path, change, message):
    clips, index = _make_dir(tmp_path)
    raw = {video_id: dict(entry) for video_id, entry in index.items()}
    raw["vid_c"].update(change)  # vid_c has no skeleton: its entry is checked all the same
    (tmp_path / "index.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=f"index.json: 'vid_c': {message}"):
        kinetics.load_kinetics_dir(clips, tmp_path / "index.json")


def test_write_label_index_requires_fields(tmp_path):
    with pytest.raises(ValueError, match="lacks \\['has_skeleton'\\]"):
        kinetics.write_label_index(tmp_path / "i.json", {"v": {"label": "a", "label_index": 0}})


def test_npy_split_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    data = rng.normal(size=(3, 3, 10, 18, 2)).astype(np.float32)
    kinetics.save_npy_split(
        tmp_path / "d.npy", tmp_path / "l.json", data, [4, 0, 9], ["a", "b", "c"]
    )
    loaded, labels, names = kinetics.load_npy_split(tmp_path / "d.npy", tmp_path / "l.json")
    assert isinstance(loaded, np.memmap)
    np.testing.assert_array_equal(loaded, data)
    np.testing.assert_array_equal(labels, [4, 0, 9])
    assert labels.dtype == np.int64 and names == ["a", "b", "c"]


def test_npy_split_validation(tmp_path):
    data = np.zeros((2, 3, 4, 18, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="2 samples, 3 labels"):
        kinetics.save_npy_split(
            tmp_path / "d.npy", tmp_path / "l.json", data, [0, 1, 2], ["a", "b", "c"]
        )
    with pytest.raises(ValueError, match="data must have shape"):
        kinetics.save_npy_split(
            tmp_path / "d.npy", tmp_path / "l.json", data[:, :2], [0, 1], ["a", "b"]
        )
    data[1, 0, 2, 5, 0] = np.nan
    kinetics.save_npy_split(tmp_path / "d.npy", tmp_path / "l.json", data, [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="d.npy: NaN"):
        kinetics.load_npy_split(tmp_path / "d.npy", tmp_path / "l.json")


def _split_files(tmp_path, data=None, **label_json):
    data = np.zeros((2, 3, 4, 18, 2), dtype=np.float32) if data is None else data
    np.save(tmp_path / "d.npy", data)
    labels = {"sample_name": ["a", "b"], "label": [0, 1], **label_json}
    (tmp_path / "l.json").write_text(json.dumps(labels))
    return tmp_path / "d.npy", tmp_path / "l.json"


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"label": [0, -1]}, "l.json: label -1 of sample 'b' is negative"),
        ({"label": [0, True]}, "l.json: 'label' must hold integers, got True"),
        ({"label": [0, 1.0]}, "l.json: 'label' must hold integers, got 1.0"),
        ({"label": {"a": 0, "b": 1}}, "l.json: 'label' must be a list"),
        ({"sample_name": "ab"}, "l.json: sample names must be a list, got str"),
        ({"sample_name": ["a", 2]}, "l.json: sample names must be strings, got 2"),
        ({"sample_name": ["a", "a"]}, "l.json: sample name 'a' appears more than once"),
        ({"sample_name": ["a"]}, "l.json: 1 sample names for 2 labels"),
    ],
)
def test_bad_split_labels_raise_naming_label_file(tmp_path, labels, message):
    data_npy, label_json = _split_files(tmp_path, **labels)
    with pytest.raises(ValueError, match=message):
        kinetics.load_npy_split(data_npy, label_json)


def test_bad_split_data_raises_naming_data_file(tmp_path):
    # 1e300 is finite in float64 and inf in float32, the dtype callers get.
    data = np.zeros((2, 3, 4, 18, 2))
    data[1, 0, 2, 5, 0] = 1e300
    data_npy, label_json = _split_files(tmp_path, data)
    with pytest.raises(ValueError, match="d.npy: data must be float32, got float64"):
        kinetics.load_npy_split(data_npy, label_json)
    for bad in (np.zeros((2, 3, 4, 18, 2), bool), np.full((2, 3, 4, 18, 2), "x")):
        data_npy, label_json = _split_files(tmp_path, bad)
        with pytest.raises(ValueError, match="d.npy: data must be float32, got (bool|<U1)$"):
            kinetics.load_npy_split(data_npy, label_json)
    data_npy, label_json = _split_files(tmp_path, np.zeros((2, 3, 0, 18, 2), np.float32))
    with pytest.raises(ValueError, match=r"d.npy: no data \(shape \(2, 3, 0, 18, 2\)\)"):
        kinetics.load_npy_split(data_npy, label_json)
    empty = np.zeros((0, 3, 4, 18, 2), np.float32)
    data_npy, label_json = _split_files(tmp_path, empty, sample_name=[], label=[])
    with pytest.raises(ValueError, match="d.npy: no data"):
        kinetics.load_npy_split(data_npy, label_json)


def test_bad_pickled_labels_raise_naming_file(tmp_path):
    np.save(tmp_path / "train_data.npy", np.zeros((2, 3, 4, 18, 2), dtype=np.float32))
    label_pkl = tmp_path / "train_label.pkl"
    with open(label_pkl, "wb") as f:
        pickle.dump((["s0", "s1"], [7, -1]), f)
    with pytest.raises(ValueError, match="train_label.pkl: label -1 of sample 's1' is negative"):
        kinetics.load_npy_split(tmp_path / "train_data.npy", label_pkl, trust_pickle=True)
    with open(label_pkl, "wb") as f:
        pickle.dump((["s0", "s0"], np.array([7, 3])), f)
    with pytest.raises(ValueError, match="train_label.pkl: sample name 's0' appears more"):
        kinetics.load_npy_split(tmp_path / "train_data.npy", label_pkl, trust_pickle=True)
    label_pkl.write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="train_label.pkl: not a readable pickle"):
        kinetics.load_npy_split(tmp_path / "train_data.npy", label_pkl, trust_pickle=True)


def test_pickle_labels_need_trust(tmp_path):
    data = np.zeros((2, 3, 4, 18, 2), dtype=np.float32)
    np.save(tmp_path / "train_data.npy", data)
    with open(tmp_path / "train_label.pkl", "wb") as f:
        pickle.dump((["s0", "s1"], [7, 3]), f)
    with pytest.raises(ValueError, match="trust_pickle=True"):
        kinetics.load_npy_split(tmp_path / "train_data.npy", tmp_path / "train_label.pkl")
    _, labels, names = kinetics.load_npy_split(
        tmp_path / "train_data.npy", tmp_path / "train_label.pkl", trust_pickle=True
    )
    np.testing.assert_array_equal(labels, [7, 3])
    assert names == ["s0", "s1"]


def _index_entry(label, label_index):
    return {"has_skeleton": True, "label": label, "label_index": label_index}


def test_class_names_from_label_indices(tmp_path):
    kinetics.write_label_index(
        tmp_path / "kinetics_train_label.json", {"v1": _index_entry("run", 2)}
    )
    kinetics.write_label_index(tmp_path / "kinetics_val_label.json", {"v2": _index_entry("hop", 0)})
    assert class_names(tmp_path, 2) == ["hop", "class 1", "run"]
    (tmp_path / "kinetics_val_label.json").write_text(json.dumps({"v2": _index_entry("hop", -1)}))
    with pytest.raises(
        ValueError, match="kinetics_val_label.json: 'v2': label_index: must be >= 0"
    ):
        class_names(tmp_path, 2)
    (tmp_path / "kinetics_val_label.json").write_text("{not json")
    with pytest.raises(ValueError, match="kinetics_val_label.json: not valid JSON"):
        class_names(tmp_path, 2)
    kinetics.write_label_index(tmp_path / "kinetics_val_label.json", {"v2": _index_entry("hop", 2)})
    with pytest.raises(ValueError, match="kinetics_val_label.json: 'v2' names class 2 'hop', but"):
        class_names(tmp_path, 2)


def test_class_names_file(tmp_path):
    names_file = tmp_path / "label_name.txt"
    names_file.write_text("hop\nrun\nskip\n\n")  # trailing blank lines are fine
    assert class_names(tmp_path, 3) == ["hop", "run", "skip"]
    with pytest.raises(ValueError, match="label_name.txt names 3 classes but the labels need 4"):
        class_names(tmp_path, 4)
    names_file.write_text("hop\n\nrun\nskip\n")  # "run" would become class 2
    with pytest.raises(ValueError, match="label_name.txt: line 2 is blank"):
        class_names(tmp_path, 3)


def test_mirror_clip():
    rng = np.random.default_rng(7)
    data = rng.normal(size=(3, 5, 18, 2)).astype(np.float32)
    mirrored = kinetics.mirror_clip(data)
    for left, right in zip(OPENPOSE_18.left, OPENPOSE_18.right, strict=True):
        np.testing.assert_array_equal(mirrored[0, :, left], -data[0, :, right])
        np.testing.assert_array_equal(mirrored[1:, :, right], data[1:, :, left])
    np.testing.assert_array_equal(mirrored[0, :, [0, 1]], -data[0, :, [0, 1]])
    np.testing.assert_array_equal(mirrored[1:, :, [0, 1]], data[1:, :, [0, 1]])
    np.testing.assert_array_equal(kinetics.mirror_clip(mirrored), data)
    batched = kinetics.mirror_clip(np.stack([data, data]))
    np.testing.assert_array_equal(batched[1], mirrored)
    with pytest.raises(ValueError, match="D=3 dims on axis -4, got sizes \\(18, 2\\)"):
        kinetics.mirror_clip(data[:2])


# -- recognition metrics -----------------------------------------------------------------


def test_topk_accuracy_hand_case():
    logits = np.array(
        [
            [0.1, 0.9, 0.0, 0.5],  # label 1: rank 0
            [0.8, 0.1, 0.3, 0.2],  # label 2: rank 1
            [0.4, 0.3, 0.2, 0.1],  # label 3: rank 3
        ]
    )
    labels = np.array([1, 2, 3])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, labels, 2) == pytest.approx(2 / 3)
    assert topk_accuracy(logits, labels, 4) == 1.0


def test_topk_accuracy_ties_count_against():
    assert topk_accuracy(np.zeros((2, 3)), np.array([0, 2]), 1) == 0.0
    assert topk_accuracy(np.array([[1.0, 1.0, 0.0]]), np.array([0]), 2) == 1.0


def test_topk_accuracy_validation():
    with pytest.raises(ValueError, match="k must lie"):
        topk_accuracy(np.zeros((2, 3)), np.array([0, 1]), 4)
    with pytest.raises(ValueError, match="labels must lie"):
        topk_accuracy(np.zeros((2, 3)), np.array([0, 3]), 1)
    with pytest.raises(ValueError, match="labels must have shape"):
        topk_accuracy(np.zeros((2, 3)), np.array([0]), 1)
    with pytest.raises(ValueError, match="NaN"):
        topk_accuracy(np.full((1, 3), np.nan), np.array([0]), 1)


def test_confusion_matrix_hand_case():
    matrix = confusion_matrix(np.array([0, 2, 2, 1, 0]), np.array([0, 2, 1, 1, 2]), 3)
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 1, 1], [1, 0, 1]])
    with pytest.raises(ValueError, match="pred must lie"):
        confusion_matrix(np.array([3]), np.array([0]), 3)


def test_plot_confusion_writes_png(tmp_path):
    matrix = np.array([[3, 1], [0, 2]])
    plot_confusion(tmp_path / "cm.png", matrix, ["walk", "run"])
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="2 class names"):
        plot_confusion(tmp_path / "bad.png", np.zeros((3, 3)), ["walk", "run"])
