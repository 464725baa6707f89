"""End-to-end smoke test of ``chiral recognition``: generate -> train -> evaluate."""

import json

import pytest

import chiral_tasks.cli

TINY_MODEL = ["--widths", "36", "36", "36", "36", "--strides", "2", "--window", "16"]


@pytest.mark.slow
def test_generate_train_evaluate_through_the_cli(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    assert chiral_tasks.cli.main(
        ["recognition", "generate", "--out", str(data), "--classes", "waving", "squat",
         "--clips-per-class", "4", "--seed", "3"]
    ) == 0  # fmt: skip
    assert (data / "kinetics_train_label.json").is_file() and (data / "val_data.npy").is_file()
    assert chiral_tasks.cli.main(
        ["recognition", "train", "--data", str(data), "--format", "json", "--model",
         "chiral", *TINY_MODEL, "--epochs", "1", "--batch-size", "3", "--no-progress",
         "--out", str(run)]
    ) == 0  # fmt: skip
    trained = json.loads((run / "results.json").read_text())
    assert trained["model"] == "chiral" and trained["clips"] == 2
    assert len(trained["history"]) == 1 and trained["history"][0]["loss"] > 0
    assert (run / "confusion.png").stat().st_size > 0
    assert trained["mirror_max_rel_diff"] <= 1e-5 and trained["mirror_changed_fraction"] == 0

    assert chiral_tasks.cli.main(
        ["recognition", "evaluate", "--data", str(data), "--run", str(run), "--split",
         "train", "--batch-size", "4"]
    ) == 0  # fmt: skip
    result = json.loads((run / "eval_train.json").read_text())
    assert result["split"] == "train" and result["clips"] == 6
    assert 0.0 <= result["top1"] <= result["top5"] == 1.0  # top-5 of 2 classes
    assert result["mirror_max_rel_diff"] <= 1e-5
    assert (run / "eval_train.png").is_file()
    assert "mirror check" in capsys.readouterr().out


def test_pickled_labels_need_the_trust_flag(tmp_path, capsys):
    (tmp_path / "train_data.npy").write_bytes(b"")
    (tmp_path / "train_label.pkl").write_bytes(b"never unpickled")
    args = ["recognition", "train", "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    assert chiral_tasks.cli.main(args) == 1
    assert "--allow-pickle" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
