"""``python -m server`` is the same as the ``self-building-mcp`` command."""

from server.cli import main

raise SystemExit(main())
