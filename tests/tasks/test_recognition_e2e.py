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


def _tiny_data(tmp_path):
    data = tmp_path / "data"
    assert chiral_tasks.cli.main(
        ["recognition", "generate", "--out", str(data), "--classes", "waving", "squat",
         "--clips-per-class", "4", "--seed", "3"]
    ) == 0  # fmt: skip
    return data


TINY_RUN = [*TINY_MODEL, "--epochs", "1", "--batch-size", "3", "--no-progress"]


@pytest.mark.slow
def test_experiment_scores_every_model_with_and_without_flip_averaging(tmp_path, capsys):
    data, out = _tiny_data(tmp_path), tmp_path / "experiment"
    command = ["recognition", "experiment", "--data", str(data), "--seeds", "0", "1",
               *TINY_RUN, "--out", str(out)]  # fmt: skip
    assert chiral_tasks.cli.main(command) == 0
    results = json.loads((out / "results.json").read_text())
    table = {row["model"]: row for row in results["table"]}
    assert list(table) == ["chiral", "chiral_mixed", "plain", "plain_tta", "plain_noflip"]
    assert table["plain_tta"]["passes"] == 2 and table["chiral"]["seeds"] == 2
    assert set(results["differences"]) >= {"chiral - plain_tta", "chiral_mixed - chiral"}
    # The invariant models' logits ignore the mirror: averaging over it changes nothing.
    assert results["max_chiral_tta_difference"] == 0.0
    assert results["per_seed"]["chiral_mixed_seed0"]["config"]["model"]["even_activation"] == "relu"
    assert results["per_seed"]["plain_noflip_seed1"]["config"]["augment"]["flip"] == 0.0
    assert (out / "learning_curves.png").stat().st_size > 0
    assert "top-1 chiral - plain_tta" in capsys.readouterr().out
    # --variants picks models; one with other settings is another experiment folder.
    assert chiral_tasks.cli.main(
        [*command[:-1], str(tmp_path / "two"), "--variants", "plain", "chiral"]
    ) == 0  # fmt: skip
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert [row["model"] for row in two["table"]] == ["chiral", "plain", "plain_tta"]


def test_markdown_of_an_ablation_names_each_setting_and_its_paired_change():
    from chiral_tasks.recognition.experiments import markdown_ablation

    stats = {"mean": 0.8, "std": 0.05, "n": 3}
    results = {
        "seeds": [0, 1, 2],
        "rows": [
            {"setting": "baseline", "description": "the comparison's settings",
             "model": "chiral", "top1": stats},
            {"setting": "lr", "description": "learning rate 0.05", "model": "chiral",
             "top1": {**stats, "mean": 0.9}, "reference": "chiral",
             "minus_baseline": {"mean": 0.1, "std": 0.02, "ci95": [0.08, 0.12], "n": 3}},
        ],  # fmt: skip
        "wall_seconds": 5.0,
        "settings_seconds": 300.0,
        "environment": {"cpu_count": 2, "backend": "cpu", "versions": {"jax": "0.1"}},
    }
    text = markdown_ablation(results)
    assert "| the comparison's settings | chiral | 80.0 ± 5.0 | - |" in text
    assert "| learning rate 0.05 | chiral | 90.0 ± 5.0 | +10.0 [+8.0, +12.0] vs chiral |" in text
    assert "Seeds 0, 1, 2, paired by seed; 2-core cpu machine, 300 s in all" in text
