"""Fixtures of the reliability tests, the fuzz case counters and their summary."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rel_support import FAULTS, FUZZ_CASES


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process code never touches the real Claude config dir, log dir or cache dir."""
    root = tmp_path_factory.mktemp("relhome")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(root / "claude"))
    monkeypatch.setenv("REWIND_LSP_LOG_DIR", str(root / "logs"))
    monkeypatch.setenv("REWIND_LSP_CACHE_DIR", str(root / "cache"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if not FUZZ_CASES and not FAULTS:
        return
    tr = terminalreporter
    tr.section("reliability: cases run")
    for name, n in sorted(FUZZ_CASES.items()):
        tr.write_line(f"fuzz  {name}: {n} cases")
    if FUZZ_CASES:
        total = sum(n for name, n in FUZZ_CASES.items() if "→" not in name)  # "→": a breakdown, not more cases
        tr.write_line(f"fuzz  total: {total} cases")
    for name, n in sorted(FAULTS.items()):
        tr.write_line(f"fault {name}: {n}")
    out = os.environ.get("REWIND_RELIABILITY_COUNTS")
    if out:  # for SECURITY.md: REWIND_RELIABILITY_COUNTS=counts.json pytest tests/reliability
        import json

        Path(out).write_text(json.dumps({"fuzz": FUZZ_CASES, "faults": FAULTS}, indent=2, sort_keys=True))
