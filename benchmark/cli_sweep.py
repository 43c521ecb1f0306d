"""`oodbench sweep`: every combination of methods x shots x seeds, one Parquet file per run."""

from __future__ import annotations

from benchmark.cli import app  # noqa: F401
