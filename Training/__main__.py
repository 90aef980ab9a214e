"""``python -m Training <command> ...``: see ``Training.cli``."""

from Training.cli import main

raise SystemExit(main())
