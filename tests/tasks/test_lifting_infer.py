"""Lifting one's own keypoints: the inference pipeline and ``chiral lifting infer``.

The clips are generated motion in COCO-17 seen by a generated camera, written as a
detector's COCO results JSON; the model lifts COCO-17 2D to Human3.6M-17 3D.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from chiral_jax.skeletons import COCO_17, H36M_17
from chiral_tasks.cli import main
from chiral_tasks.lifting.data import camera_sequences
from chiral_tasks.lifting.evaluate import predict_sequences
from chiral_tasks.lifting.infer import Lifter, lift_keypoints, load_lifter, read_and_lift
from chiral_tasks.lifting.keypoints import read_coco_json, write_coco_json
from chiral_tasks.lifting.synth import SynthConfig, generate_dataset
from chiral_tasks.lifting.train import ModelConfig, build_model

SUBJECT, ACTION, CAMERA = "S9", "Walking", 0
DROPPED_FRAMES = (5, 6, 30)
"""Frames in which the detector found nobody."""


@pytest.fixture(scope="module")
def dataset():
    dataset, _ = generate_dataset(SynthConfig(frames=60, trials=1, keypoints="coco"))
    return dataset


def _clip(dataset):
    """The test clip: COCO-17 pixels (T, 17, 2), its camera, and the truth (T, 17, 3)."""
    data = dataset.subjects[SUBJECT]
    pixels = data.recordings[ACTION].positions_2d[CAMERA]
    sequences = camera_sequences(dataset, [SUBJECT])
    index = sequences.keys.index((SUBJECT, ACTION, CAMERA))
    return pixels, data.cameras[CAMERA], sequences.inputs[index], sequences.targets[index]


def _detector_json(path, pixels, rng):
    """A detector's results for ``pixels``: low scores on some joints (their
    coordinates thrown off), nobody in :data:`DROPPED_FRAMES`, and a second, lower
    scored person in every frame. Returns the (frame, joint) pairs scored low."""
    xy = pixels.copy()
    score = np.full(xy.shape[:2], 0.9, np.float32)
    drawn = zip(rng.integers(0, len(xy), 25), rng.integers(0, 17, 25), strict=True)
    low = sorted({(int(t), int(j)) for t, j in drawn if t not in DROPPED_FRAMES})
    for t, j in low:
        score[t, j] = 0.05
        xy[t, j] += 300.0  # a wrong detection, as low scores often are
    xy[list(DROPPED_FRAMES)] = np.nan
    other = pixels + [250.0, 40.0]
    other[list(DROPPED_FRAMES)] = np.nan
    other = (other, np.full(score.shape, 0.5, np.float32))
    write_coco_json(path, xy, score, extra_people=[other])
    return low


def _untrained(chiral: bool) -> Lifter:
    config = ModelConfig(chiral=chiral, filter_widths=(3, 3), channels=34, dropout=0.0)
    model = build_model(config, COCO_17, H36M_17, seed=0)
    model.eval()
    return Lifter(model, COCO_17, H36M_17, chiral, "untrained")


def test_clean_keypoints_lift_as_the_evaluation_does(dataset, tmp_path):
    """Read from a detector's file, the clip lifts to the evaluation's very poses."""
    pixels, camera, inputs, _ = _clip(dataset)
    path = tmp_path / "clip.json"
    write_coco_json(path, pixels, np.ones(pixels.shape[:2], np.float32))
    lifter = _untrained(chiral=True)
    lifted = read_and_lift(lifter, path, width=camera.res_w, height=camera.res_h)
    (expected,) = predict_sequences(lifter.model, [inputs])
    np.testing.assert_allclose(lifted.poses_3d, expected, rtol=1e-5, atol=1e-6)
    assert lifted.report["missing_frames"] == [] and lifted.report["filled_joints"] == 0


@pytest.mark.slow
def test_gaps_and_other_people_are_handled(dataset, tmp_path):
    pixels, camera, inputs, _ = _clip(dataset)
    path = tmp_path / "clip.json"
    low = _detector_json(path, pixels, np.random.default_rng(0))
    lifter = _untrained(chiral=True)
    lifted = read_and_lift(lifter, path, threshold=0.3, width=camera.res_w, height=camera.res_h)
    assert lifted.report["missing_frames"] == list(DROPPED_FRAMES)
    assert lifted.report["filled_joints"] == len(low) + 17 * len(DROPPED_FRAMES)
    # The best-scoring person was kept, the thrown-off joints were replaced by
    # interpolation: every input joint stays near the clean one.
    assert np.abs(lifted.keypoints.xy - pixels).max() < 60.0
    assert lifted.poses_3d.shape == (len(pixels), 17, 3) and np.isfinite(lifted.poses_3d).all()
    # With no threshold the thrown-off joints go through, far from the clean input.
    raw = read_and_lift(lifter, path, threshold=0.0, width=camera.res_w, height=camera.res_h)
    assert np.abs(raw.keypoints.xy - pixels).max() > 250.0


@pytest.mark.slow
def test_plain_flip_averaging_is_equivariant(dataset, tmp_path):
    """``tta``: a plain model's lifted clip, mirrored, is the mirrored clip's."""
    pixels, camera, _, _ = _clip(dataset)
    keypoints = read_coco_json(_written(tmp_path / "a.json", pixels))
    mirrored_pixels = pixels.copy()
    mirrored_pixels[..., 0] = camera.res_w - pixels[..., 0]
    mirrored_pixels = mirrored_pixels[:, _mirror_order(COCO_17)]
    mirrored = read_coco_json(_written(tmp_path / "b.json", mirrored_pixels))
    lifter = _untrained(chiral=False)
    size = dict(width=camera.res_w, height=camera.res_h, tta=True)
    a = lift_keypoints(lifter, keypoints, **size).poses_3d
    b = lift_keypoints(lifter, mirrored, **size).poses_3d
    expected = a[:, _mirror_order(H36M_17)] * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(b, expected, atol=1e-5)


def _written(path, pixels):
    write_coco_json(path, pixels, np.ones(pixels.shape[:2], np.float32))
    return path


def _mirror_order(skeleton):
    order = np.arange(skeleton.num_joints)
    order[list(skeleton.left)], order[list(skeleton.right)] = skeleton.right, skeleton.left
    return order


def test_videopose3d_checkpoint_lifts_a_clip(dataset, tmp_path):
    """A VideoPose3D checkpoint (the PyTorch-made fixture) is a model for ``infer``."""
    checkpoint = Path(__file__).parent / "data" / "videopose3d" / "tiny_zip.bin"
    with pytest.raises(ValueError, match="--allow-pickle"):
        load_lifter(checkpoint, input_skeleton=COCO_17)
    lifter = load_lifter(checkpoint, input_skeleton=COCO_17, allow_pickle=True)
    assert (lifter.skeleton_2d, lifter.skeleton_3d, lifter.chiral) == (COCO_17, H36M_17, False)
    pixels, camera, inputs, _ = _clip(dataset)
    clip = read_coco_json(_written(tmp_path / "clip.json", pixels))
    lifted = lift_keypoints(lifter, clip, width=camera.res_w, height=camera.res_h)
    (expected,) = predict_sequences(lifter.model, [inputs])
    np.testing.assert_allclose(lifted.poses_3d, expected, rtol=1e-5, atol=1e-6)


def test_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trained model"):
        load_lifter(tmp_path)
    checkpoint = tmp_path / "model.bin"
    checkpoint.write_bytes(b"not read")
    with pytest.raises(ValueError, match="does not record its 2D input skeleton"):
        load_lifter(checkpoint)


@pytest.mark.slow
def test_infer_through_the_cli(dataset, tmp_path, capsys):
    """A COCO-input model trained here lifts a detector's file end to end: 3D files,
    an animation, what was filled, and the MPJPE against the generated truth."""
    data = tmp_path / "data"
    assert main(["lifting", "generate", "--keypoints", "coco", "--out", str(data),
                 "--frames", "60", "--trials", "1"]) == 0  # fmt: skip
    run = tmp_path / "run"
    train = ["lifting", "train", "--data", str(data), "--out", str(run), "--filter-widths", "3",
             "3", "--channels", "68", "--epochs", "2", "--no-progress"]  # fmt: skip
    assert main(train) == 0
    pixels, camera, _, truth = _clip(dataset)
    clip = tmp_path / "clip.json"
    _detector_json(clip, pixels, np.random.default_rng(1))
    out = tmp_path / "lifted"
    infer = ["lifting", "infer", "--keypoints", str(clip), "--model", str(run), "--out",
             str(out), "--width", str(camera.res_w), "--height", str(camera.res_h)]  # fmt: skip
    capsys.readouterr()
    assert main(infer) == 0
    printed = capsys.readouterr().out
    assert f"no person in {len(DROPPED_FRAMES)} of 60 frames" in printed
    poses = np.load(out / "poses_3d.npz")["poses_3d"]
    assert poses.shape == (60, 17, 3)
    record = json.loads((out / "inference.json").read_text())
    assert record["report"]["missing_frames"] == list(DROPPED_FRAMES)
    assert json.loads((out / "poses_3d.json").read_text())["joint_names"] == list(
        H36M_17.joint_names
    )
    assert (out / "animation.gif").stat().st_size > 10_000
    error_mm = 1000 * np.linalg.norm(poses - truth, axis=-1).mean()
    # The same model on the clean clip: the filled gaps cost little on top of it.
    clean = read_and_lift(load_lifter(run), _written(tmp_path / "clean.json", pixels),
                          width=camera.res_w, height=camera.res_h).poses_3d  # fmt: skip
    clean_mm = 1000 * np.linalg.norm(clean - truth, axis=-1).mean()
    with capsys.disabled():
        print(f"MPJPE against the generated truth: {error_mm:.1f} mm lifted from the detector's "
              f"file, {clean_mm:.1f} mm from the clean keypoints")  # fmt: skip
    assert error_mm < clean_mm + 20.0

    # Run twice: the same command reuses its own outputs, leaving them as they are.
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(infer) == 0
    assert f"{out}: lifted earlier from these inputs" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written
    # Another frame rate draws the animation again (same poses, so not "other inputs").
    assert main(infer + ["--fps", "10", "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert json.loads((out / "inference.json").read_text())["animation"]["fps"] == 10
    # Other inputs into the same folder are refused, and nothing is overwritten.
    before = (out / "inference.json").read_bytes()
    assert main(infer[:-4] + ["--threshold", "0.5"] + infer[-4:]) == 1
    assert "holds results of other inputs" in capsys.readouterr().err
    assert (out / "inference.json").read_bytes() == before
