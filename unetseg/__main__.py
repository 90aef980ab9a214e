"""``python -m unetseg``: the headless command line (see ``unetseg.cli``)."""

from unetseg.cli import main

raise SystemExit(main())
