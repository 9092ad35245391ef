"""Print the import cycles inside a package and its function-local imports.

Usage: ``PYTHONPATH=src python scripts/import_graph.py [package] [--list]``

Cycles are the strongly connected components (Tarjan's algorithm) of the module import
graph that grimp (import-linter's graph library) builds; grimp reads every import statement,
function-local ones included, and imports under ``if TYPE_CHECKING:`` are left out. Each
edge inside a component is printed with its line numbers, ``(local)`` marking an edge made
only of function-local imports.

Function-local imports are ``import`` / ``from ... import`` statements anywhere inside a
function body (``if TYPE_CHECKING:`` blocks excluded), counted per file with ``ast``.
``--list`` prints each one.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from collections import Counter
from pathlib import Path

import grimp


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def local_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for each import statement inside a function body of `path`."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    visit_stmt(sub, in_function)
                continue
            visit_stmt(child, in_function)

    def visit_stmt(child: ast.AST, in_function: bool) -> None:
        if in_function and isinstance(child, ast.Import):
            found.append((child.lineno, ", ".join(alias.name for alias in child.names)))
        elif in_function and isinstance(child, ast.ImportFrom):
            found.append((child.lineno, "." * child.level + (child.module or "")))
        inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
        visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), False)
    return found


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Components of more than one module (or a module importing itself), Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.find_modules_directly_imported_by(succ)))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
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
                if len(component) > 1 or graph.direct_import_exists(importer=node, imported=node):
                    components.append(sorted(component))
    return sorted(components)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default="artenc")
    parser.add_argument("--list", action="store_true", help="print every function-local import")
    args = parser.parse_args()

    spec = importlib.util.find_spec(args.package)
    if spec is None or spec.submodule_search_locations is None:
        print(f"{args.package} is not an importable package (set PYTHONPATH)", file=sys.stderr)
        return 2
    root = Path(next(iter(spec.submodule_search_locations)))
    graph = grimp.build_graph(args.package, exclude_type_checking_imports=True, cache_dir=None)

    files = {m: root.joinpath(*m.split(".")[1:]) for m in graph.modules}
    files = {m: (p / "__init__.py" if p.is_dir() else p.with_suffix(".py")) for m, p in files.items()}
    local = {m: local_imports(p) for m, p in sorted(files.items())}
    local_lines = {m: {line for line, _ in found} for m, found in local.items()}

    components = strongly_connected(graph)
    print(f"import cycles in {args.package}: {len(components)} strongly connected component(s)")
    for number, component in enumerate(components, 1):
        print(f"\n[{number}] {len(component)} modules: {', '.join(component)}")
        members = set(component)
        for importer in component:
            for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
                details = graph.get_import_details(importer=importer, imported=imported)
                lines = sorted({d["line_number"] for d in details})
                tag = " (local)" if set(lines) <= local_lines[importer] else ""
                print(f"    {importer} -> {imported}  line {', '.join(map(str, lines))}{tag}")

    total = sum(len(found) for found in local.values())
    per_file = Counter({m: len(found) for m, found in local.items() if found})
    print(f"\nfunction-local imports: {total} in {len(per_file)} module(s)")
    for module, count in per_file.most_common():
        print(f"  {count:4d}  {module}")
        if args.list:
            for line, name in local[module]:
                print(f"          line {line}: {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
