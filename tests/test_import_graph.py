"""Imports run one way (ARCHITECTURE.md): no cycles in `fader/` or `train/`, the library never
imports the trainer, and a deferred (in-function) import in the trainer says why it is deferred.

The graph is read from the source with `ast`, module-level and in-function imports alike: an
import hidden in a function still ties the two modules together.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fader", "train", "page")  # the library, the trainer, the page's parts


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imported_modules(node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """Which of our modules an import statement loads (`from train import loop` → train.loop)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif node.level or node.module is None:
        raise AssertionError(f"relative import at line {node.lineno}: name the module")
    else:
        names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return {name for name in names if name in modules}


def import_graph() -> dict[str, set[str]]:
    modules = our_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= imported_modules(node, modules) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, …, a], or None (depth-first search, three colours)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_of_fader_and_train_has_no_cycle():
    graph = import_graph()
    assert {"train.loop", "train.step", "train.data", "fader.model"} <= graph.keys()
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_library_never_imports_the_trainer_or_the_page():
    wrong = {
        (module, target)
        for module, targets in import_graph().items()
        for target in targets
        if module.split(".")[0] == "fader" and target.split(".")[0] in {"train", "page"}
    }
    assert not wrong


def deferred_imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """Imports inside a function body (at any depth)."""
    found = []
    for function in ast.walk(ast.parse(path.read_text())):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [n for n in ast.walk(function) if isinstance(n, ast.Import | ast.ImportFrom)]
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_inference_core_never_reaches_the_converter():
    """The editor runs models; reading the authors' pickles is the registry's business."""
    conversion = {
        "fader.authors.__main__",
        "fader.authors.conversion",
        "fader.authors.cache",
        "fader.authors.legacy_pickle",
    }
    graph = import_graph()
    assert conversion <= graph.keys()
    assert not reachable(graph, "fader.editor") & conversion


def test_every_deferred_import_says_why():
    """A comment on the import's line or the line above it, e.g. `# optional: tensorboard`."""
    silent = []
    for path in our_modules().values():
        lines = path.read_text().splitlines()
        for node in deferred_imports(path):
            nearby = lines[node.lineno - 2 : node.end_lineno]
            if not any("#" in line for line in nearby):
                silent.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not silent, f"deferred imports without a reason: {silent}"
