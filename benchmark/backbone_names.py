"""Backbone names without loading anything: the bundled ones, and open_clip's pretrained table read from its
source file, so that `oodbench list backbones` imports neither torch nor open_clip.

Importing `open_clip` imports torch (4.6 s and ~880 MB for `list backbones`). The table open_clip's
`list_pretrained()` reads is built in `open_clip/pretrained.py` from plain dicts; the module itself imports
torch (through safetensors) and the Hugging Face hub only to download weights. So the file is executed here
with those imports left out: its standard-library imports, its own `constants` and `version` modules and its
top-level statements run as they are, and its own `list_pretrained` is called. If a future open_clip builds
the table differently (a top-level statement that needs a dropped import), the package is imported instead:
slower, never wrong. `tests/test_cheap_commands.py` checks that the two agree for the installed open_clip and
that the fast path is the one taken.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from functools import cache
from pathlib import Path

ASSETS_DIR = Path(__file__).parent / "assets"
DEMO_BACKBONE = "oodbench-tiny-fmnist:demo"
# bundled tags: name -> weights file shipped in the package
BUNDLED_WEIGHTS = {DEMO_BACKBONE: ASSETS_DIR / "oodbench-tiny-fmnist" / "weights.safetensors"}
OWN_MODULES = ("constants", "version")  # open_clip modules pretrained.py imports that are plain data


def _open_clip_folder() -> Path | None:
    """Where the installed open_clip package lives, found without importing it."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _keep(node: ast.stmt) -> bool:
    """Top-level statements of pretrained.py that run here: everything but imports of third-party packages."""
    if isinstance(node, ast.Import):
        return all(a.name.split(".")[0] in sys.stdlib_module_names for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] in sys.stdlib_module_names
    if isinstance(node, ast.Try):  # `try: import safetensors.torch ... except ImportError: ...`
        return not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(node))
    return True


def _run_source(path: Path, namespace: dict) -> None:
    """Execute `path` in `namespace`, skipping its imports of packages outside the standard library; its
    relative imports of open_clip's plain-data modules are served by running those files too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in OWN_MODULES:
            own: dict = {"__name__": f"open_clip.{node.module}"}
            _run_source(path.with_name(f"{node.module}.py"), own)
            for alias in node.names:
                namespace[alias.asname or alias.name] = own[alias.name]
    tree.body = [n for n in tree.body if _keep(n)]
    exec(compile(tree, str(path), "exec"), namespace)  # noqa: S102 - open_clip's own installed source


@cache
def open_clip_pretrained() -> tuple[tuple[str, str], ...]:
    """open_clip's `list_pretrained()`: every (architecture, pretrained tag), in open_clip's order."""
    folder = _open_clip_folder()
    if folder is not None:
        try:
            namespace: dict = {"__name__": "open_clip.pretrained", "__file__": str(folder / "pretrained.py")}
            _run_source(folder / "pretrained.py", namespace)
            return tuple((str(a), str(t)) for a, t in namespace["list_pretrained"]())
        except Exception:  # a layout this reader does not know: ask open_clip itself (slower, same answer)
            pass
    import open_clip

    return tuple(open_clip.list_pretrained())


def list_backbones() -> list[str]:
    """Every name `load_backbone` accepts without a path: bundled ones, then open_clip's pretrained list."""
    return list(BUNDLED_WEIGHTS) + [f"{a}:{t}" for a, t in open_clip_pretrained()]
