"""What `oodbench list methods` and `list scores` show, read from the method modules without importing torch.

Registration stays where it is: a method is a class decorated with `@METHODS.register("name")` in its own
module, a score a function decorated with `@register_score(...)`. Those modules import torch at the top, so
importing them to list their declarations costs seconds and ~650 MB. This module reads the same
declarations from the source with `ast` instead: the decorator's name, and the class attributes a listing
shows (`Config` and its field defaults, `protocol`, `uses`, `needs`, `provides`, `paper`,
`family_defaults`), following base classes across method modules. Values are evaluated only when they are
literals, containers of literals, names bound to such values, or calls of `param`, `field`, `frozenset`,
`tuple`, `dict`, ... ; names imported from cheap modules (the standard library, `methods.base`,
`methods.scores`, `benchmark.protocols`, ...) are imported for real.

A module whose declarations need anything else (a value computed by a function, a registration that is
not a decorator) is imported instead, so the listing is never wrong, only slower; `tests/test_catalog.py`
checks that no built-in module needs that and that the catalog equals the runtime registries for every
registered method and score. Plugins (`oodbench.methods` entry points) are always imported.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import importlib
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from methods.base import METHODS, Method, canonical_config
from methods.scores import SCORES, Score, register_score

PACKAGE = "methods"
# modules of ours that import no torch: names imported from them are imported for real
CHEAP_MODULES = frozenset(
    {
        "methods.base",
        "methods.scores",
        "benchmark.protocols",
        "benchmark.errors",
        "benchmark.registry",
        "benchmark.config",
        "benchmark.hashing",
    }
)
SAFE_CALLS = (frozenset, set, tuple, dict, list, float, int, str, bool, sorted, dataclasses.field)
SAFE_FACTORIES = (tuple, list, dict, frozenset, set)
METHOD_ATTRS = ("protocol", "uses", "needs", "provides", "paper", "family_defaults")
REGISTERING = {("METHODS", "register"), ("METHODS", "add"), ("SCORES", "add"), ("SCORES", "register")}


@dataclass(frozen=True)
class MethodInfo:
    """A registered method as the listing shows it."""

    name: str
    module: str
    protocol: str
    uses: frozenset[str]
    needs: frozenset[str]
    provides: frozenset[str]
    paper: str
    defaults: str  # canonical JSON of the Config defaults (methods.base.canonical_config)
    family_defaults: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ScoreInfo:
    """A registered score as the listing shows it."""

    name: str
    module: str
    defaults: dict[str, Any]
    requires: frozenset[str]  # "local" included when the score has a patch-token reduction
    description: str


@dataclass
class Catalog:
    methods: dict[str, MethodInfo] = field(default_factory=dict)
    scores: dict[str, ScoreInfo] = field(default_factory=dict)
    imported: dict[str, str] = field(default_factory=dict)  # module -> why it was imported rather than read


class StaticReadError(Exception):
    """A declaration this reader cannot evaluate without running the module."""


# ---------------------------------------------------------------- from the runtime registries


def method_info(name: str, cls: type[Method]) -> MethodInfo:
    return MethodInfo(
        name=name,
        module=cls.__module__,
        protocol=cls.protocol,
        uses=frozenset(cls.uses),
        needs=frozenset(cls.needs),
        provides=frozenset(cls.provides),
        paper=cls.paper,
        defaults=canonical_config(cls.Config()),
        family_defaults={k: dict(v) for k, v in cls.family_defaults.items()},
    )


def score_info(score: Score) -> ScoreInfo:
    return ScoreInfo(
        name=score.name,
        module=score.fn.__module__,
        defaults=dict(score.defaults),
        requires=frozenset(score.requires),
        description=score.description,
    )


def _registered_in(catalog: Catalog, modules: set[str]) -> None:
    """Add what the runtime registries hold from `modules` (already imported) to `catalog`."""
    for name, cls in METHODS.items():
        if cls.__module__ in modules and name not in catalog.methods:
            catalog.methods[name] = method_info(name, cls)
    for name, score in SCORES.items():
        if score.fn.__module__ in modules and name not in catalog.scores:
            catalog.scores[name] = score_info(score)


# ---------------------------------------------------------------- the static reader


@dataclass(frozen=True)
class _Unavailable:
    """A name bound to something this reader does not evaluate (an import of torch, a function, ...)."""

    what: str


class _Class:
    """A class statement of a method module, read without running it."""

    def __init__(self, module: _Module, node: ast.ClassDef) -> None:
        self.module, self.node = module, node

    @property
    def qualname(self) -> str:
        return f"{self.module.name}.{self.node.name}"

    def bases(self) -> list[Any]:
        return [self.module.eval(b) for b in self.node.bases]

    def own(self, attr: str) -> ast.expr | None:
        """The last assignment of `attr` in the class body, if any."""
        found = None
        for stmt in self.node.body:
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == attr for t in stmt.targets):
                found = stmt.value
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == attr:
                found = stmt.value if stmt.value is not None else found
        return found

    def attr(self, attr: str) -> Any:
        node = self.own(attr)
        if node is not None:
            return self.module.eval(node)
        for base in self.bases():
            if isinstance(base, _Class):
                try:
                    return base.attr(attr)
                except AttributeError:
                    continue
            elif isinstance(base, type) and hasattr(base, attr):
                return getattr(base, attr)
        raise AttributeError(f"{self.qualname} has no attribute {attr!r}")

    def dataclass_defaults(self) -> dict[str, Any]:
        """Field name -> default of a dataclass, base fields first (an override keeps its base's place)."""
        out: dict[str, Any] = {}
        for base in self.bases():
            if isinstance(base, _Class):
                out.update(base.dataclass_defaults())
            elif isinstance(base, type) and dataclasses.is_dataclass(base):
                out.update({f.name: _field_default(f, self.qualname) for f in dataclasses.fields(base)})
        for stmt in self.node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            if any(word in ast.unparse(stmt.annotation) for word in ("ClassVar", "InitVar")):
                continue
            if stmt.value is None:
                raise StaticReadError(f"{self.qualname}.{stmt.target.id} has no default")
            value = self.module.eval(stmt.value)
            out[stmt.target.id] = (
                _field_default(value, self.qualname) if isinstance(value, dataclasses.Field) else value
            )
        return out


def _field_default(f: dataclasses.Field, where: str) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory in SAFE_FACTORIES:
        return f.default_factory()
    raise StaticReadError(f"a field of {where} has a default this reader does not evaluate")


class _Module:
    """One module's top-level bindings, evaluated lazily."""

    def __init__(self, reader: _Reader, name: str, path: Path) -> None:
        self.reader, self.name, self.path = reader, name, path
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        self.bindings: dict[str, ast.AST] = {}
        self.values: dict[str, Any] = {}
        self._busy: set[str] = set()
        for stmt in self.tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                for alias in stmt.names:
                    bound = alias.asname or (alias.name.split(".")[0] if isinstance(stmt, ast.Import) else alias.name)
                    self.bindings[bound] = stmt
            elif isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                self.bindings[stmt.name] = stmt
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                self.bindings[stmt.targets[0].id] = stmt.value
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                self.bindings[stmt.target.id] = stmt.value
            else:  # if/try/for blocks, tuple targets, ...: the names they bind are not evaluated
                for node in ast.walk(stmt):
                    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                        self.bindings[node.id] = ast.Constant(_Unavailable(f"{name}.{node.id}"))
                    elif isinstance(node, (ast.alias)):
                        self.bindings[node.asname or node.name.split(".")[0]] = ast.Constant(
                            _Unavailable(f"{name}: import {node.name}")
                        )

    def lookup(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        if name not in self.bindings:
            if hasattr(builtins, name):
                return getattr(builtins, name)
            raise StaticReadError(f"{self.name} uses {name!r}, which it does not bind at top level")
        if name in self._busy:
            raise StaticReadError(f"{self.name}.{name} refers to itself")
        self._busy.add(name)
        try:
            node = self.bindings[name]
            if isinstance(node, ast.ClassDef):
                value: Any = _Class(self, node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                value = _Unavailable(f"function {self.name}.{name}")
            elif isinstance(node, ast.Import):
                alias = next(a for a in node.names if (a.asname or a.name.split(".")[0]) == name)
                value = self.reader.import_module(alias.name if alias.asname else alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                alias = next(a for a in node.names if (a.asname or a.name) == name)
                value = self.reader.import_from(self._absolute(node), alias.name)
            else:
                value = self.eval(node)
        finally:
            self._busy.discard(name)
        self.values[name] = value
        return value

    def _absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self.name.split(".")[: -node.level]
        return ".".join(package + ([node.module] if node.module else []))

    def eval(self, node: ast.AST) -> Any:
        value = self._eval(node)
        if isinstance(value, _Unavailable):
            raise StaticReadError(f"{self.name} line {getattr(node, 'lineno', '?')} needs {value.what}")
        return value

    def _eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.lookup(node.id)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = [self.eval(e) for e in node.elts]
            return {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)](items)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise StaticReadError(f"{self.name} line {node.lineno}: ** in a dict literal")
            return {self.eval(k): self.eval(v) for k, v in zip(node.keys, node.values, strict=True)}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            operand = self.eval(node.operand)
            return {ast.USub: lambda v: -v, ast.UAdd: lambda v: +v, ast.Not: lambda v: not v}[type(node.op)](operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](self.eval(node.left), self.eval(node.right))
        if isinstance(node, ast.Attribute):
            base = self._eval(node.value)
            if isinstance(base, _Unavailable):
                return base
            try:
                return base.attr(node.attr) if isinstance(base, _Class) else getattr(base, node.attr)
            except AttributeError as err:
                raise StaticReadError(str(err)) from None
        if isinstance(node, ast.Call):
            fn = self.eval(node.func)
            if not (any(fn is safe for safe in SAFE_CALLS) or fn is _param() or _is_dict_view(fn)):
                raise StaticReadError(f"{self.name} line {node.lineno} calls {ast.unparse(node.func)}")
            args = [self.eval(a) for a in node.args if not isinstance(a, ast.Starred)]
            if len(args) != len(node.args) or any(k.arg is None for k in node.keywords):
                raise StaticReadError(f"{self.name} line {node.lineno}: * or ** arguments")
            return fn(*args, **{k.arg: self.eval(k.value) for k in node.keywords})
        raise StaticReadError(f"{self.name} line {getattr(node, 'lineno', '?')}: {ast.unparse(node)}")


def _is_dict_view(fn: Any) -> bool:
    """A dict's keys, values or items method (bound to a dict the reader evaluated): reads, never changes."""
    return isinstance(getattr(fn, "__self__", None), dict) and getattr(fn, "__name__", "") in {
        "keys",
        "values",
        "items",
    }


_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.BitOr: lambda a, b: a | b,
    ast.Pow: lambda a, b: a**b if abs(b) <= 64 else _too_big(),
}


def _too_big() -> Any:
    raise StaticReadError("an exponent above 64 in a declaration")


def _param() -> Any:
    from methods.base import param

    return param


class _Reader:
    """Reads the modules of one package folder (method modules and their shared building blocks in
    sub-packages); modules of that package are read, not imported, unless they are cheap."""

    def __init__(self, package: str, folder: Path, modules: list[str]) -> None:
        self.package, self.folder = package, Path(folder)
        self._modules: dict[str, _Module] = {}

    def source(self, module: str) -> Path | None:
        """The file of `module` when it belongs to this package (`methods.coop`, `methods.shared.prompts`)."""
        if not module.startswith(f"{self.package}.") or module in CHEAP_MODULES:
            return None
        base = self.folder.joinpath(*module.split(".")[1:])
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path
        return None

    def module(self, short: str) -> _Module:
        return self._read_module(f"{self.package}.{short}")

    def _read_module(self, name: str) -> _Module:
        if name not in self._modules:
            path = self.source(name)
            if path is None:
                raise StaticReadError(f"{name} is not a module of {self.package}")
            self._modules[name] = _Module(self, name, path)
        return self._modules[name]

    def import_module(self, name: str) -> Any:
        if name.split(".")[0] in sys.stdlib_module_names or name in CHEAP_MODULES:
            return importlib.import_module(name)
        return _Unavailable(f"import {name}")

    def import_from(self, module: str, name: str) -> Any:
        if self.source(module) is not None:
            if self.source(f"{module}.{name}") is not None:  # `from methods.shared import prompts`
                return _Unavailable(f"module {module}.{name}")
            return self._read_module(module).lookup(name)
        real = self.import_module(module)
        return real if isinstance(real, _Unavailable) else getattr(real, name)

    def read(self, short: str) -> tuple[list[MethodInfo], list[ScoreInfo]]:
        """The methods and scores `short` registers; StaticReadError when it cannot be read without running it."""
        mod = self.module(short)
        methods, scores = [], []
        decorated: set[int] = set()
        for stmt in mod.tree.body:
            for deco in getattr(stmt, "decorator_list", []):
                if not (isinstance(deco, ast.Call) and deco.args and isinstance(deco.args[0], ast.Constant)):
                    continue
                target = mod._eval(deco.func)
                name = deco.args[0].value
                if isinstance(stmt, ast.ClassDef) and _is_bound(target, METHODS.register):
                    methods.append(self._method(name, _Class(mod, stmt)))
                    decorated.add(id(deco))
                elif isinstance(stmt, ast.FunctionDef) and target is register_score:
                    scores.append(self._score(name, mod, stmt, deco))
                    decorated.add(id(deco))
        for node in ast.walk(mod.tree):  # any other way of registering: read by importing instead
            if isinstance(node, ast.Call) and id(node) not in decorated and _registers(node):
                raise StaticReadError(f"{mod.name} line {node.lineno} registers without a plain decorator")
        return methods, scores

    def _method(self, name: str, cls: _Class) -> MethodInfo:
        try:
            values = {a: cls.attr(a) for a in (*METHOD_ATTRS, "Config")}
        except AttributeError as err:
            raise StaticReadError(str(err)) from None
        config = values["Config"]
        if isinstance(config, _Class):
            defaults = config.dataclass_defaults()
        elif isinstance(config, type) and dataclasses.is_dataclass(config):
            defaults = {f.name: _field_default(f, config.__qualname__) for f in dataclasses.fields(config)}
        else:
            raise StaticReadError(f"{cls.qualname}.Config is not a dataclass this reader can follow")
        try:
            made = dataclasses.make_dataclass("Config", [(k, object, field(default=v)) for k, v in defaults.items()])
        except (TypeError, ValueError) as err:  # a mutable default: the runtime refuses it too
            raise StaticReadError(f"{cls.qualname}.Config: {err}") from None
        return MethodInfo(
            name=name,
            module=cls.module.name,
            protocol=values["protocol"],
            uses=frozenset(values["uses"]),
            needs=frozenset(values["needs"]),
            provides=frozenset(values["provides"]),
            paper=values["paper"],
            defaults=canonical_config(made()),
            family_defaults={k: dict(v) for k, v in dict(values["family_defaults"]).items()},
        )

    def _score(self, name: str, mod: _Module, fn: ast.FunctionDef, deco: ast.Call) -> ScoreInfo:
        kw = {k.arg: k.value for k in deco.keywords}
        if len(deco.args) != 1 or set(kw) - {"params", "requires", "local"}:
            raise StaticReadError(f"{mod.name} line {deco.lineno}: register_score arguments")
        local = "local" in kw and not (isinstance(kw["local"], ast.Constant) and kw["local"].value is None)
        requires = frozenset(mod.eval(kw["requires"])) if "requires" in kw else frozenset()
        doc = ast.get_docstring(fn, clean=False)
        return ScoreInfo(
            name=name,
            module=mod.name,
            defaults=dict(mod.eval(kw["params"]) or {}) if "params" in kw else {},
            requires=requires | ({"local"} if local else set()),
            description=(doc or "").strip().splitlines()[0] if doc else "",
        )


def _is_bound(target: Any, method: Any) -> bool:
    return getattr(target, "__self__", None) is getattr(method, "__self__", ()) and getattr(
        target, "__func__", None
    ) is getattr(method, "__func__", ())


def _registers(node: ast.Call) -> bool:
    f = node.func
    if isinstance(f, ast.Call):  # METHODS.register("x")(cls) or register_score(...)(fn)
        return _registers(f)
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
        return (f.value.id, f.attr) in REGISTERING
    return isinstance(f, ast.Name) and f.id == "register_score"


# ---------------------------------------------------------------- the catalog


def read_modules(package: str, folder: Path, modules: list[str]) -> Catalog:
    """The methods and scores of `modules` (short names in `package`, found in `folder`): read statically where
    possible, else imported (`Catalog.imported` says which and why)."""
    reader = _Reader(package, folder, modules)
    catalog = Catalog()
    # the registries' order: `methods/__init__.py` imports the cheap modules (scores) first, then the rest by name
    for short in sorted(modules, key=lambda m: f"{package}.{m}" not in CHEAP_MODULES):
        full = f"{package}.{short}"
        if full in CHEAP_MODULES:  # cheap to import: the registry itself is the answer
            importlib.import_module(full)
            _registered_in(catalog, {full})
            continue
        try:
            methods, scores = reader.read(short)
        except Exception as err:  # StaticReadError, or anything else this reader trips on: importing is never wrong
            catalog.imported[full] = f"{type(err).__name__}: {err}"
            importlib.import_module(full)
            _registered_in(catalog, {full})
            continue
        catalog.methods.update({m.name: m for m in methods})
        catalog.scores.update({s.name: s for s in scores})
    return catalog


@cache
def builtin_catalog() -> Catalog:
    """Every built-in method and score (the modules `methods.load_methods` imports)."""
    import methods

    return read_modules(PACKAGE, Path(methods.__file__).parent, methods.builtin_modules())


def catalog(*, plugins: bool = True) -> Catalog:
    """The built-in methods and scores, and with `plugins` those of installed `oodbench.methods` plugins (imported)
    and of anything else registered in this process (a --method-file)."""
    base = builtin_catalog()
    out = Catalog(methods=dict(base.methods), scores=dict(base.scores), imported=dict(base.imported))
    if plugins:
        import methods

        methods.load_plugins()
        registered = {cls.__module__ for _, cls in METHODS.items()} | {s.fn.__module__ for _, s in SCORES.items()}
        _registered_in(out, registered - {f"{PACKAGE}.{m}" for m in methods.builtin_modules()})
    return out
