"""The run config, in two parts, with every default stated once.

`RunKey` is what identifies a run: the same key on the same data and code gives the same numbers.
`Execution` is how to execute it: device, precision, batch size, workers, caches and data root.
`oodbench run`, `sweep`, `reproduce`, the demo and the benchmark scripts all build these two
dataclasses; their field defaults are the only defaults (the CLI reads them from here).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import OodbenchError

DEFAULT_TOLERANCE = 0.005  # `oodbench reproduce`: absolute, on metrics stored in [0, 1]: half a percentage point
DEFAULT_RECORD_DIR = Path("results") / "verifications"  # where `oodbench reproduce` writes its records
SEED_MAX = 2**32 - 1  # numpy's SeedSequence and torch.manual_seed both take it; larger seeds are refused
PRECISIONS = ("fp32", "bf16", "fp16")
CACHE_ENV = "OODBENCH_CACHE"


def default_cache_dir() -> Path:
    """The cache folder when none is given: $OODBENCH_CACHE, else $XDG_CACHE_HOME/oodbench (~/.cache/oodbench)."""
    if CACHE_ENV in os.environ:
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "oodbench"


@dataclass(frozen=True)
class RunKey:
    """What identifies a run. `config` holds the method's hyperparameter overrides (the effective config
    is the method's defaults, its per-family defaults, then these); `scores` are score specs as text
    (`energy:T=0.01`), empty for every score that applies to the method."""

    suite: str
    backbone: str
    method: str
    config: Mapping[str, Any] = field(default_factory=dict)
    scores: tuple[str, ...] = ()
    shots: int = 0
    seed: int = 1

    def __post_init__(self) -> None:
        check_seed(self.seed)
        if isinstance(self.shots, bool) or not isinstance(self.shots, int) or self.shots < 0:
            raise OodbenchError(
                f"shots must be a whole number >= 0 (got {self.shots!r}); use 1, 2, 4, 8 or 16 for "
                f"few-shot methods and 0 for the others."
            )
        object.__setattr__(self, "scores", tuple(self.scores))
        object.__setattr__(self, "config", dict(self.config))

    @classmethod
    def from_rows(cls, row: Mapping[str, Any]) -> RunKey:
        """The key of the run a result row describes (what `oodbench reproduce` re-runs)."""
        return cls(
            suite=str(row["suite"]),
            backbone=str(row["backbone"]),
            method=str(row["method"]),
            config=json.loads(row["method_config"]),
            shots=int(row["shots"]),
            seed=int(row["seed"]),
        )


@dataclass(frozen=True)
class Execution:
    """How a run executes. Precision changes the features, so it is recorded in every row (and
    `reproduce` uses the row's); the rest never changes a number."""

    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 256
    num_workers: int = 0
    cache_dir: Path | None = None
    data_root: Path | None = None
    reuse_outputs: bool = True  # False: refit even when this run's outputs are cached (reproduce)
    save_scores: bool = True  # write the per-sample scores sidecar (needed for intervals and curves)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise OodbenchError(f"Unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}.")
        if self.batch_size < 1:
            raise OodbenchError(f"--batch-size must be at least 1 (got {self.batch_size}).")
        if self.num_workers < 0:
            raise OodbenchError(f"--num-workers must be 0 or more (got {self.num_workers}).")


DEFAULT_EXECUTION = Execution()


def check_seed(seed: object) -> int:
    """A seed is a whole number in [0, 2**32 - 1]; anything else is one clear error, never a traceback."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise OodbenchError(f"--seed must be a whole number from 0 to {SEED_MAX} (got {seed!r}).")
    return seed
