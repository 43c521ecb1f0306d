"""Is a file really part of the results folder? Links may not bring in files from elsewhere.

A symlink under `--results` could publish a file that was never submitted (another user's folder, a
forged copy kept outside the repository). The builder reads only files whose real path, every link
followed, lies inside the real results folder; links that stay inside (a `latest.parquet` pointing at
a file beside it) are fine.
"""

from __future__ import annotations

from pathlib import Path


def outside_reason(path: Path, root: Path, *, real_root: Path | None = None) -> str | None:
    """Why `path` may not be read as part of `root`, or None when its real path lies inside `root`'s
    (`real_root`: root's real path, when the caller has it already)."""
    real_root = Path(root).resolve() if real_root is None else real_root
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop: RuntimeError before Python 3.13, OSError after
        return f"it is a symlink loop; replace {path.name} with the file itself"
    if real == real_root or real_root in real.parents:
        return None
    return (
        f"it is a link to {real}, outside the results folder {real_root}; only files inside the results "
        f"folder are published, so copy the file in if it belongs on the leaderboard"
    )
