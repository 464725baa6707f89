"""End to end through the CLI: generate -> train -> evaluate, resume, HumanEva, bad inputs,
and COCO-17 keypoints lifted to Human3.6M-17 poses."""

import json
import re
import shutil

import jax
import numpy as np
import pytest
from _files import snapshot
from flax import nnx

from chiral_jax.skeletons import COCO_17, H36M_17, MPII_16
from chiral_jax.testing import assert_equivariant, equivariance_error
from chiral_tasks.cli import build_parser, main
from chiral_tasks.lifting.cli import _model_config
from chiral_tasks.lifting.data import Sequences, camera_sequences
from chiral_tasks.lifting.evaluate import predict_sequences
from chiral_tasks.lifting.npz import load_npz
from chiral_tasks.lifting.train import (
    ARCHS,
    ModelConfig,
    TrainConfig,
    TrainedModel,
    build_model,
    defaults,
    load_model,
    save_model,
    train,
    training_batcher,
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
        return train(sequences, dataset.skeleton_2d, dataset.skeleton, _tiny(False), cfg, **kw)

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
    trained = train(
        sequences, dataset.skeleton_2d, dataset.skeleton, _tiny(False), config, max_steps=2
    )
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
    assert "none: no such run folder" in error(
        ["evaluate", "--data", str(data / "h36m.npz"), "--run", str(tmp_path / "none")]
    )
    (tmp_path / "empty").mkdir()
    assert "no trained model" in error(
        ["evaluate", "--data", str(data / "h36m.npz"), "--run", str(tmp_path / "empty")]
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
    assert build_model(default, H36M_17, H36M_17, seed=0).impl == "dense"
    assert build_model(forced, H36M_17, H36M_17, seed=0).impl == "even_odd"


def test_a_config_knows_its_models_training_window():
    """Limited data fills every setting up to the same number of training windows by
    ``ModelConfig.chunk_length``, which must be the built model's."""
    for arch in ARCHS:
        config = defaults(arch, paper=False)[0]
        model = build_model(config, H36M_17, H36M_17, seed=0)
        assert config.chunk_length == model.chunk_length


# -- COCO-17 keypoints in, Human3.6M-17 poses out -----------------------------------------

COCO_GENERATE = ["lifting", "generate", "--keypoints", "coco", "--frames", "24", "--trials", "1"]


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coco")
    assert main([*COCO_GENERATE, "--out", str(folder)]) == 0
    return folder


def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return dict(npz)


@pytest.mark.slow
def test_generate_coco_refuses_to_overwrite_and_regenerates_the_same(coco, tmp_path, capsys):
    folder = tmp_path / "data"
    shutil.copytree(coco, folder)
    before = snapshot(folder)
    assert main([*COCO_GENERATE, "--out", str(folder)]) == 1
    assert f"{folder}: already holds" in capsys.readouterr().err
    assert snapshot(folder) == before
    assert main([*COCO_GENERATE, "--out", str(folder), "--overwrite"]) == 0
    again, first = _arrays(folder / "h36m.npz"), _arrays(coco / "h36m.npz")
    assert list(again) == list(first)
    for key, value in first.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)
    assert (folder / "cameras_h36m.json").read_text() == (coco / "cameras_h36m.json").read_text()

    out = tmp_path / "humaneva"
    assert main([*COCO_GENERATE, "--dataset", "humaneva15", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "COCO keypoints are generated for dataset 'h36m' only" in err
    assert not out.exists()


@pytest.mark.slow
def test_coco_to_h36m_models_train_save_load_and_the_chiral_one_is_equivariant(
    coco, data, tmp_path, capsys
):
    dataset = load_npz(coco / "h36m.npz")
    assert (dataset.skeleton_2d, dataset.skeleton) == (COCO_17, H36M_17)
    sequences, test = camera_sequences(dataset, ["S1"]), camera_sequences(dataset, ["S9"])
    config = TrainConfig(epochs=1, batch_size=64, amsgrad=True, progress=False)
    loaded = {}
    for chiral in (True, False):
        trained = train(sequences, COCO_17, H36M_17, _tiny(chiral), config, max_steps=2)
        folder = tmp_path / ("chiral" if chiral else "plain") / "model"
        save_model(trained, folder)
        assert json.loads((folder / "model.json").read_text())["skeleton_2d"] == {
            "name": "coco", "joint_names": list(COCO_17.joint_names),
            "parents": list(COCO_17.parents), "left": list(COCO_17.left),
            "right": list(COCO_17.right),
        }  # fmt: skip
        loaded[chiral] = load_model(folder)  # no dataset needed
        assert (loaded[chiral].skeleton_2d, loaded[chiral].skeleton) == (COCO_17, H36M_17)
        for got, want in zip(
            predict_sequences(loaded[chiral].model, test.inputs[:3]),
            predict_sequences(trained.model, test.inputs[:3]),
            strict=True,
        ):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    # f(T_in x) = T_out f(x) with COCO's mirror on the input and Human3.6M's on the output.
    model = loaded[True].model
    lift = jax.jit(lambda x: model(x))
    x = np.stack([view[:20] for view in test.inputs[:4]])  # [4, 20, 17, 2]
    assert_equivariant(lift, COCO_17.layout(2), H36M_17.layout(3), x, rtol=1e-5)
    assert equivariance_error(lift, H36M_17.layout(2), H36M_17.layout(3), x) > 1e-2
    # Flip test-time averaging mirrors by the same layouts: it changes nothing.
    for got, want in zip(
        predict_sequences(model, test.inputs[:3], tta=True),
        predict_sequences(model, test.inputs[:3]),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Flip augmentation: one window listed plain and mirrored (in either order, as the
    # mirror is its own inverse), the 2D input by COCO's layout, the 3D target by H36M's.
    one = Sequences([test.inputs[0][:1]], [test.targets[0][:1]], [test.keys[0]])
    batch = next(iter(training_batcher(model, one, batch_size=2, seed=0, flip=True)))
    inputs, targets = batch["inputs"], batch["targets"]
    np.testing.assert_array_equal(inputs[1], COCO_17.layout(2).transform(inputs[0]))
    np.testing.assert_array_equal(targets[1], H36M_17.layout(3).transform(targets[0]))

    # A dataset of other 2D keypoints is refused, by load_model and by the CLI.
    with pytest.raises(ValueError, match="trained for 2D skeleton 'coco' .* dataset's 2D skel"):
        load_model(tmp_path / "chiral" / "model", H36M_17, H36M_17)
    run = str(tmp_path / "chiral")
    assert main(["lifting", "evaluate", "--data", str(data / "h36m.npz"), "--run", run]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trained for 2D skeleton 'coco'" in err


def test_models_saved_before_2d_skeletons_load_with_the_3d_one(tmp_path):
    config = _tiny(True)
    model = build_model(config, H36M_17, H36M_17, seed=0)
    save_model(TrainedModel(model, config, H36M_17, H36M_17, [], 0.0), tmp_path / "model")
    meta_path = tmp_path / "model" / "model.json"
    meta = json.loads(meta_path.read_text())
    del meta["skeleton_2d"]
    meta_path.write_text(json.dumps(meta))
    loaded = load_model(tmp_path / "model", H36M_17, H36M_17)
    assert loaded.skeleton_2d == loaded.skeleton == H36M_17
    with pytest.raises(ValueError, match="trained for 2D skeleton 'h36m'"):
        load_model(tmp_path / "model", H36M_17, COCO_17)


def test_chiral_width_follows_the_2d_skeleton():
    config = ModelConfig(channels=40, filter_widths=(3,))
    assert (config.width(MPII_16), config.width(H36M_17)) == (32, 34)
    model = build_model(config, MPII_16, H36M_17, seed=0)
    assert model(np.zeros((1, 3, 16, 2), np.float32)).shape == (1, 1, 17, 3)


@pytest.mark.slow
def test_train_on_coco_and_evaluate_videopose3d_files_with_tta_through_the_cli(coco, tmp_path):
    out = tmp_path / "run"
    args = ["lifting", "train", "--data", str(coco / "h36m.npz"), "--out", str(out)]
    assert main(args + TINY_MODEL + TINY_TRAIN + ["--epochs", "1", "--max-steps", "3"]) == 0
    results = json.loads((out / "results.json").read_text())
    report = tmp_path / "eval.json"
    official = [
        "--data", str(coco / "data_3d_h36m.npz"), "--data-2d", str(coco / "data_2d_h36m_synth.npz"),
        "--cameras", str(coco / "cameras_h36m.json"), "--allow-pickle",
    ]  # fmt: skip
    assert main(["lifting", "evaluate", "--run", str(out), "--tta", "--out", str(report)]
                + official) == 0  # fmt: skip
    # The pickled COCO pair holds the same data; the chiral model needs no flip TTA.
    evaluated = json.loads(report.read_text())["test"]
    assert evaluated["mpjpe"] == pytest.approx(results["test"]["mpjpe"], rel=1e-5)


def test_lifting_trains_mixed_chiral_for_the_conv_net_only():
    """The transformer's chiral model is mixed already: no chiral_mixed variant."""
    from chiral_tasks.lifting import experiments

    variants = tuple(experiments.trained_variants(ModelConfig()))
    assert variants == ("chiral", "chiral_mixed", "plain", "plain_noflip")
    assert "chiral_mixed" not in experiments.trained_variants(ModelConfig(arch="transformer"))
