"""The procedural humanoid's actions: what kind of movement each is, and its keyframed script.

:data:`ACTIONS` names them. Each pairs an :class:`ActionInfo` (:data:`ACTION_INFO`) with a
:class:`Script` (:data:`ACTION_SCRIPTS`): keyframes of joint-angle channels over one
cycle, which :func:`chiral_tasks.common.motion.simulate` plays with random variation.
The channels' meaning (body frame, degrees, handedness) is described in
:mod:`chiral_tasks.common.motion`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

LIMB_CHANNELS = ("sflex", "sabd", "stwist", "elbow", "hflex", "habd", "knee")
"""Channels of one arm and leg, prefixed ``lead_``, ``off_`` or ``both_`` in a script."""
BODY_CHANNELS = ("bend", "side", "twist", "nod", "yaw", "pitch")
"""Channels of the trunk, head and whole body (degrees)."""
METRE_CHANNELS = ("fwd", "lift")
"""Channels that move the whole body (metres)."""


@dataclasses.dataclass(frozen=True)
class ActionInfo:
    """What kind of movement an action is.

    Attributes:
      symmetric: the action has no preferred side (its mirror image is the same action).
      lead: the limb that ``handedness`` picks ("arm" or "leg"), None if symmetric.
      periodic: a rhythmic cycle (True) or a stroke repeated with a return to rest.
      locomotion: "path" (moves along a closed curve), "turn" (turns in place) or
        "in_place".
      posture: "standing", "prone", "supine" or "hanging".
    """

    symmetric: bool
    lead: str | None
    periodic: bool
    locomotion: str
    posture: str


@dataclasses.dataclass(frozen=True)
class Script:
    """Keyframes over one cycle of ``period`` seconds at ``times`` in [0, 1).

    ``off`` says how the off-side limbs move: "own" (``off_*`` channels, rest
    otherwise), "same" (as the lead limbs) or "antiphase" (as the lead limbs half
    a cycle later). ``anchor`` names the ankles that stay put: "feet", "lead",
    "off" or None. ``speed`` is the walking speed range along a path (m/s).
    """

    period: float
    times: tuple[float, ...]
    channels: dict[str, tuple[float, ...]]
    off: str = "own"
    anchor: str | None = "feet"
    speed: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self):
        times = np.asarray(self.times)
        if times[0] != 0.0 or np.any(np.diff(times) <= 0) or times[-1] >= 1.0:
            raise ValueError(f"key times must increase from 0 within [0, 1): {self.times}")
        for name, values in self.channels.items():
            side, _, base = name.rpartition("_")
            ok = base in LIMB_CHANNELS if side else name in BODY_CHANNELS + METRE_CHANNELS
            if not ok or side not in ("", "lead", "off", "both") or len(values) != len(times):
                raise ValueError(f"bad channel {name!r} with {len(values)} keys")
            if side in ("off", "both") and self.off != "own":
                raise ValueError(f"channel {name!r} needs off='own'")


def _script(period, times, *, off="own", anchor="feet", speed=(0.0, 0.0), **channels):
    channels = {k: (v,) * len(times) if np.isscalar(v) else tuple(v) for k, v in channels.items()}
    return Script(period, tuple(times), channels, off, anchor, speed)


_GAIT = (0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)
_STROKE = (0, 0.1, 0.45, 0.55, 0.9)  # rest, rest, held, held, back at rest

_ACTIONS: dict[str, tuple[ActionInfo, Script]] = {
    "walking": (
        ActionInfo(True, None, True, "path", "standing"),
        _script(
            1.05, _GAIT, off="antiphase", anchor=None, speed=(1.1, 1.5),
            lead_hflex=(25, 18, 8, -2, -10, 0, 22, 28),
            lead_knee=(5, 15, 10, 5, 10, 40, 60, 25),
            lead_sflex=(-15, -10, 0, 10, 18, 10, 0, -10),
            lead_elbow=(15, 15, 20, 25, 30, 25, 20, 15),
            lead_sabd=8, bend=3, twist=(-4, -2, 0, 2, 4, 2, 0, -2),
        ),
    ),
    "jogging": (
        ActionInfo(True, None, True, "path", "standing"),
        _script(
            0.72, _GAIT, off="antiphase", anchor=None, speed=(2.2, 3.0),
            lead_hflex=(30, 20, 5, -10, -15, 10, 40, 45),
            lead_knee=(15, 30, 20, 25, 60, 95, 90, 40),
            lead_sflex=(-30, -20, 0, 20, 35, 20, 0, -20),
            lead_elbow=(85, 85, 90, 95, 95, 90, 85, 85),
            lead_sabd=10, bend=8, twist=(-6, -3, 0, 3, 6, 3, 0, -3),
            lift=(0, 0, 0, 0.04, 0, 0, 0, 0.04),
        ),
    ),
    "turning": (
        ActionInfo(True, None, True, "turn", "standing"),
        _script(
            1.0, (0, 0.25, 0.5, 0.75), off="antiphase",
            lead_hflex=(15, 5, 0, 5), lead_knee=(30, 10, 3, 5), lead_sflex=(5, 0, -5, 0),
        ),
    ),
    "sitting_down": (
        ActionInfo(True, None, False, "in_place", "standing"),
        _script(
            7.0, (0, 0.15, 0.22, 0.3, 0.6, 0.68, 0.75), off="same",
            lead_hflex=(0, 0, 55, 90, 90, 55, 0),
            lead_knee=(3, 3, 55, 95, 95, 55, 3),
            lead_habd=(0, 0, 5, 8, 8, 5, 0),
            lead_sflex=(0, 0, 25, 35, 35, 25, 0),
            lead_elbow=(8, 8, 30, 50, 50, 30, 8),
            bend=(2, 2, 35, 12, 12, 35, 2),
        ),
    ),
    "squat": (
        ActionInfo(True, None, True, "in_place", "standing"),
        _script(
            2.6, (0, 0.2, 0.45, 0.55, 0.8), off="same",
            lead_hflex=(0, 50, 100, 100, 50), lead_knee=(3, 60, 115, 115, 60),
            lead_sflex=(0, 50, 90, 90, 50), bend=(0, 15, 30, 30, 15),
        ),
    ),
    "bowing": (
        ActionInfo(True, None, False, "in_place", "standing"),
        _script(
            3.0, (0, 0.2, 0.4, 0.55, 0.75), off="same",
            bend=(0, 0, 65, 65, 0), nod=(0, 0, 15, 15, 0), lead_sflex=(0, 0, 55, 55, 0),
        ),
    ),
    "jumping_jacks": (
        ActionInfo(True, None, True, "in_place", "standing"),
        _script(
            1.1, (0, 0.25, 0.5, 0.75), off="same",
            lead_sabd=(8, 90, 165, 90), lead_sflex=(0, 5, 10, 5), lead_elbow=(10, 15, 10, 15),
            lead_habd=(2, 12, 22, 12), lead_knee=(15, 5, 15, 5), lift=(0, 0.07, 0, 0.07),
        ),
    ),
    "jump_rope": (
        ActionInfo(True, None, True, "in_place", "standing"),
        _script(
            0.5, (0, 0.25, 0.5, 0.75), off="same",
            lead_hflex=(15, 8, 5, 8), lead_knee=(25, 10, 5, 10),
            lead_sflex=(15, 20, 15, 10), lead_sabd=30, lead_elbow=75,
            lead_stwist=(0, 12, 0, -12), lift=(0, 0.05, 0.08, 0.05),
        ),
    ),
    "clapping": (
        ActionInfo(True, None, True, "in_place", "standing"),
        _script(
            0.45, (0, 0.5), off="same",
            lead_sflex=50, lead_sabd=(20, -23), lead_elbow=(60, 75),
        ),
    ),
    "waving_both": (
        ActionInfo(True, None, True, "in_place", "standing"),
        _script(
            2.6, (0, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.9), off="same",
            lead_sabd=(6, 150, 150, 150, 150, 150, 150, 150, 6),
            lead_sflex=(0, 10, 10, 10, 10, 10, 10, 10, 0),
            lead_stwist=(0, 80, 110, 70, 110, 70, 110, 80, 0),
            lead_elbow=(8, 35, 35, 35, 35, 35, 35, 35, 8),
            nod=(0, -10, -10, -10, -10, -10, -10, -10, 0),
        ),
    ),
    "clean_and_jerk": (
        ActionInfo(True, None, False, "in_place", "standing"),
        _script(
            5.0, (0, 0.1, 0.25, 0.35, 0.45, 0.55, 0.65, 0.8), off="same",
            lead_sflex=(0, 45, 5, 85, 85, 170, 170, 5),
            lead_sabd=(6, 15, 15, 20, 20, 20, 20, 6),
            lead_elbow=(8, 5, 5, 145, 145, 5, 5, 8),
            lead_hflex=(0, 90, 5, 40, 0, 10, 0, 0),
            lead_knee=(3, 100, 5, 40, 3, 15, 3, 3),
            bend=(0, 45, 5, 0, 0, 0, 0, 0),
        ),
    ),
    "pushup": (
        ActionInfo(True, None, True, "in_place", "prone"),
        # Hands and feet on the floor: the body inclines less as the elbows bend,
        # and the arms stay near vertical (shoulder flexion = -pitch - elbow).
        _script(
            2.2, _STROKE, off="same", anchor=None,
            pitch=(-64, -64, -79, -79, -64), lead_sflex=(64, 64, -11, -11, 64),
            lead_elbow=(0, 0, 90, 90, 0), lead_sabd=(25, 25, 45, 45, 25), lead_habd=5,
        ),
    ),
    "situp": (
        ActionInfo(True, None, True, "in_place", "supine"),
        _script(
            2.8, _STROKE, off="same", anchor=None,
            pitch=90, bend=(0, 0, 75, 75, 0), nod=(0, 0, 20, 20, 0),
            lead_hflex=50, lead_knee=100, lead_sflex=140, lead_sabd=50, lead_elbow=140,
        ),
    ),
    "bench_press": (
        ActionInfo(True, None, True, "in_place", "supine"),
        _script(
            2.4, _STROKE, off="same", anchor=None,
            pitch=90, lead_hflex=45, lead_knee=110,
            lead_sflex=(90, 90, 10, 10, 90), lead_sabd=(5, 5, 75, 75, 5),
            lead_elbow=(5, 5, 95, 95, 5),
        ),
    ),
    "pullup": (
        ActionInfo(True, None, True, "in_place", "hanging"),
        _script(
            2.6, _STROKE, off="same", anchor=None,
            lead_sabd=(165, 165, 40, 40, 165), lead_stwist=90, lead_sflex=5,
            lead_elbow=(5, 5, 130, 130, 5), lead_hflex=15, lead_knee=30,
            nod=(0, 0, -10, -10, 0),
        ),
    ),
    "waving": (
        ActionInfo(False, "arm", True, "in_place", "standing"),
        _script(
            2.6, (0, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.9),
            lead_sabd=(6, 100, 100, 100, 100, 100, 100, 100, 6),
            lead_sflex=(0, 20, 20, 20, 20, 20, 20, 20, 0),
            lead_stwist=(0, 80, 105, 60, 105, 60, 105, 80, 0),
            lead_elbow=(8, 70, 70, 70, 70, 70, 70, 70, 8),
            yaw=(0, 8, 8, 8, 8, 8, 8, 8, 0),
        ),
    ),
    "boxing": (
        ActionInfo(False, "arm", False, "in_place", "standing"),
        # A cross with the lead hand, then a hook with the other.
        _script(
            1.6, (0, 0.1, 0.2, 0.35, 0.5, 0.75),
            lead_sflex=(40, 85, 40, 40, 40, 40), lead_sabd=(20, 5, 20, 20, 20, 20),
            lead_elbow=(125, 10, 125, 125, 125, 125),
            off_sflex=(40, 40, 40, 60, 40, 40), off_sabd=(20, 20, 20, 70, 20, 20),
            off_elbow=(120, 120, 120, 90, 120, 120),
            twist=(0, -25, 0, 20, 0, 0), bend=10, nod=5,
            lead_hflex=-5, off_hflex=20, both_knee=15,
        ),
    ),
    "strum_guitar": (
        ActionInfo(False, "arm", True, "in_place", "standing"),
        _script(
            0.5, (0, 0.5),
            lead_sflex=25, lead_sabd=-15, lead_elbow=(95, 110), lead_stwist=(-5, 15),
            off_sflex=45, off_sabd=35, off_elbow=(70, 72), bend=5, nod=15, yaw=-10,
        ),
    ),
    "kicking": (
        ActionInfo(False, "leg", False, "in_place", "standing"),
        _script(
            2.4, (0, 0.15, 0.25, 0.33, 0.45, 0.6), anchor="off",
            lead_hflex=(0, 45, 80, 45, 0, 0), lead_knee=(3, 90, 10, 70, 5, 3),
            off_hflex=(0, 5, 5, 5, 0, 0), off_knee=(5, 15, 15, 15, 5, 5),
            bend=(0, -5, -12, -5, 0, 0),
            lead_sflex=(0, -20, -25, -10, 0, 0), off_sflex=(0, 30, 35, 20, 0, 0),
            both_sabd=(10, 25, 30, 20, 10, 10), both_elbow=(10, 60, 60, 50, 10, 10),
        ),
    ),
    "golf_swing": (
        ActionInfo(False, "arm", False, "in_place", "standing"),
        # Address, top of the backswing, impact, follow-through, finish, back.
        _script(
            3.2, (0, 0.1, 0.3, 0.4, 0.45, 0.55, 0.7, 0.85),
            lead_sflex=(40, 40, 60, 40, 100, 120, 120, 40),
            lead_sabd=(-12, -12, 70, -12, -30, -20, -20, -12),
            lead_stwist=(0, 0, 60, 0, 0, 20, 20, 0),
            lead_elbow=(10, 10, 95, 10, 10, 60, 60, 10),
            off_sflex=(40, 40, 100, 40, 60, 100, 100, 40),
            off_sabd=(-12, -12, -35, -12, 70, 80, 80, -12),
            off_stwist=(0, 0, 0, 0, 60, 60, 60, 0),
            off_elbow=(10, 10, 10, 10, 95, 100, 100, 10),
            twist=(0, 0, 75, -15, -60, -85, -85, 0),
            yaw=(0, 0, -50, 10, 10, 0, 0, 0),
            bend=(35, 35, 33, 35, 25, 10, 10, 35),
            both_knee=(20, 20, 20, 20, 15, 10, 10, 20), both_hflex=20,
        ),
    ),
    "baseball_swing": (
        ActionInfo(False, "arm", False, "in_place", "standing"),
        _script(
            3.2, (0, 0.2, 0.35, 0.42, 0.5, 0.65, 0.85),
            lead_sflex=(30, 30, 70, 100, 100, 20, 30),
            lead_sabd=(40, 45, -10, -50, -50, 10, 40),
            lead_stwist=(40, 45, 0, 0, 0, 0, 40),
            lead_elbow=(110, 115, 50, 40, 40, 30, 110),
            off_sflex=(70, 70, 85, 100, 100, 20, 70),
            off_sabd=(-45, -45, -20, 40, 40, 10, -45),
            off_stwist=(0, 0, 0, 60, 60, 0, 0),
            off_elbow=(90, 95, 10, 90, 90, 30, 90),
            twist=(20, 35, -20, -75, -75, 0, 20),
            yaw=(-60, -65, -40, -10, -10, -30, -60),
            bend=(15, 15, 20, 10, 10, 10, 15),
            off_hflex=(15, 30, 20, 15, 15, 15, 15), off_knee=(20, 35, 15, 15, 15, 15, 20),
            lead_hflex=(15, 15, 15, 10, 10, 15, 15), lead_knee=(20, 25, 35, 30, 30, 20, 20),
        ),
    ),
    "tennis_serve": (
        ActionInfo(False, "arm", False, "in_place", "standing"),
        # Ready, toss, trophy position, contact (with a hop), follow-through, recover.
        _script(
            3.0, (0, 0.15, 0.3, 0.4, 0.48, 0.6, 0.8),
            lead_sflex=(10, -30, 10, 170, 40, 20, 10),
            lead_sabd=(10, 20, 100, 20, -35, 10, 10),
            lead_stwist=(0, 0, 100, 0, 0, 0, 0),
            lead_elbow=(30, 15, 100, 5, 20, 40, 30),
            off_sflex=(10, 90, 165, 40, 20, 10, 10), off_sabd=10,
            off_elbow=(30, 10, 10, 60, 60, 30, 30),
            bend=(5, 5, -15, 5, 35, 10, 5), twist=(0, 15, 30, -10, -35, 0, 0),
            nod=(0, -20, -35, -30, 10, 0, 0),
            both_knee=(10, 15, 35, 5, 25, 10, 10), both_hflex=(5, 10, 15, 5, 25, 5, 5),
            lift=(0, 0, 0, 0.06, 0, 0, 0),
        ),
    ),
    "tennis_forehand": (
        ActionInfo(False, "arm", False, "in_place", "standing"),
        _script(
            2.4, (0, 0.2, 0.35, 0.45, 0.6, 0.8),
            lead_sflex=(25, 10, 60, 120, 40, 25), lead_sabd=(10, 85, 20, -45, 10, 10),
            lead_stwist=(0, 30, 0, 0, 0, 0), lead_elbow=(60, 30, 25, 90, 60, 60),
            off_sflex=(25, 70, 40, 20, 25, 25), off_sabd=(10, -30, 10, 20, 10, 10),
            off_elbow=(60, 20, 60, 70, 60, 60),
            twist=(0, 55, 0, -50, -10, 0), bend=(10, 15, 10, 10, 10, 10),
            both_knee=(20, 25, 20, 20, 20, 20), both_hflex=15,
        ),
    ),
    "baseball_pitch": (
        ActionInfo(False, "arm", False, "in_place", "standing"),
        # Set, leg lift, stride with the arm cocked, release, follow-through, walk back;
        # the lead (pivot) foot stays put.
        _script(
            3.6, (0, 0.15, 0.3, 0.42, 0.5, 0.65, 0.85), anchor="lead",
            lead_sflex=(30, 30, -20, 130, 60, 10, 20),
            lead_sabd=(-10, -10, 90, 40, -40, 10, 0),
            lead_stwist=(0, 0, 100, 20, 0, 0, 0),
            lead_elbow=(110, 110, 90, 30, 30, 20, 60),
            off_sflex=(30, 30, 80, 20, 10, 10, 20), off_sabd=(-10, -10, 10, 30, 30, 10, 0),
            off_elbow=(110, 110, 20, 90, 90, 20, 60),
            off_hflex=(0, 85, 45, 40, 30, 5, 0), off_knee=(3, 95, 40, 35, 30, 5, 3),
            lead_hflex=(0, 5, -20, -25, -30, 0, 0), lead_knee=(3, 15, 20, 35, 50, 5, 3),
            twist=(0, 30, 45, -20, -45, 0, 0), bend=(0, 5, 0, 30, 55, 10, 0),
            fwd=(0, 0, 0, 0.1, 0.25, 0.3, 0.1),
        ),
    ),
    "bowling": (
        ActionInfo(False, "arm", False, "in_place", "standing"),
        # Stance, push-away, backswing on the approach, release in a sliding lunge,
        # follow-through, recover, walk back.
        _script(
            4.0, (0, 0.15, 0.3, 0.45, 0.55, 0.7, 0.85), anchor=None,
            lead_sflex=(30, 50, -55, 40, 110, 5, 10), lead_sabd=(0, 0, 5, 5, 0, 8, 8),
            lead_elbow=(100, 30, 5, 5, 20, 10, 20),
            off_sflex=(30, 20, 10, 15, 15, 5, 10), off_sabd=(-10, 10, 45, 55, 50, 8, 8),
            off_elbow=(100, 30, 20, 20, 20, 10, 20),
            off_hflex=(0, 10, 25, 70, 70, 5, 0), off_knee=(3, 10, 15, 80, 80, 5, 3),
            lead_hflex=(0, 0, -10, -30, -30, 0, 0), lead_knee=(3, 10, 20, 30, 30, 5, 3),
            bend=(5, 5, 25, 45, 35, 5, 5), twist=(0, 0, 10, -5, -5, 0, 0),
            fwd=(-0.6, -0.4, 0.0, 0.4, 0.5, 0.4, -0.3),
        ),
    ),
}  # fmt: skip

ACTIONS: tuple[str, ...] = tuple(_ACTIONS)
"""The action names."""

ACTION_INFO: dict[str, ActionInfo] = {name: info for name, (info, _) in _ACTIONS.items()}
"""Symmetry, lead limb, periodicity, locomotion and posture of each action."""

ACTION_SCRIPTS: dict[str, Script] = {name: script for name, (_, script) in _ACTIONS.items()}
"""The keyframed script of each action."""
