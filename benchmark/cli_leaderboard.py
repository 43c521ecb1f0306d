"""`oodbench leaderboard build`, `oodbench validate`, `oodbench reproduce`."""

from __future__ import annotations

from benchmark.cli import app  # noqa: F401
