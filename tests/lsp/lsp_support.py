"""Shared pieces of the language server tests: scratch folders, transcripts, waiting for diagnostics."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from lsprotocol import types
from pytest_lsp import LanguageClient

# One scratch home for the servers of this session: nothing touches the real ~/.claude.
ROOT = Path(tempfile.mkdtemp(prefix="rewind-lsp-tests-"))
CLAUDE_DIR = ROOT / "claude"
PROJECTS = CLAUDE_DIR / "projects"
LOG_DIR = ROOT / "logs"
PROJECTS.mkdir(parents=True)
LOG_DIR.mkdir(parents=True)

SESSION = "11111111-1111-4111-8111-111111111111"


def entry(kind: str, uid: str, parent: str | None, content: object, msg_id: str | None = None, **extra: object) -> str:
    message: dict[str, object] = {"role": kind, "content": content}
    if msg_id:
        message["id"] = msg_id
    return json.dumps(
        {
            "type": kind,
            "uuid": uid,
            "parentUuid": parent,
            "sessionId": SESSION,
            "cwd": "/tmp/proj",
            "message": message,
            **extra,
        },
        separators=(",", ":"),
    )


def tool_use(tid: str) -> dict[str, object]:
    return {"type": "tool_use", "id": tid, "name": "Bash", "input": {"command": "ls"}}


def tool_result(tid: str) -> dict[str, object]:
    return {"type": "tool_result", "tool_use_id": tid, "content": "ok"}


BROKEN_LINES = [
    entry("user", "u1", None, "list files"),
    entry("assistant", "a1", "u1", [tool_use("toolu_01ABC")], "msg_1"),
    entry("user", "u2", "a1", "hello?"),
]
BROKEN = "\n".join(BROKEN_LINES) + "\n"
HEALTHY = (
    "\n".join(
        [
            entry("user", "u1", None, "list files"),
            entry("assistant", "a1", "u1", [tool_use("toolu_01OK")], "msg_1"),
            entry("user", "u2", "a1", [tool_result("toolu_01OK")]),
            entry("assistant", "a2", "u2", [{"type": "text", "text": "done"}], "msg_2"),
        ]
    )
    + "\n"
)
LOG_400 = "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation.\n"

# Present before the servers start: the startup scan must find it.
PRESCANNED = PROJECTS / "prescanned" / "22222222-2222-4222-8222-222222222222.jsonl"
PRESCANNED.parent.mkdir(parents=True)
PRESCANNED.write_text(BROKEN)

CACHE_DIR = ROOT / "cache"
ENV = {**os.environ, "CLAUDE_CONFIG_DIR": str(CLAUDE_DIR), "REWIND_LSP_LOG_DIR": str(LOG_DIR),
       "REWIND_LSP_CACHE_DIR": str(CACHE_DIR)}
SERVER = [sys.executable, "-m", "rewind_lsp", "serve"]
PROFILES = ["visual-studio-code", "neovim@v0.10.0", "neovim@v0.7.0"]


def pulls(client: LanguageClient) -> bool:
    caps = client.capabilities
    return bool(caps and caps.text_document and caps.text_document.diagnostic is not None)


async def diagnostics_for(client: LanguageClient, uri: str, timeout: float = 5.0) -> list[types.Diagnostic]:
    """The diagnostics the client would show for `uri`: pulled if it pulls, else the last push."""
    if pulls(client) and uri in client_open_uris(client):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            report = await client.text_document_diagnostic_async(
                types.DocumentDiagnosticParams(text_document=types.TextDocumentIdentifier(uri=uri))
            )
            items = list(report.items)  # type: ignore[union-attr]
            if items or loop.time() > deadline:
                return items
            await asyncio.sleep(0.05)
    return await wait_pushed(client, uri, timeout)


async def wait_pushed(
    client: LanguageClient, uri: str, timeout: float = 5.0, want: bool = True
) -> list[types.Diagnostic]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        got = list(client.diagnostics.get(uri, []))
        if bool(got) == want and (uri in client.diagnostics):
            return got
        await asyncio.sleep(0.02)
    return list(client.diagnostics.get(uri, []))


_OPEN: dict[int, set[str]] = {}


def client_open_uris(client: LanguageClient) -> set[str]:
    return _OPEN.setdefault(id(client), set())


def open_doc(client: LanguageClient, path: Path, language: str = "jsonl") -> str:
    uri = path.as_uri()
    client_open_uris(client).add(uri)
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language, version=1, text=path.read_text())
        )
    )
    return uri
