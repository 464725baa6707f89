"""End to end through the CLI: generate -> train -> evaluate, resume, HumanEva, bad inputs."""

import json
import re

import jax
import numpy as np
import pytest
from flax import nnx

from chiral_jax.skeletons import H36M_17
from chiral_tasks.cli import build_parser, main
from chiral_tasks.lifting.cli import _model_config
from chiral_tasks.lifting.data import camera_sequences
from chiral_tasks.lifting.npz import load_npz
from chiral_tasks.lifting.train import (
    ModelConfig,
    TrainConfig,
    build_model,
    load_model,
    save_model,
    train,
)

TINY_MODEL = ["--filter-widths", "3", "3", "--channels", "34", "--dropout", "0.1"]
TINY_TRAIN = ["--batch-size", "128", "--no-progress", "--train-subjects", "S1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    args = ["--out", str(folder), "--frames", "24", "--trials", "1"]
    assert main(["lifting", "generate", *args]) == 0
    return folder


def test_generate_train_evaluate_through_the_cli(data, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["lifting", "train", "--data", str(data / "h36m.npz"), "--out", str(out)]
    assert main(args + TINY_MODEL + TINY_TRAIN + ["--epochs", "2", "--model", "plain"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [h["epoch"] for h in results["history"]] == [1, 2]
    assert results["history"][1]["lr"] == pytest.approx(1e-3 * 0.95)
    for metric in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"):
        assert np.isfinite(results["test"][metric]) and results["test"][metric] > 0
    assert set(results["test"]["per_action"]["mpjpe"]) >= {"Walking", "Boxing", "SittingDown"}
    assert "MPJPE" in capsys.readouterr().out

    # Evaluate the saved model on the official pickled pair: same numbers as on ours.
    report = tmp_path / "eval.json"
    official = [
        "--data", str(data / "data_3d_h36m.npz"), "--data-2d", str(data / "data_2d_h36m_synth.npz"),
        "--cameras", str(data / "cameras_h36m.json"), "--allow-pickle",
    ]  # fmt: skip
    assert main(["lifting", "evaluate", "--run", str(out), "--out", str(report)]
                + official) == 0  # fmt: skip
    evaluated = json.loads(report.read_text())["test"]
    assert evaluated["mpjpe"] == pytest.approx(results["test"]["mpjpe"], rel=1e-5)
    assert evaluated["p_mpjpe"] == pytest.approx(results["test"]["p_mpjpe"], rel=1e-5)


def _tiny(chiral: bool) -> ModelConfig:
    return ModelConfig(chiral=chiral, filter_widths=(3, 3), channels=34, dropout=0.1)


def test_interrupted_training_resumes_to_the_same_model(data, tmp_path):
    dataset = load_npz(data / "h36m.npz")
    sequences = camera_sequences(dataset, ["S1"])
    config = TrainConfig(
        epochs=2, batch_size=128, lr=1e-3, lr_decay=0.95, amsgrad=True, progress=False
    )

    def run(folder, **kw):
        # Checkpoints every 3 steps: the interrupted run leaves one at its last step.
        cfg = TrainConfig(
            **{**config.__dict__, "checkpoint_dir": str(tmp_path / folder), "checkpoint_every": 3}
        )
        return train(sequences, dataset.skeleton, _tiny(False), cfg, **kw)

    whole = run("whole")
    partial = run("split", max_steps=3)
    assert partial.history == []
    resumed = run("split", resume=True)
    assert [h["step"] for h in resumed.history] == [h["step"] for h in whole.history]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]

    def arrays(model):
        return jax.tree.leaves(nnx.state(model, nnx.Param, nnx.BatchStat))

    for a, b in zip(arrays(whole.model), arrays(resumed.model), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_evaluate_a_humaneva_dataset_and_refuse_a_mismatched_model(tmp_path, data, capsys):
    folder = tmp_path / "humaneva"
    main(["lifting", "generate", "--dataset", "humaneva15", "--out", str(folder),
          "--frames", "30", "--trials", "1"])  # fmt: skip
    dataset = load_npz(folder / "humaneva15.npz")
    sequences = camera_sequences(dataset, ["Train/S1"])
    config = TrainConfig(epochs=1, batch_size=64, amsgrad=True, progress=False)
    trained = train(sequences, dataset.skeleton, _tiny(False), config, max_steps=2)
    save_model(trained, tmp_path / "run" / "model")
    assert load_model(tmp_path / "run" / "model").skeleton == dataset.skeleton
    report = tmp_path / "eval.json"
    args = ["--run", str(tmp_path / "run"), "--tta", "--out", str(report)]
    assert main(["lifting", "evaluate", "--data", str(folder / "humaneva15.npz"), *args]) == 0
    result = json.loads(report.read_text())
    assert result["subjects"] == ["Validate/S1", "Validate/S2", "Validate/S3"]
    assert set(result["test"]["per_action"]["mpjpe"]) == {"Walk", "Jog", "Box"}
    assert np.isfinite(result["test"]["mpjpe"])
    assert main(["lifting", "evaluate", "--data", str(data / "h36m.npz"),
                 "--run", str(tmp_path / "run")]) == 1  # fmt: skip
    assert "trained for skeleton 'humaneva15'" in capsys.readouterr().err


def test_bad_inputs_give_one_line_errors(data, tmp_path, capsys):
    def error(args):
        assert main(["lifting", *args]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("chiral: error: "), err
        return err

    assert "missing.npz: no such dataset file" in error(
        ["train", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "r")]
    )
    # NaNs in a 2D detection: the loader names the array and the frame.
    with np.load(data / "h36m.npz") as npz:
        arrays = dict(npz)
    arrays["S5/Waving/2/positions_2d"][7, 3, 0] = np.nan
    bad = tmp_path / "nan.npz"
    np.savez(bad, **arrays)
    (tmp_path / "run" / "model").mkdir(parents=True)
    (tmp_path / "run" / "model" / "model.json").write_text("{}")
    assert re.search(
        r"'S5', action 'Waving'.*camera 2.*NaN",
        error(["evaluate", "--data", str(bad), "--run", str(tmp_path / "run")]),
    )
    assert "no trained model" in error(
        ["evaluate", "--data", str(data / "h36m.npz"), "--run", str(tmp_path / "none")]
    )
    assert "--allow-pickle" in error(
        ["evaluate", "--data", str(data / "data_3d_h36m.npz"),
         "--data-2d", str(data / "data_2d_h36m_synth.npz"),
         "--cameras", str(data / "cameras_h36m.json"), "--run", str(tmp_path / "run")]
    )  # fmt: skip


def test_impl_flag_selects_the_model_form():
    parser = build_parser(["lifting"])
    forced = _model_config(parser.parse_args(["lifting", "demo", "--impl", "even_odd"]))
    default = _model_config(parser.parse_args(["lifting", "demo"]))
    assert (forced.impl, default.impl) == ("even_odd", "auto")
    # 128 channels (119 chiral) are narrow: the dense form by default.
    assert build_model(default, H36M_17, seed=0).impl == "dense"
    assert build_model(forced, H36M_17, seed=0).impl == "even_odd"
