"""``python -m trackers demo`` and the other ``looptrack`` commands."""

from trackers.tools.cli import main

raise SystemExit(main())
