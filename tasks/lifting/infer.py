"""Lifting a user's own clip: one person's detector keypoints in, 3D poses out.

The pipeline of ``chiral lifting infer``:

1. read the keypoints (:func:`chiral_tasks.lifting.keypoints.read_keypoints`: COCO JSON,
   VideoPose3D's custom ``.npz``, ``.npy`` or CSV), keeping one person per frame;
2. fill joints below the score threshold and frames without a person by interpolation
   over time (:func:`~chiral_tasks.lifting.keypoints.fill_gaps`);
3. map the detector's skeleton onto the model's 2D input skeleton where they differ
   (COCO-17 -> Human3.6M-17, :func:`~chiral_tasks.lifting.keypoints.convert_keypoints`);
4. normalise by the image size, as the model was trained (VideoPose3D's screen
   coordinates);
5. run the model over the whole clip, edge-padded by its receptive field
   (:func:`chiral_tasks.lifting.evaluate.predict_sequences`), with flip test-time
   averaging on request.

The result is one 3D pose per input frame, ``(T, J, 3)`` metres in the camera's frame
(x right, y down, z forward) relative to the root joint, which the model does not
place (it predicts root-relative poses).

A model is either one trained here (a run folder or its ``model`` folder, holding
``model.json``) or one of VideoPose3D's released PyTorch checkpoints, loaded with
:func:`chiral_tasks.lifting.pytorch.load_videopose3d`; those files do not say which
2D skeleton they expect, so the caller names it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from chiral_jax.skeletons import H36M_17, Skeleton
from chiral_tasks.common.files import atomic_path
from chiral_tasks.lifting.evaluate import predict_sequences
from chiral_tasks.lifting.keypoints import (
    Keypoints,
    convert_keypoints,
    fill_gaps,
    normalise,
    read_keypoints,
    with_image_size,
)
from chiral_tasks.lifting.model import TemporalModel
from chiral_tasks.lifting.pytorch import load_videopose3d
from chiral_tasks.lifting.train import load_model


@dataclasses.dataclass(frozen=True)
class Lifter:
    """A model ready to lift: ``model`` maps ``skeleton_2d`` poses to ``skeleton_3d``
    poses; ``chiral`` says whether it is equivariant; ``description`` names it."""

    model: TemporalModel
    skeleton_2d: Skeleton
    skeleton_3d: Skeleton
    chiral: bool
    description: str


def model_folder(path: str | Path) -> Path | None:
    """The folder holding ``model.json`` for ``path`` (a run folder or a model folder);
    None when ``path`` is neither."""
    path = Path(path)
    for folder in (path, path / "model"):
        if (folder / "model.json").is_file():
            return folder
    return None


def load_lifter(
    path: str | Path,
    *,
    input_skeleton: Skeleton | None = None,
    causal: bool = False,
    allow_pickle: bool = False,
) -> Lifter:
    """The model at ``path``: a model trained here, or a VideoPose3D checkpoint file.

    Args:
      path: a run folder, a model folder (with ``model.json``), or a PyTorch
        checkpoint of VideoPose3D's ``TemporalModel`` (``.bin``, ``.pt``, ``.pth``).
      input_skeleton: for a checkpoint, the 2D skeleton it was trained on (required:
        the file does not record it); its output is Human3.6M-17. Ignored for our
        models, which record both skeletons.
      causal: for a checkpoint, whether it is a causal model (weights do not say).
      allow_pickle: trust the checkpoint file, a Python pickle (read with a
        restricted unpickler that builds tensors and containers only).
    """
    path = Path(path)
    folder = model_folder(path)
    if folder is not None:
        trained = load_model(folder)
        kind = "chiral" if trained.config.chiral else "plain"
        return Lifter(
            trained.model,
            trained.skeleton_2d,
            trained.skeleton,
            trained.config.chiral,
            f"{kind} model {folder}",
        )
    if path.is_dir():
        raise FileNotFoundError(f"{path}: no trained model here (no model.json, nor model/)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file or folder")
    if input_skeleton is None:
        raise ValueError(
            f"{path}: a VideoPose3D checkpoint does not record its 2D input skeleton; name "
            "it (coco for pretrained_h36m_detectron_coco.bin, h36m for pretrained_h36m_cpn.bin)"
        )
    model = load_videopose3d(
        path,
        skeleton_in=input_skeleton,
        skeleton_out=H36M_17,
        causal=causal,
        allow_pickle=allow_pickle,
    )
    return Lifter(model, input_skeleton, H36M_17, False, f"VideoPose3D checkpoint {path.name}")


@dataclasses.dataclass(frozen=True)
class Lifted:
    """A lifted clip: the 2D input the model saw and its 3D poses.

    ``keypoints`` (T, J_2d, 2) pixels in the model's 2D skeleton, gaps filled;
    ``poses_3d`` (T, J_3d, 3) root-relative camera-frame metres; ``report`` what was
    filled (``filled_joints``, ``missing_frames``) and the clip's ``frames``.
    """

    keypoints: Keypoints
    poses_3d: np.ndarray
    report: dict


def lift_keypoints(
    lifter: Lifter,
    keypoints: Keypoints,
    *,
    threshold: float = 0.3,
    width: int | None = None,
    height: int | None = None,
    tta: bool = False,
) -> Lifted:
    """Steps 2-5 of the module docstring on ``keypoints`` read from a file.

    ``width`` and ``height`` (pixels) replace the image size the file gives; one of
    the two is needed. ``threshold``: joints scored below it are interpolated.
    """
    if (width is None) != (height is None):
        raise ValueError("give the image size as both width and height, or neither")
    if width is not None:
        keypoints = with_image_size(keypoints, width, height)
    filled, report = fill_gaps(keypoints, threshold=threshold)
    converted = convert_keypoints(filled, lifter.skeleton_2d)
    inputs = normalise(converted)
    (poses,) = predict_sequences(lifter.model, [inputs], tta=tta)
    return Lifted(converted, poses, {**report, "frames": len(poses)})


def read_and_lift(
    lifter: Lifter,
    path: str | Path,
    *,
    allow_pickle: bool = False,
    person=None,
    video: str | None = None,
    **options,
) -> Lifted:
    """Step 1 (:func:`read_keypoints`, in the COCO-17 skeleton where the file has no
    skeleton of its own), then :func:`lift_keypoints` with ``options``."""
    keypoints = read_keypoints(path, allow_pickle=allow_pickle, person=person, video=video)
    return lift_keypoints(lifter, keypoints, **options)


def write_lifted(folder: Path, lifted: Lifted, skeleton_3d: Skeleton) -> dict[str, Path]:
    """Write ``poses_3d.npz`` and ``poses_3d.json`` into ``folder``; return their paths.

    Both hold ``poses_3d`` (T, J, 3) metres, ``keypoints_2d`` (T, J_2d, 2) pixels (the
    filled input), the frame ids (as strings) and the 3D joint names. The ``.npz``
    is pickle-free.
    """
    frame_ids = [str(f) for f in lifted.keypoints.frame_ids]
    arrays = {
        "poses_3d": lifted.poses_3d.astype(np.float32),
        "keypoints_2d": lifted.keypoints.xy.astype(np.float32),
        "frame_ids": np.asarray(frame_ids, dtype=str),
        "joint_names": np.asarray(skeleton_3d.joint_names, dtype=str),
    }
    paths = {"npz": folder / "poses_3d.npz", "json": folder / "poses_3d.json"}
    with atomic_path(paths["npz"]) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    record = {
        "units": "metres, camera frame (x right, y down, z forward), relative to the root joint",
        "joint_names": list(skeleton_3d.joint_names),
        "frame_ids": frame_ids,
        "poses_3d": np.round(lifted.poses_3d.astype(np.float64), 6).tolist(),
        "keypoints_2d": np.round(lifted.keypoints.xy.astype(np.float64), 3).tolist(),
    }
    with atomic_path(paths["json"]) as tmp:
        Path(tmp).write_text(json.dumps(record) + "\n")
    return paths
