"""The package's layout holds: no import circle, no module importing another's private names, and
each layer importing only the layers below it (docs/architecture.md states the rules)."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "dra_jax"

# bottom to top; a module may import its own layer (engines each other's public names) and below
LAYERS = {
    "core": 0,
    "config": 1, "results": 1, "tasks": 1, "envs": 1,
    "runtime": 2,
    "lane": 3, "planning": 3, "bandits": 3, "episodic": 3, "fitting": 3,
    "figures": 4,
    "experiments": 5,
    "sweep": 6,
    "api": 7,
    "paper": 8, "fit": 8, "": 8,
}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _imports(mods):
    """(module, imported module, imported name or None) for every import of dra_jax, at any
    depth of the file (imports inside functions count)."""
    out = []
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                out += [(m, a.name, None) for a in node.names if a.name.split(".")[0] == "dra_jax"]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    tgt = ".".join(base + ([node.module] if node.module else []))
                else:
                    tgt = node.module or ""
                if tgt.split(".")[0] != "dra_jax":
                    continue
                for a in node.names:
                    sub = f"{tgt}.{a.name}"
                    out.append((m, sub, None) if sub in mods else (m, tgt, a.name))
    return out


def _layer(mod: str) -> tuple[str, int]:
    top = mod.split(".")[1] if "." in mod else ""
    return top, LAYERS[top]


def test_every_module_has_a_layer():
    assert {_layer(m)[0] for m in _modules()} <= set(LAYERS)


def test_no_import_circle():
    mods = _modules()
    graph = {m: set() for m in mods}
    for m, tgt, _ in _imports(mods):
        if tgt in mods and tgt != m:
            graph[m].add(tgt)
    state: dict[str, int] = {}
    cycles = []

    def visit(v, path):
        state[v] = 1
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                cycles.append(path[path.index(w):] + [w])
            elif w not in state:
                visit(w, path + [w])
        state[v] = 2

    for v in sorted(graph):
        if v not in state:
            visit(v, [v])
    assert cycles == []


def test_no_private_name_crosses_a_module():
    mods = _modules()
    crossing = [(m, tgt, name) for m, tgt, name in _imports(mods)
                if name and name.startswith("_") and not name.startswith("__") and tgt != m]
    assert crossing == []


def test_layers_import_downwards():
    mods = _modules()
    up = []
    for m, tgt, name in _imports(mods):
        if tgt == "dra_jax" and name in ("__version__", "ConfigError"):
            continue  # the version and the config error live at the root, for every layer
        (top_m, lm), (top_t, lt) = _layer(m), _layer(tgt)
        if top_m != top_t and lt > lm:
            up.append((m, tgt))
    assert up == []


def test_core_imports_only_core():
    mods = _modules()
    assert [(m, t) for m, t, _ in _imports(mods)
            if _layer(m)[0] == "core" and _layer(t)[0] != "core"] == []
