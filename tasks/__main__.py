"""``python -m tasks``: the ``chiral`` command."""

from tasks.cli import main

raise SystemExit(main())
