"""The arrows point one way: the pure core imports no Dagster and no adapter (it reaches Stripe and
the CMS only through the Protocols the adapters implement), and no two modules import each other,
not even through an import inside a function."""

from __future__ import annotations

import ast
import pathlib
import pkgutil
import subprocess
import sys

import cms_stripe
import cms_stripe.core

FORBIDDEN = ("dagster", "cms_stripe.stripe", "cms_stripe.cms", "cms_stripe.resources", "cms_stripe.assets")
PACKAGE = pathlib.Path(cms_stripe.__file__).parent


def test_core_imports_neither_dagster_nor_an_adapter() -> None:
    modules = [m.name for m in pkgutil.iter_modules(cms_stripe.core.__path__, "cms_stripe.core.")]
    assert "cms_stripe.core.executor" in modules  # the walk found the package's modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print('\\n'.join(sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True, text=True)
    assert out.stdout.split() == []


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in its body (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found & modules


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), list(graph[start])
    while todo:
        name = todo.pop()
        if name == goal:
            return True
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return False


def test_no_import_cycle() -> None:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) - {name} for name, path in paths.items()}
    assert "cms_stripe.stripe.limits" in graph["cms_stripe.stripe.gateway"]  # the walk sees imports
    cycles = sorted(name for name in graph if _reaches(graph, name, name))
    assert cycles == []
