"""The hover on a broken transcript, whole, for a client that reads markdown and for one that asks for
plain text only (Emacs's eglot without markdown-mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rel_support import SID, broken, raw_server

from rewind_lsp.rules import load_rules

FIX = load_rules().get("orphan-tool-use").fix_uri  # type: ignore[union-attr]
MARKDOWN = (
    "**tool_use without a tool_result in the next message**: `messages.1`, `toolu_01ABC`\n"
    "\n"
    "- `orphan-tool-use` (error) at line 2, in the main conversation\n"
    "- line 3: the message that should begin with its tool_result\n"
    "- Repair (patch) or Rewind (truncate) writes a fixed copy of the session; the original stays\n"
    f"- [Fix steps]({FIX})"
)
PLAINTEXT = (
    "tool_use without a tool_result in the next message: messages.1, toolu_01ABC\n"
    "orphan-tool-use (error) at line 2, in the main conversation\n"
    "line 3: the message that should begin with its tool_result\n"
    "Repair (patch) or Rewind (truncate) writes a fixed copy of the session; the original stays\n"
    f"Fix steps: {FIX}"
)


@pytest.mark.parametrize(("formats", "kind", "value"), [
    (["markdown", "plaintext"], "markdown", MARKDOWN),
    (["markdown"], "markdown", MARKDOWN),
    (["plaintext"], "plaintext", PLAINTEXT),
    (["plaintext", "markdown"], "plaintext", PLAINTEXT),
    (None, "plaintext", PLAINTEXT),
])
def test_hover_in_the_clients_format(tmp_path: Path, formats: list[str] | None, kind: str, value: str) -> None:
    transcript = tmp_path / f"{SID}.jsonl"
    text = broken()
    transcript.write_text(text)
    hover: dict[str, Any] = {} if formats is None else {"contentFormat": formats}
    with raw_server(tmp_path, capabilities={"textDocument": {"hover": hover}}) as srv:
        uri = srv.open(transcript)
        reply = srv.request("textDocument/hover",
                            {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 10}})
    line = text.splitlines()[1]
    start, end = line.index('{"type":"tool_use"'), line.index("}]") + 1  # the tool_use block
    assert reply == {
        "jsonrpc": "2.0",
        "id": reply["id"],
        "result": {
            "contents": {"kind": kind, "value": value},
            "range": {"start": {"line": 1, "character": start}, "end": {"line": 1, "character": end}},
        },
    }
    assert value.count("\n") < 8
