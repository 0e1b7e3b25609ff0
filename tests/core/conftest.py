"""Fixtures for the core tests (helpers live in core_support.py)."""

from __future__ import annotations

import pytest
from core_support import Builder


@pytest.fixture
def b() -> Builder:
    return Builder()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the real Claude config dir or the user log dir."""
    root = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(root / "claude"))
    monkeypatch.setenv("REWIND_LSP_LOG_DIR", str(root / "logs"))
