"""The package's shape: the import graph has no cycles and its arrows point one way
(run -> model families -> model/optim/losses -> layers -> backend), CuPy is imported by
the backend alone, PyTorch only by the benchmarks' references, matplotlib only by plots,
mpi4py only by distributed, and `minigan train --help` loads neither the benchmark code
nor PyTorch nor matplotlib nor mpi4py."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "minigan"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> dict[str, bool]:
    """{imported module: imported at module level?}, every import in the file, resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: dict[str, bool] = {}
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            found[target] = found.get(target, False) or id(node) in top_level
    return found


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {name: {target: top for target, top in imports_of(path).items() if target in MODULES and target != name}
         for name, path in MODULES.items()}
EXTERNAL = {name: imports_of(path) for name, path in MODULES.items()}


def test_the_import_graph_has_no_cycles():
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in GRAPH[node]:
            if state.get(target) == "open":
                cycle = trail[trail.index(target):] + [target] if target in trail else [node, target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])


def test_the_core_never_imports_the_application_or_the_benchmarks():
    for module, targets in GRAPH.items():
        if module.startswith(("minigan.run", "minigan.bench")) or module == "minigan.__main__":
            continue
        upward = [target for target in targets if target.startswith(("minigan.run", "minigan.bench"))]
        assert not upward, f"{module} imports {upward}"


def test_the_application_imports_the_benchmarks_only_inside_the_bench_command():
    for module, targets in GRAPH.items():
        if module.startswith("minigan.run"):
            eager = [target for target, top in targets.items() if top and target.startswith("minigan.bench")]
            assert not eager, f"{module} imports {eager} at import time"


@pytest.mark.parametrize("library, owners", [
    ("cupy", {"minigan.backend"}),
    ("cupyx", {"minigan.backend"}),
    ("torch", {"minigan.bench.torch_reference", "minigan.bench.dcgan_torch"}),
    ("matplotlib", {"minigan.plots"}),
    ("mpi4py", {"minigan.distributed"}),
])
def test_each_heavy_library_is_imported_only_where_it_belongs(library, owners):
    importers = {module for module, targets in EXTERNAL.items()
                 if any(target == library or target.startswith(library + ".") for target in targets)}
    assert importers <= owners, f"{sorted(importers - owners)} import {library}"


def test_train_help_imports_no_benchmark_code_torch_or_matplotlib():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "minigan", "train", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "minigan.run.cli" in loaded  # the measurement sees minigan's own modules
    unwanted = sorted(name for name in loaded
                      if name.startswith(("minigan.bench", "torch", "matplotlib", "mpi4py")))
    assert not unwanted, f"minigan train --help imported {unwanted}"
