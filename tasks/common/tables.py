"""Result tables in the README and the docs, rendered from committed results JSON.

A table lives between two marker lines of a Markdown page::

    <!-- results docs/results/lifting.json chiral_tasks.lifting.experiments:markdown_comparison -->
    ... the rendered text ...
    <!-- /results -->

The opening marker names the results file (relative to the repository root; several
files separated by commas give the renderer a list of results, e.g. repeated benchmark
runs) and the function ``module:name`` that renders it (``results -> Markdown text``). Running
``python -m chiral_tasks.common.tables`` rewrites every block of README.md and docs/*.md
from its JSON; ``--check`` only reports the blocks that differ (the tests run it), so
a number in a table is always the one in the JSON.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from chiral_tasks.common.results import read_results

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(
    r"(<!-- results (?P<json>\S+) (?P<renderer>[\w.]+:\w+) -->\n)(?P<body>.*?)(<!-- /results -->)",
    re.S,
)


def pages(root: Path = ROOT) -> list[Path]:
    """The pages that may hold tables: README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _renderer(name: str) -> Callable[[dict], str]:
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


def render(text: str, root: Path = ROOT) -> str:
    """``text`` with every results block rendered anew from its JSON."""

    def block(match: re.Match) -> str:
        files = match["json"].split(",")
        results = [read_results(root / f) for f in files]
        results = results[0] if len(files) == 1 else results
        body = _renderer(match["renderer"])(results).rstrip("\n") + "\n"
        return match[1] + body + match[5]

    return BLOCK.sub(block, text)


def stale(root: Path = ROOT) -> Iterator[tuple[Path, str]]:
    """``(page, results file)`` of each block whose text differs from its rendering."""
    for page in pages(root):
        text = page.read_text()
        for match in BLOCK.finditer(text):
            if render(match[0], root) != match[0]:
                yield page, match["json"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale tables")
    args = parser.parse_args(argv)
    if args.check:
        found = list(stale())
        for page, json_file in found:
            print(f"{page.relative_to(ROOT)}: the table of {json_file} is stale")
        return 1 if found else 0
    for page in pages():
        text = page.read_text()
        new = render(text)
        if new != text:
            page.write_text(new)
            print(f"rewrote the tables of {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
