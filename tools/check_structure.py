"""Structure checks that import-linter's contracts do not cover (`make lint` runs both).

Builds the import graph of every module under apps/, messaging_center/ and devstack/ with grimp —
imports inside functions and under `if TYPE_CHECKING:` included — plus celery_app.py, which grimp
cannot take as a root package (a single file), from its own import statements. It fails on:

- an import cycle: every strongly connected component of more than one module is listed, each
  import in it with its line. One kind is let pass: a package whose `__init__` imports (re-exports)
  its own children, with only those children in the cycle (a child importing its package back).
  Python runs a package's `__init__` before any of its children anyway, so that cycle adds no order
  of imports that was not there already, and a child asking its `__init__` for a name the `__init__`
  has not defined yet fails at import, in every test. A cycle through any module outside the
  package is reported;
- a product module (apps, messaging_center, celery_app) from which devstack.simulator can be
  reached by any chain of imports (the one allowed product → devstack import, settings →
  devstack.embedded, must not lead there either);
- celery_app importing any of our modules: it is the bottom layer;
- a module longer than MAX_LINES lines (migrations excepted): split it into a package by flow.

Prints one line on success.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("apps", "messaging_center", "devstack")
SINGLE_MODULES = ("celery_app",)
PRODUCT = ("apps", "messaging_center", "celery_app")
SIMULATOR = "devstack.simulator"
MAX_LINES = 500

Graph = Mapping[str, set[str]]


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int | None


def is_within(module: str, ancestor: str) -> bool:
    return module == ancestor or module.startswith(ancestor + ".")


def module_files() -> dict[str, Path]:
    """Module name → source file, for the packages and the single modules."""
    files: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for name in SINGLE_MODULES:
        files[name] = ROOT / f"{name}.py"
    return files


def build_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], int | None]]:
    """Our modules → the modules of ours they import, and the line of one such import per edge."""
    sys.path.insert(0, str(ROOT))
    grimp_graph = grimp.build_graph(*PACKAGES, include_external_packages=True)
    ours = {m for m in grimp_graph.modules if not grimp_graph.is_module_squashed(m)} | set(SINGLE_MODULES)
    graph: dict[str, set[str]] = {m: set() for m in ours}
    lines: dict[tuple[str, str], int | None] = {}
    for importer in ours - set(SINGLE_MODULES):
        for imported in grimp_graph.find_modules_directly_imported_by(importer):
            if imported in ours:
                graph[importer].add(imported)
                details = grimp_graph.get_import_details(importer=importer, imported=imported)
                lines[(importer, imported)] = details[0]["line_number"] if details else None
    for name in SINGLE_MODULES:
        for imported, line in _imports_of_file(ROOT / f"{name}.py", ours):
            graph[name].add(imported)
            lines.setdefault((name, imported), line)
    return graph, lines


def _imports_of_file(path: Path, ours: set[str]) -> Iterable[tuple[str, int]]:
    """(module of ours, line) for every import statement of a top-level module, wherever it stands."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            resolved = _longest_known_prefix(name, ours)
            if resolved is not None:
                yield resolved, node.lineno


def _longest_known_prefix(name: str, known: set[str]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative), each sorted,
    except a package with only its own descendants (see the module's doc)."""
    return [c for c in _components(graph) if not any(all(is_within(m, package) for m in c) for package in c)]


def _components(graph: Graph) -> list[list[str]]:
    edges = {m: sorted(imported) for m, imported in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
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
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def chain_to(graph: Graph, source: str, target_package: str) -> list[str] | None:
    """The shortest import chain from `source` to any module within `target_package`, if any."""
    previous: dict[str, str | None] = {source: None}
    frontier = [source]
    while frontier:
        next_frontier = []
        for module in frontier:
            for imported in sorted(graph.get(module, ())):
                if imported in previous:
                    continue
                previous[imported] = module
                if is_within(imported, target_package):
                    chain = [imported]
                    while (step := previous[chain[-1]]) is not None:
                        chain.append(step)
                    return chain[::-1]
                next_frontier.append(imported)
        frontier = next_frontier
    return None


def is_product(module: str) -> bool:
    return any(is_within(module, package) for package in PRODUCT)


def simulator_chains(graph: Graph) -> list[list[str]]:
    """For each import by which product code leaves the product (into devstack) and from which the
    simulator can be reached: that import and the chain on from it."""
    chains = []
    for module in sorted(m for m in graph if is_product(m)):
        for imported in sorted(i for i in graph[module] if not is_product(i)):
            onward = [imported] if is_within(imported, SIMULATOR) else chain_to(graph, imported, SIMULATOR)
            if onward is not None:
                chains.append([module, *onward])
    return chains


def oversized(files: Mapping[str, Path], max_lines: int = MAX_LINES) -> list[tuple[str, int]]:
    sizes = ((name, len(path.read_text().splitlines())) for name, path in files.items() if ".migrations" not in name)
    return sorted((item for item in sizes if item[1] > max_lines), key=lambda item: -item[1])


def main() -> int:
    graph, lines = build_graph()
    files = module_files()
    problems: list[str] = []

    def where(importer: str, imported: str) -> str:
        line, path = lines.get((importer, imported)), files.get(importer)
        return f"{path.relative_to(ROOT)}:{line}" if path and line else importer

    for component in cycles(graph):
        members = set(component)
        problems.append(f"import cycle between {len(component)} modules:")
        problems += [f"    {m} -> {i}  ({where(m, i)})" for m in component for i in sorted(graph[m] & members)]
    problems += [f"product code reaches the simulator: {' -> '.join(c)}  ({where(c[0], c[1])})" for c in simulator_chains(graph)]
    for name in SINGLE_MODULES:
        problems += [f"{name} is the bottom layer but imports {imported}" for imported in sorted(graph[name])]
    problems += [f"{files[name].relative_to(ROOT)}: {count} lines (at most {MAX_LINES})" for name, count in oversized(files)]

    if problems:
        print("\n".join(["check_structure: FAILED", *problems]), file=sys.stderr)
        return 1
    imports = sum(len(imported) for imported in graph.values())
    largest, size = max(
        ((name, len(path.read_text().splitlines())) for name, path in files.items() if ".migrations" not in name),
        key=lambda item: item[1],
    )
    print(
        f"check_structure: {len(graph)} modules, {imports} imports: no cycles, no product import reaches {SIMULATOR}, "
        f"largest module {largest} ({size} of at most {MAX_LINES} lines)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
