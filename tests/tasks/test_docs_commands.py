"""Every ``chiral`` command the README and the docs show parses with today's options."""

import re
import shlex
from pathlib import Path

import pytest

from chiral_tasks.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shown_commands():
    """``(page, command)`` for each ``chiral ...`` line of the pages' bash blocks."""
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            text = block.replace("\\\n", " ")
            for line in text.splitlines():
                line = line.split(" #", 1)[0].strip()
                if line.startswith("chiral "):
                    yield page.name, line


COMMANDS = list(shown_commands())


def test_the_pages_show_commands_of_every_task():
    tasks = {shlex.split(command)[1] for _, command in COMMANDS}
    assert tasks == {"lifting", "forecasting", "recognition"}


@pytest.mark.parametrize("page, command", COMMANDS, ids=[c for _, c in COMMANDS])
def test_shown_command_parses(page, command):
    argv = shlex.split(command)[1:]
    args = build_parser([argv[0]]).parse_args(argv)
    assert callable(args.func), f"{page}: {command}"
