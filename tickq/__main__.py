"""`python -m tickq`: see `tickq.cli`."""

from __future__ import annotations

from tickq.cli import main

raise SystemExit(main())
