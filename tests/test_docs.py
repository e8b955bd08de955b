"""The docs say what the code does: docs/design.md's module tables list every module there is
(and none that is gone), its import rules hold on the real import graph, and every link in the
README and docs/ leads to a file and heading that exist.

The import graph is the one `tests/test_import_graph.py` reads from the source with `ast`, with
`app.py` added.
"""

import ast
import re
from pathlib import Path

from tests.test_import_graph import ROOT, imported_modules, module_name, our_modules, reachable

DESIGN = ROOT / "docs" / "design.md"
APP = ROOT / "app.py"
TABLE_ROW = re.compile(r"^\| *(\d+) *\| *`([\w/.]+\.py)` *\|", re.M)


def documented_layers() -> dict[str, int]:
    """Module path → layer, from every `| layer | `path.py` | … |` row of the design page."""
    rows = TABLE_ROW.findall(DESIGN.read_text())
    paths = [path for _, path in rows]
    twice = sorted({path for path in paths if paths.count(path) > 1})
    assert not twice, f"docs/design.md lists these modules more than once: {twice}"
    return {path: int(layer) for layer, path in rows}


def modules_with_app() -> dict[str, Path]:
    return our_modules() | {"app": APP}


def import_graph_with_app() -> dict[str, set[str]]:
    modules = modules_with_app()
    graph = {}
    for name, path in modules.items():
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[name] |= imported_modules(node, modules) - {name}
    return graph


def path_of(module: str) -> str:
    return str(modules_with_app()[module].relative_to(ROOT))


def test_the_design_page_lists_every_module_and_no_other():
    documented = set(documented_layers())
    real = {path_of(name) for name in modules_with_app()}
    missing, gone = sorted(real - documented), sorted(documented - real)
    assert not missing, f"add a row for each to docs/design.md's tables: {missing}"
    assert not gone, f"docs/design.md lists modules that do not exist: {gone}"


def test_imports_run_downward_through_the_design_pages_layers():
    layers = documented_layers()
    upward = [
        f"{path_of(module)} (layer {layers[path_of(module)]}) imports "
        f"{path_of(target)} (layer {layers[path_of(target)]})"
        for module, targets in import_graph_with_app().items()
        for target in targets
        if layers.get(path_of(target), 0) > layers.get(path_of(module), 0)
    ]
    assert not upward, "docs/design.md says imports run downward; these run up: " + "; ".join(
        sorted(upward)
    )


def test_the_trainer_imports_only_the_librarys_first_three_layers():
    layers = documented_layers()
    beyond = [
        f"{path_of(module)} imports {path_of(target)} (layer {layers[path_of(target)]})"
        for module, targets in import_graph_with_app().items()
        if module.split(".")[0] == "train"
        for target in targets
        if target.split(".")[0] == "fader" and layers[path_of(target)] > 3
    ]
    assert not beyond, beyond


def test_only_the_page_imports_gradio():
    """`app.py` and its parts in `page/`: the library and the trainer run without Gradio."""
    found = []
    for name, path in our_modules().items():
        if name.split(".")[0] == "page":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(n == "gradio" or n.startswith(("gradio.", "gradio_client")) for n in names):
                found.append(name)
    assert not found, f"Gradio imported outside app.py and page/: {sorted(set(found))}"


def test_the_editor_never_reaches_the_authors_converter():
    graph = import_graph_with_app()
    converter = {name for name in graph if name.startswith("fader.authors.")}
    converter -= {"fader.authors.releases"}
    assert converter, "fader/authors/ has moved: update docs/design.md and this test"
    assert not reachable(graph, "fader.editor") & converter


def test_the_layers_named_in_the_design_page_are_those_its_tables_use():
    text = DESIGN.read_text()
    named = {int(n) for n in re.findall(r"^\| (\d+) \| [^`|]+\|$", text, re.M)}
    assert named == set(documented_layers().values())


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces → '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {heading_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_link_in_the_docs_leads_somewhere():
    broken = []
    for page in doc_pages():
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def test_the_readme_stays_a_front_door():
    """What it is, a picture, the two commands, a short tour, links: the details live in docs/."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert "](docs/images/app.png)" in readme
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"


def test_heading_anchors_follow_githubs_rule():
    assert heading_anchor("Videos (`bench/video_edit.py`)") == "videos-benchvideo_editpy"
    assert heading_anchor("Everything the authors' trainer offers (all off by default)") == (
        "everything-the-authors-trainer-offers-all-off-by-default"
    )
    assert module_name(ROOT / "fader" / "authors" / "__init__.py") == "fader.authors"
