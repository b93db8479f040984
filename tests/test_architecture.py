"""The package's shape: no import circles, one SDP stack, a curated public API that imports nothing heavy."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

PACKAGE = REPO / "lipcert"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> lipcert modules it imports, anywhere in it (lazy, in-function imports included)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {_resolve(a.name, modules) for a in node.names if a.name.startswith("lipcert")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lipcert"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(_resolve(full if full in modules else node.module, modules))
        graph[name] = {d for d in deps if d is not None and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
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
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_circles() -> None:
    assert cycles(import_graph()) == []


def test_the_sdp_stack_depends_on_nothing_downstream() -> None:
    """load -> network -> plan -> SDP -> solve/verify -> combine -> report: lipcert.sdp never reads a plan."""
    downstream = ("lipcert.partition", "lipcert.blocks", "lipcert.jobs", "lipcert.execute", "lipcert.estimate")
    downstream += ("lipcert.report", "lipcert.cli", "lipcert.combine", "lipcert.batch")
    for module, deps in import_graph().items():
        if module.startswith("lipcert.sdp"):
            assert not {d for d in deps if d.startswith(downstream)}, module


def _sources_outside(folder: str) -> dict[str, str]:
    return {
        str(p.relative_to(REPO)): p.read_text(encoding="utf-8")
        for p in PACKAGE.rglob("*.py")
        if not str(p.relative_to(PACKAGE)).startswith(folder)
    }


def test_one_cvxpy_model_one_solver_call_one_proof() -> None:
    sdp = {p.name: p.read_text(encoding="utf-8") for p in (PACKAGE / "sdp").glob("*.py")}
    everything = {**_sources_outside("sdp"), **{f"lipcert/sdp/{k}": v for k, v in sdp.items()}}
    where = {pattern: [f for f, text in everything.items() if re.search(pattern, text)] for pattern in (
        r"cp\.Problem\(", r"\bscs\.SCS\(", r"def prove_rho\b", r"\bcertify_psd\(",
    )}  # fmt: skip
    assert where[r"cp\.Problem\("] == ["lipcert/sdp/model.py"]
    assert where[r"\bscs\.SCS\("] == ["lipcert/sdp/solve.py"]
    assert where[r"def prove_rho\b"] == ["lipcert/sdp/verify.py"]
    # the Cholesky certificate itself (linalg) serves the LMI proof and the certified operator norms only
    assert sorted(where[r"\bcertify_psd\("]) == ["lipcert/linalg.py", "lipcert/sdp/verify.py"]


def test_the_public_api_is_curated_and_complete() -> None:
    import lipcert

    assert set(lipcert.__all__) == set(lipcert._EXPORTS) | {"__version__"}
    for name in lipcert.__all__:
        assert getattr(lipcert, name) is not None
    assert issubclass(lipcert.SolverError, lipcert.LipcertError)


@pytest.mark.parametrize("statement", ["import lipcert", "import lipcert.cli"])
def test_importing_lipcert_stays_light(statement: str) -> None:
    """`lipcert --help` must stay instant: neither the package nor the CLI imports torch, cvxpy or numpy."""
    code = f"{statement}; import sys; print(sorted({{'torch', 'cvxpy', 'numpy', 'scipy'}} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


def test_benchmarks_are_a_package_over_the_public_api() -> None:
    bench = REPO / "benchmarks"
    assert (bench / "__init__.py").is_file()
    for path in bench.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "sys.path" not in text, path.name
        assert not re.search(r"^from bench_\w+ import|^import bench_\w+", text, re.M), path.name
