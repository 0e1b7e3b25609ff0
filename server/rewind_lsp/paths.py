"""Where rewind-lsp keeps its own files."""

from __future__ import annotations

import os
from pathlib import Path

# platformdirs is imported by the functions: ~10 ms that `check` and the server's start need not pay.


def user_log_dir() -> Path:
    """Captured terminal logs and the hook's log; REWIND_LSP_LOG_DIR overrides it (tests do)."""
    env = os.environ.get("REWIND_LSP_LOG_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_log_dir("rewind-lsp", appauthor=False))


def user_cache_dir() -> Path:
    env = os.environ.get("REWIND_LSP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("rewind-lsp", appauthor=False))
