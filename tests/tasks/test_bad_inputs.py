"""Malformed inputs across the three tasks: each is one clear line, and nothing is written.

Every case runs a ``chiral`` command on a copy of a small generated dataset with one
thing broken (a file, a value, an option) and checks: a non-zero exit (2 for the
command line, 1 for data and runs), exactly one stderr line ``chiral: error: ...``
holding the expected file and problem, no traceback, no run folder, and the data
folder as it was.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from _files import snapshot

from chiral_tasks.cli import main
from chiral_tasks.forecasting import synth as penn_synth
from chiral_tasks.lifting import synth as lifting_synth
from chiral_tasks.recognition import synth as kinetics_synth


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generated")
    lifting_synth.write_dataset(lifting_synth.SynthConfig(frames=24, trials=1), root / "lifting")
    penn_synth.generate(
        root / "forecasting", penn_synth.SynthConfig(num_videos=8, min_frames=20, max_frames=30)
    )
    kinetics_synth.generate(
        root / "recognition",
        kinetics_synth.SynthConfig(classes=("waving", "squat"), clips_per_class=3),
    )
    return {task: root / task for task in ("lifting", "forecasting", "recognition")}


# -- breaking things ------------------------------------------------------------------


def _edit_npz(name: str, key: str, edit: Callable[[np.ndarray], None]):
    def apply(data: Path) -> None:
        with np.load(data / name) as npz:
            arrays = dict(npz)
        edit(arrays[key])
        np.savez(data / name, **arrays)

    return apply


def _set(index, value):
    def edit(array):
        array[index] = value

    return edit


def _garbage(name: str):
    def apply(data: Path) -> None:
        (data / name).write_bytes(b"\x00 not a real file \xff" * 8)

    return apply


def _remove(*names: str):
    def apply(data: Path) -> None:
        for name in names:
            path = data / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    return apply


def _edit_mat(name: str, field: str, edit: Callable[[np.ndarray], None]):
    def apply(data: Path) -> None:
        mat = scipy.io.loadmat(data / name)
        mat = {k: v for k, v in mat.items() if not k.startswith("__")}
        mat[field] = np.array(mat[field], dtype=np.float64)
        edit(mat[field])
        scipy.io.savemat(data / name, mat)

    return apply


def _penn_split(train: bool):
    """Keep only the videos of one split."""

    def apply(data: Path) -> None:
        for path in sorted(data.glob("*.mat")):
            if (scipy.io.loadmat(path)["train"].item() == 1) != train:
                path.unlink()

    return apply


def _edit_json(name: str, edit: Callable[[dict], None]):
    def apply(data: Path) -> None:
        record = json.loads((data / name).read_text())
        edit(record)
        (data / name).write_text(json.dumps(record))

    return apply


def _first_clip_entry(key: str, value):
    def edit(index: dict) -> None:
        next(iter(index.values()))[key] = value

    return edit


def _first_pose_value(value):
    def apply(data: Path) -> None:
        clip = sorted((data / "kinetics_train").glob("*.json"))[0]
        record = json.loads(clip.read_text())
        frame = next(f for f in record["data"] if f["skeleton"])
        frame["skeleton"][0]["pose"][0] = value
        clip.write_text(json.dumps(record))

    return apply


def _pickled_labels(data: Path) -> None:
    labels = json.loads((data / "train_label.json").read_text())
    (data / "train_label.json").unlink()
    with open(data / "train_label.pkl", "wb") as f:
        pickle.dump((labels["sample_name"], labels["label"]), f)


def _nothing(data: Path) -> None:
    pass


# -- the table --------------------------------------------------------------------------

H36M_2D = "S1/Walking/0/positions_2d"
H36M_3D = "S1/Walking/positions_3d"
VP3D = ["--data", "{data}/data_3d_h36m.npz", "--data-2d", "{data}/data_2d_h36m_synth.npz"]
KINETICS_JSON = ["--format", "json"]

CASES = [
    # (id, task, arguments, break the data, exit status, expected in the message)
    ("lifting-missing-file", "lifting", ["train", "--data", "{data}/none.npz"], _nothing, 1,
     ["none.npz", "no such dataset file"]),
    ("lifting-nan-2d", "lifting", ["train"],
     _edit_npz("h36m.npz", H36M_2D, _set((3, 2, 0), np.nan)), 1, ["h36m.npz", "NaN"]),
    ("lifting-beyond-float32", "lifting", ["train"],
     _edit_npz("h36m.npz", H36M_3D, _set((5, 1, 2), 1e300)), 1, ["h36m.npz", "NaN/inf"]),
    ("lifting-corrupt-npz", "lifting", ["train"], _garbage("h36m.npz"), 1, ["h36m.npz"]),
    ("lifting-empty-folder", "lifting", ["train"], _remove("h36m.npz"), 1,
     ["expected one of h36m.npz"]),
    ("lifting-unknown-test-subject", "lifting", ["train", "--test-subjects", "S99"], _nothing, 1,
     ["S99"]),
    ("lifting-pickle-untrusted", "lifting",
     ["train", *VP3D, "--cameras", "{data}/cameras_h36m.json"], _nothing, 1,
     ["data_3d_h36m.npz", "--allow-pickle"]),
    ("lifting-no-cameras", "lifting", ["train", *VP3D, "--allow-pickle"], _nothing, 1,
     ["cameras JSON"]),
    ("lifting-corrupt-cameras", "lifting",
     ["train", *VP3D, "--allow-pickle", "--cameras", "{data}/cameras_h36m.json"],
     _garbage("cameras_h36m.json"), 1, ["cameras_h36m.json"]),
    ("lifting-evaluate-no-run", "lifting", ["evaluate", "--run", "{data}/none"], _nothing, 1,
     ["none", "no such run folder"]),
    ("lifting-evaluate-no-model", "lifting", ["evaluate", "--run", "{data}"], _nothing, 1,
     ["no trained model (no model/model.json)"]),
    ("lifting-dropout", "lifting", ["train", "--dropout", "1.5"], _nothing, 2,
     ["--dropout", "[0, 1)"]),
    ("lifting-max-steps-0", "lifting", ["train", "--max-steps", "0"], _nothing, 2,
     ["--max-steps", ">= 1"]),
    ("lifting-channels-below-joints", "lifting", ["train", "--channels", "10"], _nothing, 2,
     ["--channels", "17 joints"]),
    ("lifting-even-filter", "lifting", ["train", "--filter-widths", "2"], _nothing, 2,
     ["--filter-widths", "odd"]),
    ("lifting-model-choice", "lifting", ["train", "--model", "other"], _nothing, 2,
     ["--model", "invalid choice"]),
    ("forecasting-missing-folder", "forecasting", ["train", "--data", "{data}/none"], _nothing, 1,
     ["none", "no such labels folder"]),
    ("forecasting-nan", "forecasting", ["train"],
     _edit_mat("0001.mat", "y", _set((4, 2), np.nan)), 1, ["0001.mat", "NaN"]),
    ("forecasting-beyond-float32", "forecasting", ["train"],
     _edit_mat("0002.mat", "x", _set((1, 1), 1e300)), 1, ["0002.mat", "float32"]),
    ("forecasting-corrupt-mat", "forecasting", ["train"], _garbage("0003.mat"), 1, ["0003.mat"]),
    ("forecasting-bad-visibility", "forecasting", ["train"],
     _edit_mat("0004.mat", "visibility", _set((0, 0), 2)), 1, ["0004.mat", "visibility"]),
    ("forecasting-one-split", "forecasting", ["train"], _penn_split(train=True), 1,
     ["both splits"]),
    ("forecasting-hidden", "forecasting", ["train", "--hidden", "27"], _nothing, 2,
     ["hidden", "multiple of 13"]),
    ("forecasting-dropout", "forecasting", ["train", "--dropout", "1.5"], _nothing, 2,
     ["--dropout"]),
    ("forecasting-epochs-0", "forecasting", ["train", "--epochs", "0"], _nothing, 2,
     ["--epochs", ">= 1"]),
    ("forecasting-evaluate-not-a-run", "forecasting", ["evaluate", "--run", "{data}"], _nothing, 1,
     ["no run.json"]),
    ("recognition-missing-folder", "recognition", ["train", "--data", "{data}/none"], _nothing, 1,
     ["none", "no such dataset folder"]),
    ("recognition-negative-label-npy", "recognition", ["train"],
     _edit_json("train_label.json", lambda r: r["label"].__setitem__(0, -1)), 1,
     ["train_label.json", "negative"]),
    ("recognition-negative-label-index", "recognition", ["train", *KINETICS_JSON],
     _edit_json("kinetics_train_label.json", _first_clip_entry("label_index", -1)), 1,
     ["kinetics_train_label.json", "label_index", ">= 0"]),
    ("recognition-beyond-float32", "recognition", ["train", *KINETICS_JSON],
     _first_pose_value(1e300), 1, ["train_00000.json", "float32"]),
    ("recognition-pickle-untrusted", "recognition", ["train"], _pickled_labels, 1,
     ["train_label.pkl", "--allow-pickle"]),
    ("recognition-corrupt-npy", "recognition", ["train"], _garbage("train_data.npy"), 1,
     ["train_data.npy"]),
    ("recognition-too-few-names", "recognition", ["train"],
     lambda data: (data / "label_name.txt").write_text("walking\n"), 1, ["label_name.txt"]),
    ("recognition-window-0", "recognition", ["train", "--window", "0"], _nothing, 2,
     ["--window", ">= 1"]),
    ("recognition-flip-is-on-or-off", "recognition", ["train", "--flip", "0.5"], _nothing, 2,
     ["unrecognized arguments: 0.5"]),
    ("recognition-negated-fraction", "recognition", ["train", "--negated-fractions", "2"],
     _nothing, 2, ["--negated-fractions"]),
    ("recognition-evaluate-not-a-run", "recognition", ["evaluate", "--run", "{data}"], _nothing,
     1, ["no run.json"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "task, arguments, damage, status, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_input_gives_one_line_and_writes_nothing(
    tmp_path, generated, capsys, task, arguments, damage, status, expected
):
    data = tmp_path / "data"
    shutil.copytree(generated[task], data)
    damage(data)
    before = snapshot(data)
    out = tmp_path / "out"
    args = [a.format(data=data) for a in arguments]
    if "--data" not in args and args[0] == "train":
        args += ["--data", str(data)]
    if args[0] == "evaluate" and "--data" not in args:
        args += ["--data", str(data)]
    assert main([task, *args, "--out", str(out)]) == status
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chiral: error: "), captured.err
    for text in expected:
        assert text in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()
    assert snapshot(data) == before


GENERATE = {
    "lifting": ["--frames", "24", "--trials", "1"],
    "forecasting": ["--num-videos", "8", "--min-frames", "20", "--max-frames", "30"],
    "recognition": ["--classes", "waving", "squat", "--clips-per-class", "3"],
}


@pytest.mark.parametrize("task", list(GENERATE))
def test_generate_over_existing_files_refuses_and_changes_nothing(
    tmp_path, generated, capsys, task
):
    data = tmp_path / "data"
    shutil.copytree(generated[task], data)
    before = snapshot(data)
    assert main([task, "generate", "--out", str(data), *GENERATE[task]]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{data}: already holds" in lines[0], lines
    assert "--overwrite" in lines[0]
    assert snapshot(data) == before


def test_the_table_covers_every_task_and_both_kinds_of_error():
    assert len(CASES) >= 30
    assert {c[1] for c in CASES} == {"lifting", "forecasting", "recognition"}
    assert {c[4] for c in CASES} == {1, 2}


@pytest.mark.parametrize(
    "task, option",
    [
        ("lifting", ["--filter-widths", "2"]),
        ("lifting", ["--seeds", "0", "0"]),
        ("forecasting", ["--hidden", "27"]),
        ("recognition", ["--window", "0"]),
        ("recognition", ["--widths", "8", "8", "8", "8"]),
    ],
)
def test_demo_options_are_checked_before_data_is_generated(
    tmp_path, monkeypatch, capsys, task, option
):
    monkeypatch.chdir(tmp_path)
    command = "experiment" if "--seeds" in option else "demo"
    assert main([task, command, *option]) == 2
    assert capsys.readouterr().err.startswith("chiral: error: ")
    assert not any(tmp_path.iterdir())  # no data generated, no run folder
