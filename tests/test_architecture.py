"""The shape of the code: one-way layers (no import cycles, read with `ast`), registration by discovery,
and cheap modules that stay cheap."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "methods", "leaderboard")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of ours that `name` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t and t not in known:  # `import a.b.c` loads a, a.b and a.b.c: the deepest one of ours counts
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_import_graph_has_no_cycles():
    mods = modules()
    graph = {name: imports_of(name, path, set(mods)) for name, path in mods.items()}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_subcommand_imports_the_cli_app():
    mods = modules()
    for name, path in mods.items():
        if name.startswith("benchmark.cli.") and name != "benchmark.cli.__main__":
            assert "benchmark.cli" not in imports_of(name, path, set(mods)), name


def test_every_method_module_registers_something():
    import methods

    methods.load_methods()
    owners = {methods.METHODS.get(n).__module__ for n in methods.METHODS.names()}
    owners |= {methods.SCORES.get(n).fn.__module__ for n in methods.SCORES.names()}
    silent = [m for m in methods.builtin_modules() if f"methods.{m}" not in owners]
    assert not silent, f"modules of methods/ that register no method or score: {silent}"


def test_a_new_method_file_registers_itself_without_editing_a_list(tmp_path, monkeypatch):
    """Discovery: a module dropped into a package is imported by load_methods (shown on a copy of the idea)."""
    from benchmark.registry import import_submodules

    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("FOUND = []\n")
    (pkg / "alpha.py").write_text("from fakepkg import FOUND\nFOUND.append('alpha')\n")
    (pkg / "_private.py").write_text("raise RuntimeError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_submodules("fakepkg") == ["alpha"]
    (pkg / "beta.py").write_text("from fakepkg import FOUND\nFOUND.append('beta')\n")
    assert import_submodules("fakepkg") == ["alpha", "beta"]
    import fakepkg

    assert fakepkg.FOUND == ["alpha", "beta"]
    sys.modules.pop("fakepkg", None)


@pytest.mark.parametrize(
    "module",
    [
        "benchmark.datacheck",
        "benchmark.cli",
        "benchmark.results",
        "benchmark.records",
        "leaderboard.collect",
        "methods.scores",
        "methods.base",
        "methods.catalog",
        "benchmark.backbone_names",
        "benchmark.cluster",
    ],
)
def test_cheap_modules_do_not_import_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules, 'open_clip' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"], f"importing {module} imports torch or open_clip"
