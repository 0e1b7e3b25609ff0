"""The hook's own state files replaced by something that is not a file: it must neither hang
(a FIFO) nor read without end (/dev/zero); it ignores them, rebuilds and still judges right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_hook import BROKEN, HEALTHY, prompt

from rewind_lsp.index import state_file


def run(payload: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rewind_lsp", "hook"],
        input=json.dumps(payload), text=True, capture_output=True, env=env, timeout=20,
    )


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("text", [BROKEN, HEALTHY], ids=["broken", "healthy"])
def test_a_state_file_that_is_not_a_file_is_ignored(tmp_path: Path, kind: str, text: str) -> None:
    env = {
        **os.environ,
        "REWIND_LSP_CACHE_DIR": str(tmp_path / "cache"),
        "REWIND_LSP_LOG_DIR": str(tmp_path / "logs"),
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
    }
    transcript = tmp_path / "s.jsonl"
    transcript.write_text(text)
    state = state_file(tmp_path / "cache" / "index", str(transcript))
    state.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(state)
    else:
        state.symlink_to("/dev/zero")
    done = run(prompt(transcript), env)  # a hang or an endless read fails by the timeout
    assert done.returncode == 0 and "Traceback" not in done.stderr
    if text is BROKEN:
        assert json.loads(done.stdout)["decision"] == "block"
    else:
        assert done.stdout == ""
