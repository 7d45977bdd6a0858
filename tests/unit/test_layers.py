"""The import graph, read from the source: no module imports a layer above its own.

Layers, lowest first (a module may import its own layer and the ones below):

    0 core      stylize.engine           WCT maths, tiles, memory plan, backend protocol, stylizer
    1 models    stylize.models           architectures, weights registry, zoo
    2 runtimes  stylize.export           torch / onnxruntime / TensorRT backends, ONNX export
    3 app       stylize (the rest)       settings, image I/O, files, batch, CLI
    4 clients   stylize.bench, stylize.models.training

Every import statement counts, wherever it stands (a function-local import is still a
dependency). Run it with ``-s`` to see the graph printed.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"engine": "stylize.engine", "models": "stylize.models", "export": "stylize.export",
           "stylize": "stylize", "bench": "stylize.bench"}
LAYERS = [("clients", ("stylize.bench", "stylize.models.training")), ("core", ("stylize.engine",)),
          ("models", ("stylize.models",)), ("runtimes", ("stylize.export",)), ("app", ("stylize",))]
RANK = {"core": 0, "models": 1, "runtimes": 2, "app": 3, "clients": 4}


def layer_of(module: str) -> str:
    for name, prefixes in LAYERS:  # clients first: stylize.models.training is not "models"
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    raise AssertionError(f"{module} is in no layer")


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def imports(module: str, path: Path) -> set[str]:
    """Absolute names of the project modules ``module`` imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
    return {m for m in found if m == "stylize" or m.startswith("stylize.")}


def test_no_module_imports_a_higher_layer():
    graph = {m: imports(m, p) for m, p in modules().items()}
    assert len(graph) > 30, "the walk found too few modules"
    edges = sorted({(layer_of(m), layer_of(d)) for m, deps in graph.items() for d in deps})
    print("\nlayer edges (importer -> imported):", ", ".join(f"{a}->{b}" for a, b in edges))
    bad = [f"{m} ({layer_of(m)}) imports {d} ({layer_of(d)})" for m, deps in sorted(graph.items())
           for d in sorted(deps) if RANK[layer_of(d)] > RANK[layer_of(m)]]
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check is not vacuous: a core module importing the application is caught."""
    bad = tmp_path / "wct.py"
    bad.write_text("from stylize.api import stylize\nfrom ..cli import main\n")
    found = imports("stylize.engine.wct", bad)
    assert {"stylize.api", "stylize.cli"} <= found
    assert all(RANK[layer_of(d)] > RANK[layer_of("stylize.engine.wct")] for d in found)
