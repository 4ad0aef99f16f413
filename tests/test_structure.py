"""The shape of the code: no import circles, no CLI in the library, nothing heavy at `import introspect`."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _module_imports(package: str, folder: Path) -> dict[str, set[str]]:
    """Top-level (import-time) imports between the package's own modules."""
    graph = {}
    for path in folder.rglob("*.py"):
        parts = path.relative_to(folder).with_suffix("").parts
        name = ".".join((package, *(parts[:-1] if parts[-1] == "__init__" else parts)))
        edges = set()
        for node in ast.parse(path.read_text()).body:  # only module level: function-level imports run later
            if isinstance(node, ast.ImportFrom):
                base = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
                if target.startswith(package):
                    edges.add(target)
                    edges.update(f"{target}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith(package))
        graph[name] = edges
    return {k: {e for e in v if e in graph and e != k} for k, v in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
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


def test_no_import_circles_between_modules():
    for package, folder in (("introspect", ROOT / "introspect"), ("introspect_cli", ROOT / "cli")):
        graph = _module_imports(package, folder)
        # a package's __init__ re-exporting its children is not a circle
        graph = {k: {e for e in v if not e.startswith(k + ".")} for k, v in graph.items()}
        assert _cycle(graph) is None, _cycle(graph)


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
