"""Open documents may be read anywhere, but Rewind/Repair write only beside transcripts under the
watch roots: an open document outside them (even one that does not exist) widens nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from lsp_support import BROKEN, diagnostics_for, open_doc
from lsprotocol import types
from pytest_lsp import LanguageClient


def outside_transcript() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="rewind-lsp-outside-"))
    path = folder / "33333333-3333-4333-8333-333333333333.jsonl"
    path.write_text(BROKEN)
    return path


def refusal(path: Path) -> dict[str, str]:
    return {"error": f"rewind-lsp: {path} is outside the watched folders (watchRoots): "
                     "rewind-lsp rewinds and repairs only sessions there"}


@pytest.mark.asyncio
async def test_open_document_outside_the_roots_is_read_never_written_beside(client: LanguageClient) -> None:
    path = outside_transcript()
    uri = open_doc(client, path)
    assert [d.code for d in await diagnostics_for(client, uri)] == ["orphan-tool-use"]  # read: yes
    for command in ("rewind-lsp.rewind", "rewind-lsp.repair"):
        result = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=command, arguments=[uri])
        )
        assert result == refusal(path)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # nothing written beside it


@pytest.mark.asyncio
async def test_a_document_at_the_top_makes_no_root_of_it(client: LanguageClient) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri="file:///x.jsonl", language_id="jsonl", version=1, text="")
        )
    )
    path = outside_transcript()
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="rewind-lsp.repair", arguments=[path.as_uri()])
    )
    assert result == refusal(path)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
