"""Methods (one module each) and OOD scores, registered by declaration.

`load_methods()` discovers every module of this package (except `base`, the interface, and `catalog`, which
lists the declarations without importing them; shared building blocks live in the `methods.shared`
sub-package, which registers nothing) and imports it, so
a new method file registers itself without any list to edit; then it loads methods installed by
other packages through the `oodbench.methods` entry point. `load_method_file` imports one file that
lives outside oodbench (`--method-file`).
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from benchmark.errors import OodbenchError, user_code_error
from benchmark.registry import import_submodules
from methods.base import METHODS, Method, MethodOutput  # noqa: F401
from methods.scores import SCORES  # noqa: F401

ENTRY_POINT_GROUP = "oodbench.methods"
INTERFACE_MODULES = ("base", "catalog")  # the interface and the torch-free listing of it register nothing
_state = {"builtin": False, "plugins": False}


def builtin_modules() -> list[str]:
    """Names of the modules of this package that declare methods or scores (every one but the interface)."""
    import pkgutil

    return sorted(
        m.name
        for m in pkgutil.iter_modules(__path__)
        if not m.ispkg and not m.name.startswith("_") and m.name not in INTERFACE_MODULES
    )


def load_methods(*, plugins: bool = True) -> None:
    """Register the built-in methods and scores and, with `plugins`, those installed through the
    `oodbench.methods` entry point. A plugin that fails to import is one paragraph naming it."""
    if not _state["builtin"]:
        import_submodules(__name__, skip=INTERFACE_MODULES)
        _state["builtin"] = True
    if plugins:
        load_plugins()


def load_plugins() -> None:
    """Import the methods installed through the `oodbench.methods` entry point (once per process)."""
    if not _state["plugins"]:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            except OodbenchError:
                raise
            except Exception as err:
                raise user_code_error(f"The method plugin {ep.name!r} ({ep.value})", err) from err
        _state["plugins"] = True


def reload_plugins() -> None:
    """Load the entry-point plugins again on the next `load_methods()` (after installing one)."""
    _state["plugins"] = False


def load_method_file(path: Path) -> list[str]:
    """Import a method module that lives outside the package; returns the names it registered."""
    path = Path(path)
    if not path.is_file():
        raise OodbenchError(f"Method file {path} does not exist.")
    load_methods()
    before = set(METHODS.names())
    name = f"oodbench_user_method_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise OodbenchError(f"Method file {path} is not a Python file that can be imported (use a .py file).")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except OodbenchError:
        raise
    except Exception as err:
        sys.modules.pop(name, None)
        raise user_code_error(f"Importing the method file {path}", err) from err
    added = sorted(set(METHODS.names()) - before)
    if not added:
        raise OodbenchError(
            f"Method file {path} registered no method; decorate your class with "
            f'`@METHODS.register("name")` (see docs/adding-a-method.md).'
        )
    return added
