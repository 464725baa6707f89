"""The comparison shape shared by the three tasks' experiments (tasks/common/compare.py)."""

import pytest

from chiral_tasks.common import compare

SEEDS = [0, 1, 2]
KEYS = ("mpjpe", "p_mpjpe")


def _cells(trained):
    """Made-up per-seed results: model i scores 100 + 10 i + s one-pass, 90 + 10 i - s
    with TTA (the chiral model exactly equal), the second key one more."""

    def scores(value):
        return {k: value + j for j, k in enumerate(KEYS)}

    cells = {}
    for i, name in enumerate(trained):
        for s in SEEDS:
            one = 100.0 + 10 * i + s
            tta = one if name == "chiral" else 90.0 + 10 * i - s
            cells[f"{name}_seed{s}"] = {
                "test": scores(one),
                "test_tta": scores(tta),
                "params": 1000 * (i + 1),
                "history": [{"epoch": e, "loss": float(e + i)} for e in (1, 2)],
            }
    return cells


def test_rows_put_plain_with_tta_after_plain():
    assert [r[0] for r in compare.rows(compare.TRAINED)] == [
        "chiral", "chiral_mixed", "plain", "plain_tta", "plain_noflip"
    ]  # fmt: skip
    assert compare.rows(["chiral", "plain"])[-1] == ("plain_tta", "plain", "test_tta")


def test_summary_pairs_the_differences_by_seed():
    cells = _cells(compare.TRAINED)
    result = compare.summarise(cells, compare.TRAINED, SEEDS, keys=KEYS, metric="mpjpe")
    table = {row["model"]: row for row in result["table"]}
    assert table["plain_tta"]["passes"] == 2
    assert table["plain_tta"]["mpjpe"]["mean"] == pytest.approx(109.0)
    assert table["plain_tta"]["p_mpjpe"]["mean"] == pytest.approx(110.0)
    assert table["plain"]["params"] == 3000 and table["plain"]["seeds"] == 3
    diffs = result["differences"]
    # chiral (100 + s) against plain with TTA (110 - s): -10 + 2 s, mean -8, std 2.
    assert diffs["chiral - plain_tta"]["mean"] == pytest.approx(-8.0)
    assert diffs["chiral - plain_tta"]["std"] == pytest.approx(2.0)
    low, high = diffs["chiral - plain_tta"]["ci95"]
    assert low < -8.0 < high
    assert diffs["chiral_mixed - chiral"]["mean"] == pytest.approx(10.0)
    assert diffs["chiral_mixed - chiral"]["std"] == pytest.approx(0.0)
    assert result["max_chiral_tta_difference"] == 0.0
    one_seed = compare.summarise(cells, compare.TRAINED, [0], keys=KEYS, metric="mpjpe")
    assert one_seed["differences"] == {}


def test_a_task_without_a_model_reports_the_differences_it_has():
    trained = ("chiral", "plain", "plain_noflip")
    result = compare.summarise(_cells(trained), trained, SEEDS, keys=KEYS, metric="mpjpe")
    assert set(result["differences"]) == {
        "chiral - plain_tta", "chiral - plain", "chiral - plain_noflip"
    }  # fmt: skip


def test_curves_and_the_rendered_text():
    cells = _cells(compare.TRAINED)
    assert compare.curves(cells, ["plain"], 1, "loss") == {"plain": ([1, 2], [3.0, 4.0])}
    results = {
        **compare.summarise(cells, compare.TRAINED, SEEDS, keys=KEYS, metric="mpjpe"),
        "seeds": SEEDS,
        "wall_seconds": 12.0,
        "environment": {"cpu_count": 2, "backend": "cpu",
                        "versions": {"python": "3", "jax": "0.1"}},  # fmt: skip
    }
    columns = {"mpjpe": "MPJPE mm", "p_mpjpe": "P-MPJPE mm"}
    text = compare.format_text(results, columns, label="MPJPE", unit="mm")
    assert "MPJPE chiral - plain_tta: -8.0 mm" in text
    md = compare.markdown(results, columns, higher_is_better=False, label="MPJPE",
                          unit="mm", setting="test setting")  # fmt: skip
    assert "| chiral | 1 | 1,000 | **101.0 ± 0.8** | **102.0 ± 0.8** |" in md
    assert "- chiral − plain_tta: -8.0 (std 2.0;" in md
    assert "Seeds 0, 1, 2; test setting; chiral + TTA differs" in md and "jax 0.1" in md
    # Higher-is-better metrics in percent: the largest mean in bold, values scaled.
    md = compare.markdown(results, columns, higher_is_better=True, label="top-1",
                          unit="points", setting="s", scale=100, digits=0)  # fmt: skip
    assert "| plain_noflip | 1 | 4,000 | **13100 ± 82** | **13200 ± 82** |" in md
