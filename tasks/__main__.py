"""``python -m chiral_tasks``: the ``chiral`` command."""

from chiral_tasks.cli import main

raise SystemExit(main())
