"""The benchmark suite runs end to end on tiny cases and writes a complete record.

Only the record's structure and the pieces that are not timings are checked (no
timing assertions: those numbers belong to ``benchmarks/results``).
"""

import json

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from benchmarks import run
from benchmarks.forecaster import ForecasterCase, run_forecaster_case
from benchmarks.layers import LayerCase, run_layer_case
from benchmarks.temporal import ModelCase, TrainCase, run_model_case, run_train_case
from benchmarks.transformer import (
    TransformerCase,
    run_transformer_case,
    run_transformer_train_case,
)
from chiral_jax import flip_average
from chiral_jax.fused import _build
from chiral_jax.skeletons import H36M_17
from chiral_tasks.lifting.model import TemporalModel

pytestmark = pytest.mark.slow  # each case compiles and times real models
HAS_COMPILER = _build._compiler() is not None
TINY_TRANSFORMER = TransformerCase(batch=1, frames=3, dims=8, depth=1, heads=2)


@pytest.mark.parametrize(
    "case",
    [
        LayerCase("dense", 68, 8, "fwd+bwd"),
        LayerCase("dense", 68, 8, "fwd", activation=True),
        LayerCase("conv", 64, 2, "fwd+bwd", frames=5),
    ],
    ids=lambda c: c.name,
)
def test_layer_case_record(case):
    record = run_layer_case(case, rounds=1)
    # The fused variants run where the fused kernels can be built (a C++ compiler).
    expected = {v for v in case.variants if HAS_COMPILER or not v.endswith("_fused")}
    assert set(record["seconds"]) == expected == set(record["ratio"])
    assert record["ratio"]["plain"] == 1.0
    assert all(t > 0 for t in record["seconds"].values())
    assert record["rows"] == case.rows
    # XLA's FLOP count: every even/odd variant does fewer multiplies than plain.
    flops = record["flops"]
    for name in ("even_odd", "even_odd_form"):
        if flops[name] is not None and flops["plain"] is not None:
            assert flops[name] < flops["plain"], (name, flops)


def test_flip_average_leaves_a_chiral_model_unchanged_and_changes_a_plain_one():
    layout_in, layout_out = H36M_17.layout(2), H36M_17.layout(3)
    x = jax.random.normal(jax.random.key(0), (2, 5, 17, 2))
    for chiral in (True, False):
        model = TemporalModel(H36M_17, H36M_17, chiral=chiral, filter_widths=(3,), channels=34,
                              rngs=nnx.Rngs(0))
        model.eval()
        graphdef, state = nnx.split(model)

        def fn(state, x, graphdef=graphdef):
            return nnx.merge(graphdef, state)(x)

        averaged = flip_average(fn, layout_in, layout_out, argnum=1)(state, x)
        gap = float(jnp.max(jnp.abs(averaged - fn(state, x))))
        assert (gap < 1e-5) if chiral else (gap > 1e-3), (chiral, gap)


def test_model_case_record():
    case = ModelCase((3,), batch=1, frames=3, plain_channels=34, chiral_channels=34,
                     impls=("auto", "even_odd"))
    record = run_model_case(case, rounds=1)
    assert set(record["seconds"]) == {"plain", "plain_flip", "chiral_auto", "chiral_even_odd"}
    assert record["ratio_to_plain_flip"]["plain_flip"] == 1.0
    assert record["params"]["chiral"] < record["params"]["plain"]


def test_train_case_record():
    record = run_train_case(TrainCase((3,), batch=2, plain_channels=34, chiral_channels=34), 1)
    variants = {"plain", "chiral_dense", "chiral_even_odd"}
    assert set(record["seconds"]) == set(record["first_call_seconds"]) == variants
    assert record["ratio"]["plain"] == record["first_call_ratio"]["plain"] == 1.0
    assert all(t > 0 for t in record["first_call_seconds"].values())
    # The first call is the median of three compilations per variant, each recorded.
    calls = record["first_call_all_seconds"]
    assert set(calls) == variants and all(len(t) == 3 for t in calls.values())
    assert all(sorted(calls[k])[1] == record["first_call_seconds"][k] for k in variants)
    assert record["auto_impl"] == "dense"  # 34 channels: narrow
    assert record["params"]["chiral"] < record["params"]["plain"]


def test_forecaster_case_record():
    record = run_forecaster_case(ForecasterCase(hidden=26, batch=2, future=3), rounds=1)
    assert set(record["seconds"]) == {"plain", "plain_flip", "chiral"}
    assert record["ratio_to_plain_flip"]["plain_flip"] == 1.0
    assert record["params"]["chiral"] < record["params"]["plain"]


def test_transformer_case_record():
    record = run_transformer_case(TINY_TRANSFORMER, rounds=1)
    variants = {"plain", "plain_flip", "chiral"}
    assert set(record["seconds"]) == set(record["ratio_to_plain"]) == set(record["flops"])
    assert set(record["seconds"]) == variants
    assert record["ratio_to_plain"]["plain"] == record["ratio_to_plain_flip"]["plain_flip"] == 1.0
    assert all(t > 0 for t in record["seconds"].values())
    assert (record["size"], record["frames"], record["batch"]) == ("f3 d8x1", 3, 1)
    assert record["params"]["chiral"] < record["params"]["plain"]


def test_transformer_train_case_record():
    record = run_transformer_train_case(TINY_TRANSFORMER, rounds=1)
    assert set(record["seconds"]) == set(record["first_call_seconds"]) == {"plain", "chiral"}
    assert record["ratio"]["plain"] == record["first_call_ratio"]["plain"] == 1.0
    assert all(t > 0 for t in record["seconds"].values())
    assert all(t > 0 for t in record["first_call_seconds"].values())
    assert record["case"] == "train step transformer f3 d8x1 b1"
    assert record["params"]["chiral"] < record["params"]["plain"]


def _tiny_transformers(monkeypatch):
    monkeypatch.setattr(run, "transformer_cases", lambda quick: [TINY_TRANSFORMER])
    monkeypatch.setattr(run, "transformer_train_cases", lambda quick: [TINY_TRANSFORMER])


TRANSFORMER_SUMMARY = {
    "P2 transformer chiral f3 d8x1",
    "train step transformer chiral f3 d8x1",
    "first call transformer chiral f3 d8x1",
}


def test_main_writes_json_with_summary(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "layer_cases", lambda quick: [LayerCase("dense", 68, 8, "fwd+bwd")])
    monkeypatch.setattr(
        run, "model_cases",
        lambda quick: [ModelCase((3,), batch=1, frames=3, plain_channels=34, chiral_channels=34,
                                 impls=("even_odd",))],
    )
    monkeypatch.setattr(
        run, "forecaster_cases", lambda quick: [ForecasterCase(hidden=26, batch=2, future=3)]
    )
    monkeypatch.setattr(
        run, "train_cases",
        lambda quick: [TrainCase((3,), batch=2, plain_channels=34, chiral_channels=34)],
    )
    _tiny_transformers(monkeypatch)
    out = tmp_path / "bench.json"
    run.main(["--quick", "--rounds", "1", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["device"].startswith(("CPU", "GPU", "TPU"))
    kinds = ("layers", "models", "forecasters", "train_steps", "transformers",
             "transformer_train_steps")  # fmt: skip
    assert [len(record[k]) for k in kinds] == [1, 1, 1, 1, 1, 1]
    # The P1 rows need width 1020 (absent here); P2 comes from the model cases.
    assert set(record["summary"]) == {
        "P2 chiral_even_odd",
        "P2 forecaster chiral",
        "train step chiral_dense rf3 c34",
        "train step chiral_even_odd rf3 c34",
        "first call chiral_dense rf3 c34",
        "first call chiral_even_odd rf3 c34",
        *TRANSFORMER_SUMMARY,
    }


def test_main_runs_the_transformer_alone(tmp_path, monkeypatch, capsys):
    _tiny_transformers(monkeypatch)
    out = tmp_path / "bench.json"
    run.main(["--skip-layers", "--skip-models", "--rounds", "1", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["layers"] == record["models"] == record["train_steps"] == []
    assert [r["case"] for r in record["transformers"]] == [TINY_TRANSFORMER.name]
    assert len(record["transformer_train_steps"]) == 1
    assert set(record["summary"]) == TRANSFORMER_SUMMARY
    assert record["command"].endswith("--skip-layers --skip-models --rounds 1 --out " + str(out))
    # The same command again refuses, in one line and before any case, to replace it.
    before = out.read_text()
    with pytest.raises(SystemExit) as exit_:
        run.main(["--skip-layers", "--skip-models", "--rounds", "1", "--out", str(out)])
    assert exit_.value.code == 2 and out.read_text() == before
    assert f"{out} exists; pass --overwrite" in capsys.readouterr().err


def test_against_measures_both_trees_in_one_sitting(tmp_path, capsys):
    from benchmarks import against

    head = against._git("rev-parse", "HEAD")
    out = tmp_path / "against.json"
    against.main(["HEAD", "--quick", "--repeats", "1", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["rev"] == head and record["this_tree"].startswith(head)
    assert [c["tree"] for c in record["children"]] == ["rev", "this"]
    for child in record["children"]:
        assert child["versions"]["jax"] == jax.__version__
        assert child["p2"]["ratio"]["plain_flip"] == 1.0 and child["p2"]["ratio"]["chiral"] > 0
        # Either the fused kernels were timed, or why not is recorded.
        assert ("chiral_fused" in child["p2"]["ratio"]) != ("fused" in child)
        assert child["p1"]["ratio"]["plain"] == child["p1_tanh"]["ratio"]["plain"] == 1.0
    summary = record["summary"]["this"]["p2"]["chiral"]
    assert summary["min"] <= summary["median"] <= summary["max"]
    # An existing --out is not replaced without --overwrite.
    before = out.read_text()
    with pytest.raises(SystemExit) as exit_:
        against.main(["HEAD", "--quick", "--out", str(out)])
    assert exit_.value.code == 2 and out.read_text() == before
    assert "pass --overwrite" in capsys.readouterr().err
