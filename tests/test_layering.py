"""The package's layering (docs/architecture.md), read from its imports with the standard
library's ast: every module sits in a layer, imports only from its own layer or those below,
and no chain of imports comes back to where it started."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "mbdpo_fast"

# Lowest first. A module belongs to the first layer with a prefix it matches (a prefix names a
# module or a subpackage, e.g. "kernels" is mbdpo_fast.kernels and everything in it).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("__init__", "errors", "task_registry", "batch", "functional", "diffusion", "cpu_threads")),
    ("kernels and layers", ("kernels", "layers")),
    ("configuration", ("config",)),
    ("model and environments", ("world_model", "planner", "grouped_rollout", "agent", "cuda_graphs", "distributed",
                                "envs")),
    ("data", ("data",)),
    ("training", ("trainers",)),
    ("entry points", ("cli", "train", "pretrain", "finetune", "evaluate", "results")),
]


def modules() -> dict[str, Path]:
    """Dotted module name below the package (e.g. 'envs.cpu.vector'; a package is its __init__)."""
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules that `name` imports (at any depth in the file, lazy imports included)."""
    is_pkg = path.name == "__init__.py"
    pkg = name.split(".") if is_pkg and name != "__init__" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("mbdpo_fast"):
                mod = node.module[len("mbdpo_fast"):].lstrip(".")
            else:
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}" if mod else alias.name
                targets.append(sub if sub in known else mod)
        elif isinstance(node, ast.Import):
            targets = [a.name[len("mbdpo_fast"):].lstrip(".") for a in node.names if a.name.startswith("mbdpo_fast")]
        for t in targets:
            t = t or "__init__"
            if t in known and t != name:
                found.add(t)
    return found


def layer_of(name: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"mbdpo_fast.{name} is in no layer: add it to LAYERS in tests/test_layering.py "
                         f"and to docs/architecture.md")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def test_every_module_has_a_layer():
    for m in modules():
        layer_of(m)


def test_no_import_points_upward():
    bad = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
           for m, targets in graph().items() for t in targets if layer_of(t) > layer_of(m)]
    assert not bad, "imports that point up the layers:\n  " + "\n  ".join(sorted(bad))


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        stack.append(m)
        for t in sorted(g[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


def test_kernels_are_leaves():
    # kernels read what they need from functional/diffusion/layers and the weights they are given
    for m, targets in graph().items():
        if m.startswith("kernels"):
            assert all(layer_of(t) <= layer_of(m) for t in targets), (m, targets)


def test_the_checker_sees_violations(tmp_path, monkeypatch):
    # the parser itself: a relative upward import and a cycle are found in a throwaway package
    pkg = tmp_path / "mbdpo_fast"
    (pkg / "kernels").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "kernels" / "__init__.py").write_text("")
    (pkg / "kernels" / "k.py").write_text("from ..agent import X\n")
    (pkg / "agent.py").write_text("def f():\n    from .kernels import k\n")
    monkeypatch.setattr(__import__(__name__), "PKG", pkg)
    g = graph()
    assert g["kernels.k"] == {"agent"} and g["agent"] == {"kernels.k"}
    assert layer_of("kernels.k") < layer_of("agent")
