"""The import graph of ``app/channelapp`` holds the layering of docs/architecture.md.

Every import of every module is read from its syntax tree (at module level, under
``TYPE_CHECKING`` and inside functions alike) and three rules are checked:

- no cycle among channelapp's modules;
- a module imports only from its own group or from the groups its group may use
  (``MAY_IMPORT``): the core never imports a wing (``compat``, ``django``, ``channels``) nor the
  processes and entry points above it;
- an import inside a function is named in ``FUNCTION_LOCAL`` with the reason it is not at
  the top of its module (an optional dependency, a command's own process): a function-local
  import is never the way around a cycle.

The operator (``operator/channelapp_operator``) is checked for cycles and for what of
channelapp it imports (``OPERATOR_MAY_IMPORT``); its function-local imports are not.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "app" / "channelapp"
OPERATOR_DIR = ROOT / "operator" / "channelapp_operator"

# Each module belongs to the group of its longest matching prefix.
GROUPS: dict[str, list[str]] = {
    "base": [
        "channelapp",
        "channelapp.errors",
        "channelapp.settings",
        "channelapp.spec",
        "channelapp.security",
        "channelapp.metrics",
    ],
    "layer": ["channelapp.layer"],
    "scaling": ["channelapp.autoscale"],
    "state": [
        "channelapp.sessions",
        "channelapp.sync",
        "channelapp.health",
        "channelapp.protocol_settings",
    ],
    "consumers": ["channelapp.consumers"],
    "app": ["channelapp.routing", "channelapp.application", "channelapp.startup"],
    "server": ["channelapp.server"],
    "worker": ["channelapp.worker"],
    "django": ["channelapp.django"],
    "compat": ["channelapp.compat"],
    "channels": [
        "channelapp.channels",
        "channelapp.channels_project",
        "channelapp.channels_worker",
    ],
    "entry": [
        "channelapp.loading",
        "channelapp.dev",
        "channelapp.cli",
        "channelapp.event_loop",
        "channelapp.__main__",
        "channelapp.autoscale.local",
    ],
    "examples": ["channelapp.examples"],
}

WINGS = {"compat", "django", "channels"}
# The core: every group but the wings and what sits above them.
CORE = set(GROUPS) - WINGS - {"entry", "examples"}

# The groups each group may import besides itself.
MAY_IMPORT: dict[str, set[str]] = {
    "base": set(),
    "layer": {"base"},
    "scaling": {"base", "layer"},
    "state": {"base", "layer"},
    "consumers": {"base", "layer", "state"},
    "app": {"base", "layer", "state", "consumers"},
    "server": {"base", "layer", "state", "consumers", "app"},
    "worker": {"base", "layer", "state", "consumers", "app"},
    "django": {"base", "layer", "state", "consumers", "app"},
    "compat": {"base", "layer", "state", "consumers", "app", "django"},
    "channels": {"base", "layer", "state"},
    "entry": set(GROUPS) - {"entry", "examples"},
    "examples": {"base", "layer", "state", "consumers", "app", "django", "compat"},
}

# The groups of channelapp the operator may import: never a process, the app or a wing.
OPERATOR_MAY_IMPORT = {"base", "layer", "scaling", "state"}

# (importing module, imported module) of every import inside a function, and why.
OPTIONAL_DJANGO = "Django is an optional dependency, imported only when a Django project is used"
COMMAND_PROCESS = "each command imports the modules of the process it runs, and no other's"
FUNCTION_LOCAL: dict[tuple[str, str], str] = {
    ("channelapp.compat.auth", "django.contrib"): OPTIONAL_DJANGO,
    ("channelapp.compat.auth", "django.contrib.auth.models"): OPTIONAL_DJANGO,
    ("channelapp.compat.sessions", "django.conf"): OPTIONAL_DJANGO,
    ("channelapp.django.auth", "django.conf"): OPTIONAL_DJANGO,
    ("channelapp.django.auth", "django.http.cookie"): OPTIONAL_DJANGO,
    ("channelapp.django.auth", "django.contrib.auth"): OPTIONAL_DJANGO,
    ("channelapp.django.auth", "django.contrib.auth.models"): OPTIONAL_DJANGO,
    ("channelapp.django.loader", "django"): OPTIONAL_DJANGO,
    ("channelapp.django.loader", "django.conf"): OPTIONAL_DJANGO,
    ("channelapp.django.loader", "django.core.asgi"): OPTIONAL_DJANGO,
    ("channelapp.sync", "django.apps"): OPTIONAL_DJANGO,
    ("channelapp.sync", "django.conf"): OPTIONAL_DJANGO,
    ("channelapp.sync", "django.db"): OPTIONAL_DJANGO,
    ("channelapp.event_loop", "uvloop"): (
        "uvloop is an optional dependency (the uvloop extra), imported only when chosen"
    ),
    ("channelapp.cli", "channelapp.server.protocol"): COMMAND_PROCESS,
    ("channelapp.cli", "channelapp.worker.main"): COMMAND_PROCESS,
    ("channelapp.cli", "channelapp.dev"): COMMAND_PROCESS,
    ("channelapp.cli", "channelapp.autoscale.local"): COMMAND_PROCESS,
    ("channelapp.cli", "channelapp.server.asgi_host"): COMMAND_PROCESS,
    ("channelapp.cli", "channelapp.channels_worker"): COMMAND_PROCESS,
    ("channelapp.cli", "channelapp.channels_project"): (
        "channelapp.channels_project imports Channels and Django: only for a Channels project"
    ),
}


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    local: bool  # inside a function


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    return {module_name(p, package_dir): p for p in sorted(package_dir.rglob("*.py"))}


def _local_nodes(tree: ast.AST) -> set[int]:
    local: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            local.update(
                id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)
            )
    return local


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    local = _local_nodes(tree)
    found: list[Import] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            # ``from channelapp import metrics`` imports the module channelapp.metrics.
            subs = [f"{stem}.{alias.name}" for alias in node.names]
            targets = [s for s in subs if s in modules] or [stem]
        else:
            continue
        found.extend(Import(name, t, node.lineno, id(node) in local) for t in targets)
    return found


def group_of(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for group, prefixes in GROUPS.items():
        for prefix in prefixes:
            if module == prefix or (prefix != "channelapp" and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), group)
    return best[1] if best else None


def the_graph() -> tuple[dict[str, Path], list[Import]]:
    modules = all_modules()
    edges = [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]
    return modules, edges


def internal(target: str, modules: dict[str, Path]) -> str | None:
    """The channelapp module an import names (an attribute's module for ``from m import x``)."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


def cycles(modules: dict[str, Path], edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in edges:
        target = internal(imp.target, modules)
        if target is not None and target != imp.source:
            graph[imp.source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_group() -> None:
    modules = all_modules()
    assert [m for m in modules if group_of(m) is None] == []
    assert set(MAY_IMPORT) == set(GROUPS)


def test_no_import_cycle() -> None:
    modules, edges = the_graph()
    assert cycles(modules, edges) == []


def test_no_upward_import() -> None:
    modules, edges = the_graph()
    wrong = []
    for imp in edges:
        target = internal(imp.target, modules)
        if target is None:
            continue
        source_group, target_group = group_of(imp.source), group_of(target)
        assert source_group is not None and target_group is not None
        if target_group != source_group and target_group not in MAY_IMPORT[source_group]:
            wrong.append(
                f"{imp.source}:{imp.line} ({source_group}) imports {target} ({target_group})"
            )
    assert wrong == []


def test_the_core_knows_no_wing() -> None:
    modules, edges = the_graph()
    wrong = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in edges
        if group_of(imp.source) in CORE
        and (target := internal(imp.target, modules)) is not None
        and group_of(target) in WINGS
    ]
    assert wrong == []


def test_function_local_imports_are_justified() -> None:
    _, edges = the_graph()
    unexplained = sorted(
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in edges
        if imp.local and (imp.source, imp.target) not in FUNCTION_LOCAL
    )
    assert unexplained == []
    used = {(imp.source, imp.target) for imp in edges if imp.local}
    assert sorted(set(FUNCTION_LOCAL) - used) == []  # the list names no import gone since


@pytest.mark.parametrize(
    ("source", "code", "target"),
    [
        (
            "channelapp.routing",
            "from channelapp.compat.routing import x",
            "channelapp.compat.routing",
        ),
        ("channelapp.server.protocol", "from . import websocket", "channelapp.server.websocket"),
        ("channelapp.layer.redis", "from .names import x", "channelapp.layer.names"),
        ("channelapp.compat", "from .channel import x", "channelapp.compat.channel"),
    ],
)
def test_imports_are_resolved(source: str, code: str, target: str, tmp_path: Path) -> None:
    modules = all_modules()
    is_package = modules[source].name == "__init__.py"
    path = tmp_path / ("__init__.py" if is_package else "m.py")
    path.write_text(code + "\n")
    assert [imp.target for imp in imports_of(source, path, modules)] == [target]


def test_the_operator_has_no_cycle_and_imports_the_core_only() -> None:
    operator = all_modules(OPERATOR_DIR)
    edges = [imp for name, path in operator.items() for imp in imports_of(name, path, operator)]
    assert cycles(operator, edges) == []
    channelapp = all_modules()
    wrong = [
        f"{imp.source}:{imp.line} imports {target} ({group_of(target)})"
        for imp in edges
        if (target := internal(imp.target, channelapp)) is not None
        and group_of(target) not in OPERATOR_MAY_IMPORT
    ]
    assert wrong == []
