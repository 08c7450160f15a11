"""Print the import cycles between the modules of peerix_nb; exit status 1 if there is any.

    python tools/import_cycles.py [package directory]

Every import of one peerix_nb module by another counts, at module level or inside a function
(a cycle through a function-level import is still a cycle: it only fails later), except those
under `if TYPE_CHECKING:`, which never run. A cycle is a strongly connected component of two or
more modules, or a module that imports itself; each is printed with the imports that close it.
`from .pkg import name` counts as importing `pkg.name` when that is a module, else `pkg`;
importing `a.b` is not counted as importing the package `a` too (it is already being imported).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "peerix_nb"


@dataclass(frozen=True, slots=True)
class Import:
    """One import of `target` by `source`, at `line` of its file (`nested`: inside a def)."""

    source: str
    target: str
    line: int
    nested: bool

    def __str__(self) -> str:
        where = " (inside a function)" if self.nested else ""
        return f"{self.source} -> {self.target}  line {self.line}{where}"


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under `package_dir` (a package)."""
    root = package_dir.parent
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(nodes: Iterable[ast.AST], nested: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node in or under `nodes` that runs at some point, with whether it is inside a
    function: the body of `if TYPE_CHECKING:` is left out (its `else:` runs, so it is kept)."""
    for node in nodes:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.orelse, nested)
            continue
        inner = nested or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield node, inner
        yield from _walk(ast.iter_child_nodes(node), inner)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The imports of other peerix_nb modules (or of itself) made by module `name`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node, nested in _walk(tree.body):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, *([node.module] if node.module else [])])
            else:
                stem = node.module or ""
            submodules = [f"{stem}.{alias.name}" for alias in node.names]
            targets = [s for s in submodules if s in modules]
            if len(targets) < len(submodules):
                targets.append(stem)  # a name defined in `stem` itself
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            targets = [node.args[0].value]  # importlib.import_module("peerix_nb.x")
        for target in targets:
            if target in modules:
                found.append(Import(name, target, getattr(node, "lineno", 0), nested))
    return found


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, list[Import]]:
    """Module -> its imports of modules of the same package."""
    modules = module_names(package_dir)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def _components(graph: dict[str, list[Import]]) -> list[list[str]]:
    """Strongly connected components (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted({i.target for i in graph[start]})))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted({i.target for i in graph[child]}))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def cycles(graph: dict[str, list[Import]]) -> list[tuple[list[str], list[Import]]]:
    """Each cycle: its modules (sorted) and the imports between them, largest cycle first."""
    found = []
    for component in _components(graph):
        members = set(component)
        edges = [i for name in component for i in graph[name] if i.target in members]
        if len(component) > 1 or edges:  # a single module only when it imports itself
            found.append((component, edges))
    return sorted(found, key=lambda c: (-len(c[0]), c[0]))


def report(found: list[tuple[list[str], list[Import]]]) -> str:
    if not found:
        return "no import cycles"
    lines = [
        f"{len(found)} import cycle(s) (imports inside functions count,"
        " those under `if TYPE_CHECKING:` do not):"
    ]
    for number, (component, edges) in enumerate(found, 1):
        lines.append(f"{number}. {', '.join(component)}")
        lines.extend(f"     {edge}" for edge in edges)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    package_dir = Path(argv[0]).resolve() if argv else PACKAGE_DIR
    found = cycles(import_graph(package_dir))
    print(report(found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
