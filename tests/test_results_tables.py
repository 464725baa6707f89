"""The README's and the docs' result tables are the committed results JSON, rendered."""

import json

from chiral_tasks.common import tables


def test_every_table_matches_its_results_json():
    blocks = [
        m["json"] for page in tables.pages() for m in tables.BLOCK.finditer(page.read_text())
    ]
    assert "docs/results/lifting.json" in blocks
    assert list(tables.stale()) == [], "run: python -m chiral_tasks.common.tables"


def test_a_changed_number_makes_the_table_stale(tmp_path):
    """Rendering rewrites the block from the JSON; a page edited by hand is caught."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "r.json").write_text(json.dumps({"rows": [1.5, 2.5]}))
    marker = "<!-- results r.json json:dumps -->\n"
    page = tmp_path / "README.md"
    page.write_text(f"intro\n{marker}old text\n<!-- /results -->\nend\n")
    assert [str(p.name) for p, _ in tables.stale(tmp_path)] == ["README.md"]
    page.write_text(tables.render(page.read_text(), tmp_path))
    assert page.read_text() == f'intro\n{marker}{{"rows": [1.5, 2.5]}}\n<!-- /results -->\nend\n'
    assert list(tables.stale(tmp_path)) == []


def test_a_block_of_several_files_renders_their_list(tmp_path):
    """Repeated runs (e.g. benchmarks) render together: the renderer gets a list."""
    (tmp_path / "docs").mkdir()
    for name, value in (("a.json", 1), ("b.json", 2)):
        (tmp_path / name).write_text(json.dumps({"ratio": value}))
    page = tmp_path / "README.md"
    page.write_text("<!-- results a.json,b.json json:dumps -->\n<!-- /results -->\n")
    page.write_text(tables.render(page.read_text(), tmp_path))
    assert '[{"ratio": 1}, {"ratio": 2}]' in page.read_text()
    assert "benchmarks/results/cpu-2core-train-4.json" in (tables.ROOT / "README.md").read_text()
