"""The architecture, read from the import statements: packages by layer, none importing a
higher one, no import circles, torch kept out of the core and Hydra inside ``sweep``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "poolbench"
# Lower layers never import higher ones; one rank may hold several layers that do not import
# each other (models and data; ui and report).
RANKS = {
    "core": 0,
    "pooling": 1,
    "models": 2,
    "data": 2,
    "measure": 3,
    "engine": 4,
    "run": 5,
    "ui": 6,
    "report": 6,
    "sweep": 7,
    "cli": 8,
}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name, the command line (``cli/``, installed as
    ``poolbench.cli`` through the link ``poolbench/cli``, which rglob does not follow) too."""
    found = {}
    trees = [(PACKAGE, ["poolbench"]), (REPO / "cli", ["poolbench", "cli"])]
    for root, prefix in trees:
        for path in sorted(root.rglob("*.py")):
            parts = [*prefix, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = modules()


def imports(path: Path, name: str) -> list[tuple[str, int]]:
    """The modules ``path`` imports (at any depth of its code), with their lines: ``from a.b
    import c`` names ``a.b.c`` where that is a module, else ``a.b``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full if full in MODULES else base, node.lineno))
    return out


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "poolbench" or len(parts) < 2:
        return None
    return parts[1]


EDGES = {name: imports(path, name) for name, path in MODULES.items()}


def test_every_module_is_in_a_layer():
    outside = [m for m in MODULES if m != "poolbench" and layer(m) not in RANKS]
    assert not outside, f"modules outside every layer: {outside}"


def test_no_layer_imports_a_higher_one():
    wrong = [
        f"{name}:{line} imports {target}"
        for name, targets in EDGES.items()
        for target, line in targets
        if layer(name) in RANKS
        and layer(target) in RANKS
        and RANKS[layer(target)] > RANKS[layer(name)]
    ]
    assert not wrong, "\n".join(wrong)


def test_layers_of_one_rank_do_not_import_each_other():
    wrong = [
        f"{name}:{line} imports {target}"
        for name, targets in EDGES.items()
        for target, line in targets
        if layer(name) in RANKS
        and layer(target) in RANKS
        and layer(target) != layer(name)
        and RANKS[layer(target)] == RANKS[layer(name)]
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    graph = {m: {t for t, _ in EDGES[m] if t in MODULES and t != m} for m in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            circle = visit(module)
            assert circle is None, " -> ".join(circle)


@pytest.mark.parametrize(
    ("where", "forbidden", "why"),
    [
        ("core", ("torch", "pandas", "hydra", "omegaconf"), "the core loads in a blink"),
        ("report", ("torch", "hydra", "omegaconf"), "reports only read records"),
        ("engine", ("hydra", "omegaconf", "rich"), "the loop knows no display and no Hydra"),
        ("pooling", ("hydra", "omegaconf", "pandas"), "layers are plain modules"),
    ],
)
def test_a_layer_keeps_away_from_what_it_must_not_know(where, forbidden, why):
    wrong = [
        f"{name}:{line} imports {target}"
        for name, targets in EDGES.items()
        if layer(name) == where
        for target, line in targets
        if target.split(".")[0] in forbidden
    ]
    assert not wrong, why + ":\n" + "\n".join(wrong)


def test_hydra_is_imported_by_the_sweep_layer_alone():
    wrong = [
        f"{name}:{line} imports {target}"
        for name, targets in EDGES.items()
        for target, line in targets
        if target.split(".")[0] in ("hydra", "omegaconf") and layer(name) not in ("sweep", "cli")
    ]
    assert not wrong, "\n".join(wrong)


def test_every_package_says_what_it_owns_and_may_import():
    for package in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc, f"{package.name}/__init__.py has no docstring"
        if package.name != "cli":
            assert "import" in doc, f"{package.name}: say what it may import"


def test_the_cli_is_in_the_graph_and_only_report_write_draws():
    """The command line's modules are read too, and the figures (matplotlib) are made in one
    place: report.write imports report.plots, nothing else does."""
    assert "poolbench.cli.main" in MODULES and "poolbench.cli.tables" in MODULES
    drawing = sorted(
        {
            name
            for name, targets in EDGES.items()
            for t, _ in targets
            if t == "poolbench.report.plots"
        }
    )
    assert drawing == ["poolbench.report.write"], drawing
