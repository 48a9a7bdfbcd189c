"""``python -m pluralign``: the same as the ``pluralign`` command."""

from pluralign.jobs.cli import main

raise SystemExit(main())
