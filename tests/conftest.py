"""Every test's processes keep their cache (hook states, repair records) in a scratch folder, never
the real home folder's."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _scratch_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    if "REWIND_LSP_CACHE_DIR" not in os.environ:
        os.environ["REWIND_LSP_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
