"""``python -m trackers demo`` and the other ``looptrack`` commands."""

from trackers.cli import main

raise SystemExit(main())
