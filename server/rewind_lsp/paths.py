"""Where rewind-lsp keeps its own files."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def user_log_dir() -> Path:
    """Captured terminal logs and the hook's log; REWIND_LSP_LOG_DIR overrides it (tests do)."""
    env = os.environ.get("REWIND_LSP_LOG_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_log_dir("rewind-lsp", appauthor=False))


def user_cache_dir() -> Path:
    env = os.environ.get("REWIND_LSP_CACHE_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("rewind-lsp", appauthor=False))
