"""The package's shape (docs/architecture.md): imports go only downward through the layers, with no cycle (imports
inside functions included), imports sit at module top, and modules and functions stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import se_monai

PACKAGE = Path(se_monai.__file__).resolve().parent
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"

#: Layers from the bottom; a module may import only from its own layer or those below it. The package itself
#: (se_monai/__init__.py: the version) is at the bottom; every other module must be named here, with its package.
LAYERS = [
    ("se_monai.ops",),
    ("se_monai.bases",),
    ("se_monai.layers",),
    ("se_monai.networks",),
    (
        "se_monai.io",
        "se_monai.data",
        "se_monai.transforms",
        "se_monai.metrics",
        "se_monai.inferers",
        "se_monai.reference",
        "se_monai.engines",
        "se_monai.workflows",
        "se_monai.handlers",
        "se_monai.bundles",
        "se_monai.segmentation",
        # the former homes of moved modules, kept for bundle configs made before the move
        "se_monai.sitk_io",
        "se_monai.dicom_seg",
        "se_monai.synth",
        "se_monai.fingerprint",
        "se_monai.plausibility",
    ),
    ("se_monai.apps",),
    ("se_monai.cli",),
]
#: Modules (and their submodules) that may be imported inside a function, each with its reason.
LAZY_IMPORTS = {
    "matplotlib": "heavy, and only drawing a plot needs it",
    "onnxruntime": "optional (the export extra), and only checking an ONNX file needs it",
    "highdicom": "optional (the dicom extra), and only writing a DICOM SEG needs it",
    "pydicom": "comes with highdicom, and only writing a DICOM SEG needs it",
    "deepbet": "loads pandas and two networks, and only extracting a head's brain needs it",
    "se_monai.cli.commands": "loads torch and MONAI; se-monai answers --help, --version and a mistyped command without",
}
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, tree: ast.AST, known: set[str]) -> list[tuple[str, ast.stmt]]:
    """Every se_monai module ``name`` imports, anywhere in its tree, with the import statement."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.append((f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base, node))
    return [(target, node) for target, node in found if target.split(".")[0] == "se_monai"]


def import_graph() -> dict[str, set[str]]:
    known = set(MODULES)
    return {
        name: {target for target, _ in imports(name, ast.parse(path.read_text()), known)}
        for name, path in MODULES.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node], _ = 2, path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer(name: str) -> int:
    if name == "se_monai":
        return 0
    matches = [
        rank for rank, group in enumerate(LAYERS) for prefix in group if name == prefix or name.startswith(prefix + ".")
    ]
    assert matches, f"{name} belongs to no layer of docs/architecture.md"
    return matches[0]


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 30 and graph["se_monai.layers.conv"] >= {"se_monai.bases", "se_monai.layers.steerable"}
    assert find_cycle(graph) is None


def test_every_module_has_its_layer():
    assert all(layer(name) >= 0 for name in MODULES)


def test_imports_go_only_downward():
    upward = [
        f"{name} -> {target}"
        for name, targets in import_graph().items()
        for target in targets
        if layer(target) > layer(name)
    ]
    assert upward == []


def test_imports_sit_at_module_top():
    """Imports inside functions or classes are allowed only for the modules of LAZY_IMPORTS."""
    known = set(MODULES)

    def allowed(module: str) -> bool:
        return any(module == lazy or module.startswith(lazy + ".") for lazy in LAZY_IMPORTS)

    late = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in top:
                continue
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif (node.module or "").startswith("se_monai"):
                modules = [target for target, _ in imports(name, node, known)]
            else:
                modules = [node.module or ""]
            if not all(allowed(module) for module in modules):
                late.append(f"{name}:{node.lineno}")
    assert late == []


def code_lines(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function (signature included), without its docstring, blank lines and comment lines."""
    first = node.body[0]
    docstring = set()
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        docstring = set(range(first.lineno, first.end_lineno + 1))
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return sum(
        1
        for n in range(start, node.end_lineno + 1)
        if n not in docstring and lines[n - 1].strip() and not lines[n - 1].strip().startswith("#")
    )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_are_small(name):
    lines = MODULES[name].read_text().splitlines()
    assert len(lines) <= MAX_MODULE_LINES
    long = [
        (node.name, code_lines(lines, node))
        for node in ast.walk(ast.parse("\n".join(lines)))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and code_lines(lines, node) > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_architecture_doc_names_every_module():
    text = ARCHITECTURE.read_text()
    missing = [name for name, path in MODULES.items() if f"`{path.relative_to(PACKAGE.parent).as_posix()}`" not in text]
    assert missing == []
