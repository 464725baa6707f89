"""End to end through the CLI: generate -> train -> evaluate -> results JSON."""

import json

import numpy as np
import pytest

import chiral_tasks.cli
from chiral_tasks.forecasting import penn


@pytest.mark.slow
def test_generate_train_evaluate_via_the_cli(tmp_path, capsys):
    data, run = tmp_path / "labels", tmp_path / "run"
    chiral_tasks.cli.main(
        ["forecasting", "generate", "--out", str(data), "--num-videos", "16",
         "--min-frames", "20", "--max-frames", "30", "--no-progress"]
    )  # fmt: skip
    train, test = penn.load_penn_action(data)
    assert len(train) == len(test) == 8

    common = ["--data", str(data), "--hidden", "26", "--no-progress"]
    chiral_tasks.cli.main(
        ["forecasting", "train", *common, "--model", "plain", "--flip", "--out", str(run),
         "--epochs", "1", "--batch-size", "64", "--max-steps", "2"]
    )  # fmt: skip
    trained = json.loads((run / "results.json").read_text())
    assert len(trained["pck"]) == 16 and 0 <= trained["pck_avg"] <= 100
    record = json.loads((run / "run.json").read_text())["config"]
    assert record["augment"] is True and record["model"]["chiral"] is False
    assert record["train"]["lr"] == 0.005 and record["train"]["clip_norm"] == 5.0

    out = tmp_path / "eval.json"
    chiral_tasks.cli.main(
        ["forecasting", "evaluate", "--run", str(run), "--data", str(data), "--out", str(out)]
    )
    evaluated = json.loads(out.read_text())
    # the restored checkpoint scores exactly as the model that was trained
    np.testing.assert_allclose(evaluated["pck"], trained["pck"])
    assert evaluated["tta"] is False
    printed = capsys.readouterr().out
    assert f"plain: PCK@0.05 {trained['pck_avg']:.1f}% on average; per future step" in printed
    assert f"plain ({run}): PCK@0.05 {evaluated['pck_avg']:.1f}% on average" in printed

    assert chiral_tasks.cli.main(["forecasting", "evaluate", "--run", str(run), "--data",
                                  str(data), "--out", str(out), "--tta"]) == 1  # fmt: skip
    assert "holds results of other inputs (tta was False, now True)" in capsys.readouterr().err
    chiral_tasks.cli.main(["forecasting", "evaluate", "--run", str(run), "--data", str(data),
                           "--out", str(out), "--tta", "--overwrite"])  # fmt: skip
    assert json.loads(out.read_text())["tta"] is True


def test_evaluate_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    args = ["forecasting", "evaluate", "--run", str(tmp_path), "--data", str(tmp_path)]
    assert chiral_tasks.cli.main(args) == 1
    assert "no run.json, so not a forecasting run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_writes_table_json_png_and_gif(tmp_path, capsys):
    out = tmp_path / "demo"
    chiral_tasks.cli.main(
        ["forecasting", "generate", "--out", str(tmp_path / "data"), "--num-videos", "16",
         "--min-frames", "20", "--max-frames", "30", "--no-progress"]
    )  # fmt: skip
    chiral_tasks.cli.main(
        ["forecasting", "demo", "--out", str(out), "--data", str(tmp_path / "data"),
         "--hidden", "26", "--epochs", "1", "--max-steps", "2", "--batch-size", "64",
         "--no-progress"]
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    table = {row["model"]: row for row in results["table"]}
    assert list(table) == ["chiral", "plain", "plain_tta", "plain_noflip"]
    assert table["chiral"]["avg"]["n"] == 1 and table["plain_tta"]["passes"] == 2
    assert results["differences"] == {}  # one seed: no spread to report
    # The chiral forecast is equivariant: flip TTA changes nothing.
    assert results["max_chiral_tta_difference"] < 1e-3
    for name in ("pck.png", "learning_curves.png", "forecast.gif"):
        assert (out / name).stat().st_size > 1000
    assert "plain_tta" in capsys.readouterr().out
