"""The check engine's modules form a DAG (read -> rebuild -> validate -> findings, then the
incremental state, the parallel check and the entry points), none imports another's private
names, and each one imports alone in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "server" / "rewind_lsp"
CORE = (
    "transcript", "conversation", "validate", "verdict", "locate", "findings", "links", "filemark", "gcpause",
    "incremental", "parallel", "check", "logscan", "rules", "children", "copycheck", "census", "holders",
)


def _imports(module: str) -> list[tuple[str, list[str]]]:
    """(module, names) of every `from .module import names` in `module`, in functions too."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module is None:  # `from . import locate`
                found.extend((a.name, []) for a in node.names)
            else:
                found.append((node.module, [a.name for a in node.names]))
    return found


def test_core_modules_import_no_private_names_of_each_other() -> None:
    private = [
        f"{module} imports {name} from {source}"
        for module in CORE
        for source, names in _imports(module)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


def test_core_modules_form_a_dag() -> None:
    graph = {m: {source for source, _ in _imports(m) if source in CORE} for m in CORE}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")
    # The pipeline, in the order a check runs it.
    for before, after in [("transcript", "conversation"), ("conversation", "validate"), ("validate", "verdict"),
                          ("verdict", "incremental"), ("incremental", "parallel"), ("parallel", "check")]:
        assert order.index(before) < order.index(after), (before, after)
    assert "check" not in graph["incremental"] | graph["parallel"] | graph["verdict"]


@pytest.mark.parametrize("module", CORE)
def test_each_core_module_imports_alone(module: str) -> None:
    r = subprocess.run([sys.executable, "-c", f"import rewind_lsp.{module}"], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "")
