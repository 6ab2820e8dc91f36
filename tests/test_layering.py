"""The package's layers, read from the source (AST) of every module in ``alignlab/``:

- ``alignlab.core.*`` imports only ``alignlab.core.*`` and ``alignlab.errors`` (and third-party libraries);
- the world never imports a method, the evaluation CLI or an experiment;
- no method package imports ``alignlab.experiments`` (experiments compose methods, never the reverse);
- there is no import cycle among alignlab modules.

Imports inside functions count like module-level ones: a lazy import only moves the cycle to run time
(whichever module is imported first sees the other half-initialised), and a lazy upward import is still
an arrow the wrong way. Imports under ``if TYPE_CHECKING:`` count too: they are arrows a reader follows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "alignlab"
METHOD_PACKAGES = ("outer", "oversight", "inner", "interpret", "attacks", "evaluate", "world", "core", "report")
WORLD_MUST_NOT_IMPORT = ("alignlab.outer", "alignlab.oversight", "alignlab.inner", "alignlab.interpret",
                         "alignlab.attacks", "alignlab.evaluate.cli", "alignlab.experiments")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path) -> set[str]:
    """The alignlab modules ``name`` imports anywhere in its source (``from a.b import c`` → ``a.b.c`` when
    that is a module, else ``a.b``; relative imports resolved against the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m == "alignlab" or m.startswith("alignlab.")}


IMPORTS = {name: imported_modules(name, path) for name, path in MODULES.items()}


def under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_scan_sees_the_package():
    # a scan that found nothing would pass every rule below
    assert len(MODULES) > 40 and "alignlab.core.trainer" in MODULES
    assert "alignlab.core.logprobs" in IMPORTS["alignlab.core.objectives"]


@pytest.mark.parametrize("name", [m for m in MODULES if under(m, "alignlab.core")])
def test_core_imports_only_core_and_errors(name):
    upward = sorted(m for m in IMPORTS[name] if not (under(m, "alignlab.core") or m == "alignlab.errors"))
    assert not upward, f"{name} (in core) imports {upward}: core depends on nothing above it"


@pytest.mark.parametrize("name", [m for m in MODULES if under(m, "alignlab.world")])
def test_the_world_never_imports_a_method(name):
    wrong = sorted(m for m in IMPORTS[name] if any(under(m, p) for p in WORLD_MUST_NOT_IMPORT))
    assert not wrong, f"{name} (the world) imports {wrong}"


@pytest.mark.parametrize("name", [m for m in MODULES if any(under(m, f"alignlab.{p}") for p in METHOD_PACKAGES)])
def test_no_method_imports_an_experiment(name):
    wrong = sorted(m for m in IMPORTS[name] if under(m, "alignlab.experiments"))
    assert not wrong, f"{name} imports {wrong}: experiments compose methods, never the reverse"


def import_cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in imports.get(v, ()):
            if w not in imports:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(imports):
        if v not in index:
            visit(v)
    return cycles


def test_cycle_finder_finds_a_cycle_through_a_lazy_import():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert import_cycles(IMPORTS) == [], "import cycles among alignlab modules (lazy imports included)"
