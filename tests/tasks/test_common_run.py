"""The run folder and its rerun rule (chiral_tasks.common.run), without training."""

import json
import stat

import pytest
from _files import snapshot

import chiral_tasks.cli
from chiral_tasks.common import run as run_module
from chiral_tasks.common.run import (
    LENGTH_KEYS,
    RunConflict,
    check_output,
    differences,
    environment,
    fingerprint,
    grid,
    open_run,
    read_run_config,
    run_experiment,
)

CONFIG = {"task": "t", "train": {"epochs": 2, "lr": 0.1}, "max_steps": None}


def with_epochs(epochs):
    return {**CONFIG, "train": {**CONFIG["train"], "epochs": epochs}}


def test_a_new_run_records_its_config_and_environment(tmp_path):
    run = open_run(tmp_path / "run", CONFIG)
    assert (run.resume, run.done) == (False, False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["config"] == {**CONFIG, "checkpoint_format": run_module.CHECKPOINT_FORMAT}
    versions = record["environment"]["versions"]
    expected = {"python", "jax", "jaxlib", "flax", "optax", "numpy", "orbax-checkpoint"}
    assert expected <= set(versions)


def test_the_same_config_reuses_a_finished_run_and_resumes_an_unfinished_one(tmp_path):
    run = open_run(tmp_path, CONFIG)
    (tmp_path / "checkpoints" / "5").mkdir(parents=True)
    again = open_run(tmp_path, CONFIG)
    assert (again.resume, again.done) == (True, False)
    (tmp_path / "figure.png").write_bytes(b"png")
    written = run.finish({"score": 1.5}, outputs=["figure.png"])
    assert written["config"] == CONFIG and written["wall_seconds"] >= 0
    assert set(written["manifest"]) == {"figure.png"}
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) & 0o044 == 0o044
    finished = open_run(tmp_path, CONFIG)
    assert finished.done and finished.results["score"] == 1.5

    (tmp_path / "figure.png").unlink()
    with pytest.raises(RunConflict, match="lacks figure.png"):
        open_run(tmp_path, CONFIG)


def test_other_settings_are_refused_unless_resume_lengthens_or_overwrite_replaces(tmp_path):
    open_run(tmp_path, CONFIG)
    (tmp_path / "checkpoints" / "5").mkdir(parents=True)
    before = snapshot(tmp_path)
    with pytest.raises(RunConflict, match=r"train.epochs was 2, now 3\); rerun with --resume"):
        open_run(tmp_path, with_epochs(3))
    changed = {**CONFIG, "train": {"epochs": 2, "lr": 0.2}}
    with pytest.raises(RunConflict, match=r"train.lr was 0.1, now 0.2\); choose another --out"):
        open_run(tmp_path, changed)
    # Under --resume the refusal says why it does not apply.
    with pytest.raises(
        RunConflict, match=r"now 0.2\); --resume does not apply \(it cannot change train.lr;"
    ):
        open_run(tmp_path, changed, resume=True)
    assert snapshot(tmp_path) == before

    longer = open_run(tmp_path, with_epochs(3), resume=True)
    assert longer.resume
    assert json.loads((tmp_path / "run.json").read_text())["config"]["train"]["epochs"] == 3

    fresh = open_run(tmp_path, changed, overwrite=True)
    assert not fresh.resume and not (tmp_path / "checkpoints").exists()


def test_a_folder_that_is_not_a_run_is_never_touched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(RunConflict, match="not a run folder"):
            open_run(tmp_path, CONFIG, overwrite=overwrite)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_an_experiment_reuses_finished_cells_and_trains_only_new_ones(tmp_path):
    trained = []

    def run_one(run, params):
        trained.append(run.folder.name)
        return {"score": params["seed"] * 10}

    _, cells = run_experiment(tmp_path, CONFIG, grid([0, 1], ["a", "b"]), run_one)
    assert trained == ["a_seed0", "b_seed0", "a_seed1", "b_seed1"]
    assert cells["b_seed1"]["score"] == 10
    cell = json.loads((tmp_path / "b_seed1" / "run.json").read_text())["config"]
    assert (cell["variant"], cell["seed"], cell["train"]["seed"]) == ("b", 1, 1)

    trained.clear()
    with pytest.raises(RunConflict, match="cells was"):
        run_experiment(tmp_path, CONFIG, grid([0, 1, 2], ["a", "b"]), run_one)
    _, cells = run_experiment(tmp_path, CONFIG, grid([0, 1, 2], ["a", "b"]), run_one, resume=True)
    assert trained == ["a_seed2", "b_seed2"] and len(cells) == 6


def test_results_files_are_replaced_only_for_the_same_inputs(tmp_path):
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps({"run": "r", "tta": False, "mpjpe": 1.0}))
    check_output(path, {"run": "r", "tta": False})
    with pytest.raises(RunConflict, match="tta was False, now True"):
        check_output(path, {"run": "r", "tta": True})
    check_output(path, {"run": "r", "tta": True}, overwrite=True)


def test_fingerprints_follow_the_bytes_and_differences_name_nested_keys(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"one")
    first = fingerprint([tmp_path])
    (tmp_path / "a.bin").write_bytes(b"two")
    assert fingerprint([tmp_path]) != first
    assert differences({"a": {"b": 1, "c": [1]}}, {"a": {"b": 2, "c": (1,)}}) == {"a.b": (1, 2)}
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        fingerprint([tmp_path / "missing"])
    assert environment()["backend"] == "cpu"


def test_chiral_names_the_extra_to_install_when_it_is_missing(monkeypatch, capsys):
    real = chiral_tasks.cli.importlib.util.find_spec
    monkeypatch.setattr(
        chiral_tasks.cli.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tqdm" else real(name, *a),
    )
    assert chiral_tasks.cli.main(["--help"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "chiral: error: the tasks need the 'tasks' extra: pip install 'chiral_jax[tasks]' "
        "(missing: tqdm)\n"
    )


def test_resuming_a_finished_run_for_longer_drops_its_old_results(tmp_path):
    run = open_run(tmp_path, CONFIG)
    (tmp_path / "checkpoints" / "5").mkdir(parents=True)
    run.finish({"score": 1.0})
    longer = open_run(tmp_path, with_epochs(4), resume=True)
    assert longer.resume and not longer.done
    assert not (tmp_path / "results.json").exists()
    # interrupted before finishing: the same longer command resumes, it reuses nothing
    again = open_run(tmp_path, with_epochs(4))
    assert again.resume and not again.done


def test_resume_never_shortens_a_run(tmp_path):
    open_run(tmp_path, with_epochs(4))
    (tmp_path / "checkpoints" / "5").mkdir(parents=True)
    shorter = r"\); --resume does not apply \(it only lengthens a run, and these settings"
    with pytest.raises(RunConflict, match=r"train.epochs was 4, now 2" + shorter):
        open_run(tmp_path, with_epochs(2), resume=True)
    capped = {**with_epochs(4), "max_steps": 10}
    with pytest.raises(RunConflict, match=r"max_steps was None, now 10" + shorter):
        open_run(tmp_path, capped, resume=True)
    # A task whose schedule follows the epoch count keeps the epochs fixed (lifting).
    fixed_epochs = LENGTH_KEYS - {"train.epochs"}
    with pytest.raises(RunConflict, match=r"it cannot change train.epochs; here it may change "
                                          r"max_steps, train.checkpoint_every\)"):  # fmt: skip
        open_run(tmp_path, with_epochs(6), resume=True, length_keys=fixed_epochs)


def test_a_run_that_saved_nothing_restarts_with_the_new_config(tmp_path):
    open_run(tmp_path, CONFIG)  # e.g. a check that failed before the first step
    (tmp_path / "checkpoints").mkdir()
    fresh = open_run(tmp_path, with_epochs(7))
    assert not fresh.resume
    assert json.loads((tmp_path / "run.json").read_text())["config"]["train"]["epochs"] == 7


def test_overwrite_replaces_an_unreadable_run_record(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    with pytest.raises(RunConflict, match="unreadable run record"):
        open_run(tmp_path / "run", CONFIG)
    open_run(tmp_path / "run", CONFIG, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing left aside


def test_fingerprints_see_files_moved_between_subfolders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    (tmp_path / "train" / "clip.json").write_text("{}")
    before = fingerprint([tmp_path])
    (tmp_path / "train" / "clip.json").rename(tmp_path / "val" / "clip.json")
    assert fingerprint([tmp_path]) != before


def test_a_run_of_an_older_checkpoint_format_is_refused_not_restored(tmp_path):
    """A folder written before the model state's layout changed is another config: one
    line naming the difference, nothing restored into a failing load."""
    open_run(tmp_path, CONFIG)
    record = json.loads((tmp_path / "run.json").read_text())
    del record["config"]["checkpoint_format"]
    (tmp_path / "run.json").write_text(json.dumps(record))
    (tmp_path / "checkpoints" / "5").mkdir(parents=True)
    with pytest.raises(RunConflict, match="checkpoint_format"):
        open_run(tmp_path, CONFIG)


def test_reading_a_run_folder_names_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing: no such run folder"):
        read_run_config(tmp_path / "missing", "lifting")
    with pytest.raises(FileNotFoundError, match="no run.json, so not a lifting run folder"):
        read_run_config(tmp_path, "lifting")
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="run.json: not a lifting run record"):
        read_run_config(tmp_path, "lifting")
    open_run(tmp_path / "run", {**CONFIG, "task": "forecasting"})
    with pytest.raises(ValueError, match="run: a forecasting run, not a lifting run"):
        read_run_config(tmp_path / "run", "lifting")
    assert read_run_config(tmp_path / "run", "forecasting")["train"] == CONFIG["train"]
