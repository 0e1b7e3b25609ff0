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


@pytest.mark.parametrize("field", ["version", "rules", "path"])
def test_a_state_file_of_another_release_is_not_trusted(tmp_path: Path, field: str) -> None:
    """A well-formed state that another release (or rule set, or file) wrote, claiming an error in a
    healthy session: the hook must judge the session, not the claim, and save its own state."""
    import hashlib

    import msgspec

    from rewind_lsp import __version__
    from rewind_lsp.findings import Finding, Position, Severity
    from rewind_lsp.index import read_saved

    env = {
        **os.environ,
        "REWIND_LSP_CACHE_DIR": str(tmp_path / "cache"),
        "REWIND_LSP_LOG_DIR": str(tmp_path / "logs"),
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
    }
    transcript = tmp_path / "s.jsonl"
    transcript.write_text(HEALTHY)
    assert run(prompt(transcript), env).stdout == ""
    state = state_file(tmp_path / "cache" / "index", str(transcript))
    read = read_saved(state)
    assert read is not None
    p = Position(2, 1, 0)
    claim = [Finding("orphan-tool-use", Severity.ERROR, "an error no check found", p, p, "toolu_01LIE",
                     facts={"conversation": "main conversation"})]
    other = {"version": "0.0.1-other", "rules": "set-0000", "path": str(tmp_path / "other.jsonl")}
    payload = msgspec.msgpack.encode(msgspec.structs.replace(read[0], findings=claim, **{field: other[field]}))
    state.write_bytes(hashlib.blake2b(payload, digest_size=16).digest() + payload)
    done = run(prompt(transcript), env)
    assert (done.returncode, done.stdout) == (0, "") and "Traceback" not in done.stderr
    again = read_saved(state)
    assert again is not None and again[0].version == __version__ and again[0].findings == []
