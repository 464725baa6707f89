"""Skeletons: JSON round trips with field-naming errors, and their hidden layouts."""

import json

import pytest

from chiral_jax import SKELETONS, ChiralLayout, Skeleton
from chiral_jax.skeletons import H36M_17, PENN_ACTION_13


@pytest.mark.parametrize("name", sorted(SKELETONS))
def test_dict_round_trip_through_json_is_exact(name):
    skeleton = SKELETONS[name]
    d = skeleton.to_dict()
    assert Skeleton.from_dict(json.loads(json.dumps(d))) == skeleton
    assert d["centre"] == list(skeleton.centre)
    without_centre = {k: v for k, v in d.items() if k != "centre"}
    assert Skeleton.from_dict(without_centre) == skeleton


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(parents=None), "lacks the fields \\['parents'\\]"),
        (dict(pelvis=0), "unknown fields \\['pelvis'\\]"),
        (dict(name=3), "'name' must be a string"),
        (dict(joint_names="head"), "'joint_names' must be a list of str"),
        (dict(left=[1, True]), "'left' must be a list of int"),
        (dict(right=[2.0]), "'right' must be a list of int"),
        (dict(parents=[-1, 0]), "2 parents for 3 joints"),
        (dict(parents=[-1, 0, 5]), "joint 2 has invalid parent 5"),
        (dict(left=[1, 2], right=[2]), "left and right must pair up"),
        (dict(right=[7]), "joint index 7 in right is out of range"),
        (dict(centre=[1]), "'centre' is \\[1\\], but the joints in no pair are \\[0\\]"),
    ],
)
def test_from_dict_names_the_bad_field(change, message):
    d = {"name": "toy", "joint_names": ["head", "l", "r"], "parents": [-1, 0, 0],
         "left": [1], "right": [2], "centre": [0]}
    d = {k: v for k, v in {**d, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        Skeleton.from_dict(d)
    with pytest.raises(ValueError, match="mapping"):
        Skeleton.from_dict([("name", "toy")])


def test_hidden_layout_keeps_the_joint_structure():
    layout = H36M_17.hidden_layout(1020, 1 / 3)
    assert layout == ChiralLayout.hidden(pairs=6, centre=5, dims=60, negated=20)
    assert PENN_ACTION_13.hidden_layout(26, 1.0).negated == (0, 1)
    # An integer fraction is a fraction, not a count.
    assert PENN_ACTION_13.hidden_layout(52, 1).negated == (0, 1, 2, 3)


@pytest.mark.parametrize("channels", [0, 16, 100])
def test_hidden_layout_rejects_channels_that_do_not_split_over_the_joints(channels):
    with pytest.raises(ValueError, match="positive multiple of the 17 joints of skeleton 'h36m'"):
        H36M_17.hidden_layout(channels, 1 / 3)
