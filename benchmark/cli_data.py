"""`oodbench data check|prepare`: is each dataset of a suite present and pinned, and how to get it."""

from __future__ import annotations

from benchmark.cli import app  # noqa: F401
