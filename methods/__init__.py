"""Methods (one module each) and OOD scores. Importing this package registers the built-in ones."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from benchmark.errors import OodbenchError
from methods.base import METHODS, Method, MethodOutput  # noqa: F401
from methods.scores import SCORES  # noqa: F401

BUILTIN = ("zero_shot", "coop", "cocoop", "locoop", "clip_adapter", "tip_adapter", "tip_adapter_f", "linear_probe")
ENTRY_POINT_GROUP = "oodbench.methods"
_loaded = False


def load_methods() -> None:
    """Register the built-in methods and any installed through the `oodbench.methods` entry point."""
    global _loaded
    if _loaded:
        return
    for name in BUILTIN:
        importlib.import_module(f"methods.{name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as err:
            raise OodbenchError(
                f"The method plugin {ep.name!r} ({ep.value}) failed to import: {type(err).__name__}: {err}."
            ) from None
    _loaded = True


def load_method_file(path: Path) -> list[str]:
    """Import a method module that lives outside the package; returns the names it registered."""
    path = Path(path)
    if not path.is_file():
        raise OodbenchError(f"Method file {path} does not exist.")
    load_methods()
    before = set(METHODS.names())
    name = f"oodbench_user_method_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except OodbenchError:
        raise
    except Exception as err:
        raise OodbenchError(f"Method file {path} failed to import: {type(err).__name__}: {err}.") from None
    added = sorted(set(METHODS.names()) - before)
    if not added:
        raise OodbenchError(
            f"Method file {path} registered no method; decorate your class with "
            f'`@METHODS.register("name")` (see docs/adding-a-method.md).'
        )
    return added
