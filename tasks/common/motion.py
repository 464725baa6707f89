"""A deterministic procedural humanoid: subjects, actions and forward kinematics.

The body is a kinematic tree of :data:`BODY_JOINTS` in a z-up world, metres.
Each action is a script of keyframed joint angles over one cycle (a rhythmic
cycle, or a stroke and its return to rest; the scripts are in
:mod:`chiral_tasks.common.actions`), played with random per-sequence variation
(speed, amplitude, phase, style jitter, slow sway) by :func:`simulate`.
:func:`to_skeleton` picks any dataset skeleton's joints by name.

Body frame: x points to the body's right, y forward, z up; the pelvis is the
root. Joint angles, in degrees in the scripts:

- trunk ``bend`` (forward), ``side`` (lean toward the lead side), ``twist``
  (toward the lead side), split evenly between the spine and the chest;
  head ``nod`` (down) and ``yaw`` (toward the lead side);
- arms ``sflex`` (forward raise), ``sabd`` (raise away from the body; with the
  arm raised forward it swings it out horizontally), ``stwist`` (external
  rotation about the upper arm), ``elbow`` (flexion, 0 = straight);
- legs ``hflex`` (forward raise of the thigh), ``habd`` (away from the body),
  ``knee`` (flexion, the shin swings back);
- ``pitch`` tips the whole body about its x axis (-90 lies face down, +90 on
  the back); ``fwd`` moves it forward and ``lift`` up (metres).

Handedness picks the limbs: ``lead_*`` channels drive the right limbs of a
right-handed performer and the left limbs of a left-handed one, and every
channel that points "toward the lead side" changes sign. Left and right limbs
are built mirror symmetric, so with the same seed the left-handed sequence is
exactly :func:`mirror_body` of the right-handed one.

Posture and support: standing bodies are lowered until their lowest joint sits
at the ankle height above the floor (a smooth minimum over the joints, so up to
~1 cm more while two joints share the support; knee bends lower the pelvis and
``lift`` adds jumps), anchored at the feet where the script says so (feet stay
put while the body moves over them); lying bodies rest on the floor the same
way (``bench_press`` lies on the floor, not on a bench); hanging bodies keep their
wrists at a bar above their reach.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from chiral_jax.skeletons import Skeleton
from chiral_tasks.common.actions import (
    ACTION_INFO,
    ACTION_SCRIPTS,
    ACTIONS,
    BODY_CHANNELS,
    LIMB_CHANNELS,
    METRE_CHANNELS,
    ActionInfo,
    Script,
)

# -- the body -------------------------------------------------------------------------

BODY_JOINTS: tuple[str, ...] = (
    "pelvis",
    "spine",
    "thorax",
    "neck",
    "upper_neck",
    "head_centre",
    "head_top",
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
"""Joint names. ``neck`` is the midpoint of the shoulders (OpenPose's neck),
``upper_neck`` the top of the neck at chin level (Human3.6M's neck/nose joint,
MPII's upper neck), ``head_centre`` the middle of the head, ``head_top`` its top."""

_J = {name: j for j, name in enumerate(BODY_JOINTS)}

_PARENT_OF = {
    "spine": "pelvis", "thorax": "spine", "neck": "thorax", "upper_neck": "neck",
    "head_centre": "upper_neck", "head_top": "head_centre", "nose": "head_centre",
    "left_eye": "head_centre", "right_eye": "head_centre",
    "left_ear": "head_centre", "right_ear": "head_centre",
    "left_shoulder": "thorax", "right_shoulder": "thorax",
    "left_elbow": "left_shoulder", "right_elbow": "right_shoulder",
    "left_wrist": "left_elbow", "right_wrist": "right_elbow",
    "left_hip": "pelvis", "right_hip": "pelvis",
    "left_knee": "left_hip", "right_knee": "right_hip",
    "left_ankle": "left_knee", "right_ankle": "right_knee",
}  # fmt: skip

BODY_PARENTS: tuple[int, ...] = tuple(
    _J[_PARENT_OF[n]] if n in _PARENT_OF else -1 for n in BODY_JOINTS
)
"""Parent of each body joint (-1 for the pelvis); every bone keeps its length."""


def _partner(name: str) -> str:
    for side, other in (("left_", "right_"), ("right_", "left_")):
        if name.startswith(side):
            return other + name[len(side) :]
    return name


_MIRROR = np.array([_J[_partner(n)] for n in BODY_JOINTS])

# Head points relative to the neck joint, in units of the neck -> head-top length,
# in the head frame (x right, y forward, z up).
_HEAD_POINTS = {
    "upper_neck": (0.0, 0.05, 0.40),
    "head_centre": (0.0, 0.03, 0.65),
    "head_top": (0.0, 0.0, 1.0),
    "nose": (0.0, 0.33, 0.55),
    "left_eye": (-0.1, 0.27, 0.65),
    "right_eye": (0.1, 0.27, 0.65),
    "left_ear": (-0.25, 0.0, 0.6),
    "right_ear": (0.25, 0.0, 0.6),
}


def mirror_body(positions) -> np.ndarray:
    """The mirror image (..., len(BODY_JOINTS), D): negate dim 0 (x), swap left and right."""
    positions = np.asarray(positions)
    if positions.ndim < 2 or positions.shape[-2] != len(BODY_JOINTS):
        raise ValueError(
            f"expected body positions (..., {len(BODY_JOINTS)}, D), got shape {positions.shape}"
        )
    signs = np.ones(positions.shape[-1], dtype=positions.dtype)
    signs[0] = -1
    return positions[..., _MIRROR, :] * signs


# -- dataset skeletons ----------------------------------------------------------------

SKELETON_ALIASES: dict[str, dict[str, str]] = {
    "h36m": {"hip": "pelvis", "neck": "upper_neck", "head": "head_top"},
    "humaneva15": {"head": "head_top"},
    "penn_action": {"head": "head_centre"},
}
"""Per skeleton name, the body joint behind each joint name that differs from ours."""


def skeleton_indices(skeleton: Skeleton) -> np.ndarray:
    """For each joint of ``skeleton``, the index of the body joint that supplies it.

    Names map directly, or through :data:`SKELETON_ALIASES` for the skeleton's
    name. Raises ``ValueError`` naming every joint the body can't supply.
    """
    aliases = SKELETON_ALIASES.get(skeleton.name, {})
    names = [aliases.get(n, n) for n in skeleton.joint_names]
    missing = [n for n in names if n not in _J]
    if missing:
        raise ValueError(
            f"skeleton {skeleton.name!r} has joints {missing} that the procedural body "
            f"does not supply (body joints: {BODY_JOINTS})"
        )
    return np.array([_J[n] for n in names])


def to_skeleton(body_positions, skeleton: Skeleton) -> np.ndarray:
    """Body positions (..., len(BODY_JOINTS), D) -> (..., skeleton.num_joints, D)."""
    body_positions = np.asarray(body_positions)
    if body_positions.ndim < 2 or body_positions.shape[-2] != len(BODY_JOINTS):
        raise ValueError(
            f"expected body positions (..., {len(BODY_JOINTS)}, D), "
            f"got shape {body_positions.shape}"
        )
    return body_positions[..., skeleton_indices(skeleton), :]


# -- subjects -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Subject:
    """Segment lengths in metres; left and right limbs are equal.

    Vertical chain: ankle height above the floor, shin, thigh, pelvis -> spine,
    spine -> thorax, thorax -> neck (shoulder level), neck -> head top.
    """

    name: str
    ankle_height: float
    shin: float
    thigh: float
    spine: float
    chest: float
    neck: float
    head: float
    hip_width: float
    shoulder_width: float
    upper_arm: float
    forearm: float

    def __post_init__(self):
        for field in dataclasses.fields(self)[1:]:
            value = getattr(self, field.name)
            if not (np.isfinite(value) and 0.0 < value < 1.5):
                raise ValueError(
                    f"subject {self.name!r}: {field.name} must be a length in (0, 1.5) m, "
                    f"got {value!r}"
                )
            object.__setattr__(self, field.name, float(value))

    @property
    def height(self) -> float:
        """Standing height (floor to head top), metres."""
        return sum(getattr(self, name) for name in _VERTICAL)


# A 1.75 m reference body; make_subjects jitters the proportions and rescales.
_REFERENCE = {
    "ankle_height": 0.08,
    "shin": 0.42,
    "thigh": 0.44,
    "spine": 0.23,
    "chest": 0.25,
    "neck": 0.05,
    "head": 0.28,
    "hip_width": 0.25,
    "shoulder_width": 0.36,
    "upper_arm": 0.29,
    "forearm": 0.26,
}
_VERTICAL = ("ankle_height", "shin", "thigh", "spine", "chest", "neck", "head")


def make_subjects(n: int, seed: int = 0) -> list[Subject]:
    """``n`` subjects ``S1..Sn``, 1.5-1.95 m tall with proportions varied by up to ~12%."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    subjects = []
    for i in range(n):
        height = rng.uniform(1.5, 1.95)
        jitter = np.clip(rng.normal(1.0, 0.05, size=len(_REFERENCE)), 0.88, 1.12)
        lengths = {k: v * s for (k, v), s in zip(_REFERENCE.items(), jitter, strict=True)}
        vertical_scale = height / sum(lengths[k] for k in _VERTICAL)
        scale = height / 1.75
        lengths = {k: v * (vertical_scale if k in _VERTICAL else scale) for k, v in lengths.items()}
        subjects.append(Subject(name=f"S{i + 1}", **lengths))
    return subjects


# -- keyframes ------------------------------------------------------------------------

_REST = {"sabd": 6.0, "elbow": 8.0, "knee": 3.0}
# Range of each channel's keys (degrees; lift in metres); the monotone splines
# between keys stay inside it.
_LIMITS = {
    "sflex": (-70, 185), "sabd": (-50, 180), "stwist": (-90, 120), "elbow": (0, 150),
    "hflex": (-35, 130), "habd": (-25, 60), "knee": (0, 155),
    "bend": (-30, 95), "side": (-40, 40), "twist": (-85, 85), "nod": (-45, 50),
    "yaw": (-70, 70), "lift": (0.0, 0.5),
}  # fmt: skip
_SWAYING = ("bend", "side", "twist", "nod", "yaw")


def _periodic_spline(u: np.ndarray, times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The periodic (period 1) monotone cubic through ``(times, values)``, at ``u``.

    Fritsch-Butland tangents: C1, and never beyond the neighbouring keys, so a
    curve whose keys respect a joint limit respects it everywhere.
    """
    n = len(times)
    knots = np.concatenate([times[-2:] - 1.0, times, times[:2] + 1.0])  # key k -> k + 2
    vals = np.concatenate([values[-2:], values, values[:2]])
    gaps = np.diff(knots)
    secants = np.diff(vals) / gaps
    before, after = secants[:-1], secants[1:]  # around padded knots 1 .. n + 2
    w_before, w_after = 2 * gaps[1:] + gaps[:-1], gaps[1:] + 2 * gaps[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w_before + w_after) / (w_before / before + w_after / after)
    slopes = np.where(before * after > 0, harmonic, 0.0)
    u = times[0] + np.mod(u - times[0], 1.0)
    i = np.clip(np.searchsorted(times, u, side="right") - 1, 0, n - 1)
    t0, t1 = knots[i + 2], knots[i + 3]
    h = t1 - t0
    s = (u - t0) / h
    s2, s3 = s * s, s * s * s
    return (
        (2 * s3 - 3 * s2 + 1) * vals[i + 2]
        + (s3 - 2 * s2 + s) * h * slopes[i + 1]
        + (-2 * s3 + 3 * s2) * vals[i + 3]
        + (s3 - s2) * h * slopes[i + 2]
    )


def _channels(script: Script, t: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Play a script at times ``t`` (T,) seconds with random per-sequence variation.

    Returns every channel for the "lead" and "off" limbs and the body, angles in
    radians and displacements in metres, each (T,).
    """
    period = script.period * rng.uniform(0.85, 1.2)
    u = t / period + rng.uniform()
    amplitude = rng.uniform(0.85, 1.15)
    times = np.asarray(script.times, dtype=np.float64)

    keys: dict[str, np.ndarray] = {}
    for name, values in script.channels.items():
        side, _, base = name.rpartition("_")
        for target in ("lead", "off") if side == "both" else (side,):
            keys[f"{target}_{base}" if target else base] = np.asarray(values, np.float64)
    out = {}
    for name in sorted(keys):
        base = name.rpartition("_")[2]
        values = keys[name]
        values = values.mean() + amplitude * (values - values.mean())
        if base in LIMB_CHANNELS + _SWAYING:
            values = values + rng.normal(0.0, 3.0, size=values.shape)  # style, degrees
        values = np.clip(values, *_LIMITS.get(base, (-np.inf, np.inf)))
        out[name] = _periodic_spline(u, times, values)
        if name.startswith("lead_") and script.off in ("same", "antiphase"):
            lag = 0.5 if script.off == "antiphase" else 0.0
            out["off_" + name[5:]] = _periodic_spline(u + lag, times, values)
    for name in _SWAYING:  # slow sway: two random sinusoids of ~2 degrees
        freq, phase = rng.uniform(0.1, 0.5, size=2), rng.uniform(0, 2 * np.pi, size=2)
        sway = 1.2 * np.sin(2 * np.pi * freq[:, None] * t + phase[:, None]).sum(0)
        out[name] = out.get(name, 0.0) + sway

    channels = {}
    for side in ("lead", "off"):
        for base in LIMB_CHANNELS:
            channels[f"{side}_{base}"] = out.get(f"{side}_{base}", _REST.get(base, 0.0))
    for name in BODY_CHANNELS + METRE_CHANNELS:
        channels[name] = out.get(name, 0.0)
    return {
        name: np.broadcast_to(v if name in METRE_CHANNELS else np.deg2rad(v), t.shape).astype(float)
        for name, v in channels.items()
    }


# -- forward kinematics ---------------------------------------------------------------


def _rot(axis: int, angle: np.ndarray) -> np.ndarray:
    """Rotations (T, 3, 3) by ``angle`` (T,) radians about world axis 0, 1 or 2."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m = np.zeros(angle.shape + (3, 3))
    m[..., axis, axis] = 1.0
    m[..., i, i], m[..., i, j], m[..., j, i], m[..., j, j] = c, -s, s, c
    return m


def _apply(rotation: np.ndarray, vector) -> np.ndarray:
    """``rotation`` (T, 3, 3) applied to ``vector`` (3,) or (T, 3); returns (T, 3)."""
    return (rotation @ np.asarray(vector, dtype=np.float64)[..., None])[..., 0]


def _forward_kinematics(subject: Subject, ch: dict[str, np.ndarray], hand: float) -> np.ndarray:
    """Body-frame positions (T, len(BODY_JOINTS), 3) with the pelvis at the origin.

    ``hand`` is +1 when the lead limbs are the right ones, -1 for the left.
    """
    T = ch["bend"].shape[0]
    pos = np.zeros((T, len(BODY_JOINTS), 3))
    # Half the trunk rotation at the spine, the other half at the chest.
    lower = (
        _rot(2, -hand * ch["twist"] / 2) @ _rot(1, hand * ch["side"] / 2) @ _rot(0, -ch["bend"] / 2)
    )
    upper = lower @ lower
    pos[:, _J["spine"]] = _apply(lower, (0.0, 0.0, subject.spine))
    pos[:, _J["thorax"]] = pos[:, _J["spine"]] + _apply(upper, (0.0, 0.0, subject.chest))
    thorax = pos[:, _J["thorax"]]
    pos[:, _J["neck"]] = thorax + _apply(upper, (0.0, 0.0, subject.neck))
    head = upper @ _rot(2, -hand * ch["yaw"]) @ _rot(0, -ch["nod"])
    for name, offset in _HEAD_POINTS.items():
        pos[:, _J[name]] = pos[:, _J["neck"]] + _apply(head, np.multiply(offset, subject.head))

    for side, sign in (("right", -1.0), ("left", 1.0)):
        limb = "lead" if (side == "right") == (hand > 0) else "off"
        a = {base: ch[f"{limb}_{base}"] for base in LIMB_CHANNELS}
        shoulder = thorax + _apply(upper, (-sign * subject.shoulder_width / 2, 0.0, subject.neck))
        arm = upper @ _rot(0, a["sflex"]) @ _rot(1, sign * a["sabd"]) @ _rot(2, sign * a["stwist"])
        elbow = shoulder + _apply(arm, (0.0, 0.0, -subject.upper_arm))
        wrist = elbow + _apply(arm @ _rot(0, a["elbow"]), (0.0, 0.0, -subject.forearm))
        hip = np.array([-sign * subject.hip_width / 2, 0.0, 0.0])
        thigh = _rot(0, a["hflex"]) @ _rot(1, sign * a["habd"])
        knee = hip + _apply(thigh, (0.0, 0.0, -subject.thigh))
        ankle = knee + _apply(thigh @ _rot(0, -a["knee"]), (0.0, 0.0, -subject.shin))
        for joint, value in (("shoulder", shoulder), ("elbow", elbow), ("wrist", wrist),
                             ("hip", hip), ("knee", knee), ("ankle", ankle)):  # fmt: skip
            pos[:, _J[f"{side}_{joint}"]] = value
    return pos


# -- sequences ------------------------------------------------------------------------


def _trajectory(
    info: ActionInfo, script: Script, t: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Heading (T,) radians and base position (T, 2) of a right-handed performer.

    Heading 0 faces +y; the facing direction is ``(-sin, cos)``. Paths are
    ellipses with semi-axes of 0.9-1.4 m and 0.6-1.0 m around the origin, so the
    body stays inside a Human3.6M-sized capture volume.
    """
    if info.locomotion == "path":
        a, b = rng.uniform(0.9, 1.4), rng.uniform(0.6, 1.0)
        tilt, theta0 = rng.uniform(0.0, 2 * np.pi, size=2)
        direction = rng.choice([-1.0, 1.0])
        centre = rng.uniform(-0.15, 0.15, size=2)
        speed = rng.uniform(*script.speed)
        theta = theta0 + direction * speed * t / np.sqrt((a * a + b * b) / 2)
        rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
        xy = centre + np.stack([a * np.cos(theta), b * np.sin(theta)], -1) @ rot.T
        vel = direction * np.stack([-a * np.sin(theta), b * np.cos(theta)], -1) @ rot.T
        return np.arctan2(-vel[:, 0], vel[:, 1]), xy
    heading0 = rng.uniform(0.0, 2 * np.pi)
    centre = rng.uniform(-0.3, 0.3, size=2)
    if info.locomotion == "turn":
        heading = heading0 + rng.choice([-1.0, 1.0]) * rng.uniform(0.8, 1.6) * t
    else:
        wobble_freq, wobble_phase = rng.uniform(0.05, 0.2), rng.uniform(0.0, 2 * np.pi)
        heading = heading0 + np.deg2rad(3.0) * np.sin(2 * np.pi * wobble_freq * t + wobble_phase)
    return heading, np.broadcast_to(centre, t.shape + (2,))


def _soft_min(z: np.ndarray, width: float = 0.01) -> np.ndarray:
    """A smooth lower bound of ``z.min(-1)``, within ``width * log(len)`` of it.

    Grounding on it keeps the pelvis height smooth when support passes from
    one joint to another (from foot to foot in a walk).
    """
    low = z.min(axis=-1)
    return low - width * np.log(np.exp(-(z - low[..., None]) / width).sum(axis=-1))


def simulate(
    action: str,
    subject: Subject,
    num_frames: int,
    fps: float = 50.0,
    seed: int = 0,
    handedness: str = "right",
) -> np.ndarray:
    """World positions (num_frames, len(BODY_JOINTS), 3) float32 of ``subject`` doing ``action``.

    Deterministic in ``seed``; ``handedness`` ("right" or "left") picks the lead
    limbs (with the same seed, "left" gives exactly the mirror image of "right").
    """
    if action not in ACTION_SCRIPTS:
        raise ValueError(f"unknown action {action!r}; known actions: {ACTIONS}")
    if handedness not in ("right", "left"):
        raise ValueError(f"handedness must be 'right' or 'left', got {handedness!r}")
    if not isinstance(subject, Subject):
        raise TypeError(f"subject must be a Subject, got {type(subject).__name__}")
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps!r}")
    info, script = ACTION_INFO[action], ACTION_SCRIPTS[action]
    hand = 1.0 if handedness == "right" else -1.0
    rng = np.random.default_rng(seed)
    t = np.arange(int(num_frames)) / fps
    ch = _channels(script, t, rng)
    heading, base = _trajectory(info, script, t, rng)
    heading, base = hand * heading, base * np.array([hand, 1.0])

    body = _forward_kinematics(subject, ch, hand)
    body = np.einsum("tij,tkj->tki", _rot(0, ch["pitch"]), body)
    if script.anchor is not None:
        lead, off = ("right", "left") if hand > 0 else ("left", "right")
        sides = {"feet": (lead, off), "lead": (lead,), "off": (off,)}[script.anchor]
        ankles = body[:, [_J[f"{side}_ankle"] for side in sides], :2]
        body[..., :2] -= ankles.mean(axis=1, keepdims=True)
    body[..., 1] += ch["fwd"][:, None]
    world = np.einsum("tij,tkj->tki", _rot(2, heading), body)
    world[..., :2] += base[:, None]
    if info.posture == "hanging":
        bar = subject.height - subject.head + subject.upper_arm + subject.forearm + 0.1
        wrists = world[:, [_J["left_wrist"], _J["right_wrist"]], 2].mean(axis=1)
        world[..., 2] += (bar - wrists)[:, None]
    else:
        world[..., 2] += (subject.ankle_height - _soft_min(world[..., 2]) + ch["lift"])[:, None]
    return world.astype(np.float32)
