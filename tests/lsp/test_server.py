"""End-to-end: the real server over stdio, real files, real watchdog events."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from pathlib import Path

import pytest
from lsp_support import (
    BROKEN,
    BROKEN_LINES,
    HEALTHY,
    LOG_400,
    LOG_DIR,
    PRESCANNED,
    PROJECTS,
    diagnostics_for,
    entry,
    open_doc,
    pulls,
    tool_use,
    wait_pushed,
)
from lsprotocol import types
from pytest_lsp import LanguageClient

from rewind_lsp.check import check_transcript_file


def supports_show_document(client: LanguageClient) -> bool:
    window = client.capabilities.window if client.capabilities else None
    return bool(window and window.show_document and window.show_document.support)


async def until(predicate, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def session_dir() -> Path:
    d = PROJECTS / f"p-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    return d


def write(folder: Path, text: str, name: str | None = None) -> Path:
    path = folder / (name or f"{uuid.uuid4()}.jsonl")
    path.write_text(text)
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_broken_transcript_error_at_the_exact_block(client: LanguageClient) -> None:
    path = write(session_dir(), BROKEN)
    uri = open_doc(client, path)
    diags = await diagnostics_for(client, uri)
    assert len(diags) == 1
    d = diags[0]
    assert d.code == "orphan-tool-use"
    assert d.severity == types.DiagnosticSeverity.Error
    assert d.source == "rewind-lsp"
    assert d.range.start.line == 1
    assert d.range.start.character == BROKEN_LINES[1].index('{"type":"tool_use"')
    assert d.code_description is not None and d.code_description.href.endswith("tool-pairing.md")
    assert d.related_information and d.related_information[0].location.range.start.line == 2
    assert "toolu_01ABC" in d.message


async def test_healthy_transcript_has_no_diagnostics(client: LanguageClient) -> None:
    path = write(session_dir(), HEALTHY)
    uri = open_doc(client, path)
    if pulls(client):
        report = await client.text_document_diagnostic_async(
            types.DocumentDiagnosticParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        assert list(report.items) == []  # type: ignore[union-attr]
    else:
        assert await wait_pushed(client, uri, want=False) == []


async def test_hover_names_the_tool_use_id(client: LanguageClient) -> None:
    path = write(session_dir(), BROKEN)
    uri = open_doc(client, path)
    await diagnostics_for(client, uri)
    hover = await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=1, character=160)
        )
    )
    assert hover is not None
    text = hover.contents.value  # type: ignore[union-attr]
    assert "toolu_01ABC" in text
    assert "tool_result" in text and "Rewind" in text
    nothing = await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=0, character=1)
        )
    )
    assert nothing is None


async def test_code_actions_and_rewind_writes_a_clean_session(client: LanguageClient) -> None:
    folder = session_dir()
    path = write(folder, BROKEN)
    before = sha(path)
    uri = open_doc(client, path)
    diags = await diagnostics_for(client, uri)
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=diags[0].range,
            context=types.CodeActionContext(diagnostics=diags),
        )
    )
    titles = [a.title for a in actions]  # type: ignore[union-attr]
    # Each repair says what it costs; the preferred one is the one that loses nothing.
    assert titles == ["Show fix steps", "Repair session (keeps everything)", "Rewind session (drops 2 of 3 messages)",
                      "Copy resume command"]
    assert [a.title for a in actions if a.is_preferred] == ["Repair session (keeps everything)"]  # type: ignore[union-attr]
    assert all(a.kind == types.CodeActionKind.QuickFix for a in actions)  # type: ignore[union-attr]
    rewind = next(a for a in actions if a.title.startswith("Rewind"))  # type: ignore[union-attr]
    assert rewind.command is not None
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=rewind.command.command, arguments=rewind.command.arguments)
    )
    new = Path(result["path"])
    assert new.parent == folder and new.exists() and new != path
    assert result["resumeCommand"] == f"claude --resume {new.stem}"
    assert not [f for f in check_transcript_file(str(new)).findings if f.severity.label == "error"]
    assert sha(path) == before
    if supports_show_document(client):
        await until(lambda: any(d.uri == new.as_uri() for d in client.shown_documents))
    else:
        assert not client.shown_documents  # never sent to a client that cannot show documents
    assert any(result["resumeCommand"] in m.message for m in client.messages)
    copied = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="rewind-lsp.copyResumeCommand", arguments=[uri])
    )
    assert copied["resumeCommand"] == result["resumeCommand"]


async def test_repair_keeps_every_prompt(client: LanguageClient) -> None:
    folder = session_dir()
    path = write(folder, BROKEN)
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="rewind-lsp.repair", arguments=[path.as_uri()])
    )
    text = Path(result["path"]).read_text()
    assert "list files" in text and "hello?" in text
    assert "[Tool result missing due to internal error]" in text


async def test_show_fix_opens_the_fix_page(client: LanguageClient) -> None:
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="rewind-lsp.showFix", arguments=["orphan-tool-use"])
    )
    assert result["uri"].endswith("tool-pairing.md")
    assert Path(result["uri"].removeprefix("file://")).read_text().startswith("# Fix")
    if supports_show_document(client):
        await until(lambda: any(d.uri == result["uri"] for d in client.shown_documents))


async def test_commands_refuse_paths_outside_the_served_roots(client: LanguageClient, tmp_path: Path) -> None:
    outside = tmp_path / f"{uuid.uuid4()}.jsonl"
    outside.write_text(BROKEN)
    escape = PROJECTS / ".." / ".." / ".." / outside.relative_to("/")
    link = session_dir() / "link.jsonl"
    link.symlink_to(outside)
    for arg in (outside.as_uri(), str(escape), str(link), 42, None):
        result = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="rewind-lsp.rewind", arguments=[arg])
        )
        assert "error" in result
    assert sorted(p.name for p in tmp_path.iterdir()) == [outside.name]


async def test_unopened_watched_log_gets_a_diagnostic_within_a_second(client: LanguageClient) -> None:
    log = LOG_DIR / f"claude-{uuid.uuid4().hex[:8]}.log"
    log.write_text("starting claude\n")
    await asyncio.sleep(0.3)  # let the watcher see the file first
    started = time.monotonic()
    with log.open("a") as f:
        f.write("  \x1b[31m⎿  " + LOG_400)
    diags = await wait_pushed(client, log.as_uri(), timeout=3)
    elapsed = time.monotonic() - started
    assert [d.code for d in diags] == ["tool-use-concurrency-400"]
    assert diags[0].range.start.line == 1
    assert elapsed < 1.0, f"took {elapsed:.2f}s"


async def test_newly_broken_watched_transcript_asks_and_repairs(client: LanguageClient) -> None:
    folder = session_dir()
    path = write(folder, HEALTHY)
    await asyncio.sleep(0.3)
    client.answers.append("Repair")  # type: ignore[attr-defined]
    with path.open("a") as f:
        f.write(entry("assistant", "a3", "a2", [tool_use("toolu_01LATE")], "msg_3") + "\n")
        f.write(entry("user", "u3", "a3", "are you there?") + "\n")
    diags = await wait_pushed(client, path.as_uri(), timeout=3)
    assert [d.code for d in diags] == ["orphan-tool-use"] and diags[0].range.start.line == 4
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while loop.time() < deadline and len(list(folder.glob("*.jsonl"))) < 2:
        await asyncio.sleep(0.05)
    requests = client.message_requests  # type: ignore[attr-defined]
    assert len(requests) == 1 and "hit" not in requests[0].message and path.name in requests[0].message
    assert [a.title for a in requests[0].actions] == ["Rewind", "Repair", "Show fix", "Ignore"]
    repaired = [p for p in folder.glob("*.jsonl") if p != path]
    assert len(repaired) == 1
    assert not [f for f in check_transcript_file(str(repaired[0])).findings if f.severity.label == "error"]


async def test_startup_scan_reports_existing_broken_sessions(client: LanguageClient) -> None:
    diags = await wait_pushed(client, PRESCANNED.as_uri(), timeout=5)
    assert [d.code for d in diags] == ["orphan-tool-use"]
    if client.capabilities.window and client.capabilities.window.work_done_progress:  # type: ignore[union-attr]
        assert client.progress_reports, "no $/progress for the startup scan"
    # The scan ends with one summary; sessions broken before the server started are listed, not announced.
    await until(lambda: any("broken Claude Code session" in m.message for m in client.messages), timeout=10)
    assert not client.message_requests  # type: ignore[attr-defined]


async def test_workspace_pull_lists_unopened_files(client: LanguageClient) -> None:
    await wait_pushed(client, PRESCANNED.as_uri(), timeout=5)
    report = await client.workspace_diagnostic_async(types.WorkspaceDiagnosticParams(previous_result_ids=[]))
    uris = {item.uri for item in report.items}
    assert PRESCANNED.as_uri() in uris


async def test_configuration_change_disables_a_rule(client: LanguageClient) -> None:
    path = write(session_dir(), BROKEN)
    uri = open_doc(client, path)
    assert await diagnostics_for(client, uri)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={"rewind-lsp": {"disabledRules": ["orphan-tool-use"], "watchRoots": [str(PROJECTS), str(LOG_DIR)]}}
        )
    )
    await asyncio.sleep(0.5)
    if pulls(client):
        report = await client.text_document_diagnostic_async(
            types.DocumentDiagnosticParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        assert list(report.items) == []  # type: ignore[union-attr]
    else:
        assert await wait_pushed(client, uri, want=False) == []


async def test_bad_settings_give_a_message_and_the_server_keeps_serving(client: LanguageClient) -> None:
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={
                "rewind-lsp": {
                    "severity": {"orphan-tool-use": "catastrophic"},
                    "logGlobs": "not-a-list",
                    "watchRoots": [str(PROJECTS), str(LOG_DIR)],
                }
            }
        )
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3
    while loop.time() < deadline and not any("bad settings" in m.message for m in client.messages):
        await asyncio.sleep(0.05)
    assert any("bad settings" in m.message and "severity" in m.message for m in client.messages)
    path = write(session_dir(), BROKEN)
    uri = open_doc(client, path)
    assert [d.code for d in await diagnostics_for(client, uri)] == ["orphan-tool-use"]


async def test_terminal_output_streamed_by_a_client(client: LanguageClient) -> None:
    name = f"term-{uuid.uuid4().hex[:6]}"
    client.protocol.notify("rewindLsp/terminalOutput", {"terminal": name, "data": "$ claude\r\n"})
    client.protocol.notify("rewindLsp/terminalOutput", {"terminal": name, "data": "\x1b[31m● " + LOG_400})
    log = LOG_DIR / f"terminal-{name}.log"
    diags = await wait_pushed(client, log.as_uri(), timeout=3)
    assert [d.code for d in diags] == ["tool-use-concurrency-400"]
    assert log.stat().st_mode & 0o777 == 0o600  # terminal output may hold secrets: owner-only


@pytest.mark.parametrize("method", ["rewindLsp/unknown", "textDocument/unknownThing"])
async def test_unknown_requests_are_answered_and_the_server_lives(client: LanguageClient, method: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - any JSON-RPC error response is right
        await asyncio.wait_for(client.protocol.send_request_async(method, {}), 5)
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="rewind-lsp.showFix", arguments=["no-such-rule"])
    )
    assert "error" in result


async def test_workspace_pull_is_held_until_something_changes(client: LanguageClient) -> None:
    await wait_pushed(client, PRESCANNED.as_uri(), timeout=5)
    known: dict[str, str] = {}
    for _ in range(10):  # until the startup scan has settled, a pull may see news
        held = asyncio.ensure_future(
            client.workspace_diagnostic_async(
                types.WorkspaceDiagnosticParams(
                    previous_result_ids=[types.PreviousResultId(uri=u, value=v) for u, v in known.items()]
                )
            )
        )
        await asyncio.sleep(0.5)
        if not held.done():
            break
        known.update({i.uri: i.result_id for i in held.result().items if i.result_id})
    assert known, "full reports carry result ids"
    assert not held.done(), "a pull with nothing new must wait"
    path = write(session_dir(), BROKEN)
    report = await asyncio.wait_for(held, 5)
    full = {i.uri: i for i in report.items if isinstance(i, types.WorkspaceFullDocumentDiagnosticReport)}
    assert [d.code for d in full[path.as_uri()].items] == ["orphan-tool-use"]
    assert PRESCANNED.as_uri() not in full  # unchanged, reported as such


async def test_terminal_buffer_rewinds_the_session_it_names(client: LanguageClient) -> None:
    folder = session_dir()
    named = write(folder, BROKEN)
    newer = write(session_dir(), BROKEN)  # a newer broken session that must NOT be picked
    newer.touch()
    uri = "term://~/proj//4242:claude"
    text = f"$ claude --resume {named.stem}\r\n" + "  ⎿  " + LOG_400
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="", version=1, text=text)
        )
    )
    if pulls(client):
        await asyncio.sleep(0.2)
        report = await client.text_document_diagnostic_async(
            types.DocumentDiagnosticParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        diags = list(report.items)  # type: ignore[union-attr]
    else:
        diags = await wait_pushed(client, uri)
    assert [d.code for d in diags] == ["tool-use-concurrency-400"] and diags[0].range.start.line == 1
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=diags[0].range,
            context=types.CodeActionContext(diagnostics=diags),
        )
    )
    rewind = next(a for a in actions if a.title.startswith("Rewind"))  # type: ignore[union-attr]
    assert rewind.command is not None and list(rewind.command.arguments or []) == [named.as_uri()]
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="rewind-lsp.rewind", arguments=[uri])
    )
    assert Path(result["path"]).parent == folder


async def test_live_transcript_is_followed_append_by_append(client: LanguageClient) -> None:
    """A session being written: each append is checked (incrementally), a finding stays put while
    the session goes on, and a rewrite of the file is noticed."""
    folder = session_dir()
    path = write(folder, HEALTHY)
    await asyncio.sleep(0.3)
    with path.open("a") as f:
        f.write(entry("assistant", "a3", "a2", [tool_use("toolu_01LIVE")], "msg_3") + "\n")
        f.write(entry("user", "u3", "a3", "still there?") + "\n")
    diags = await wait_pushed(client, path.as_uri(), timeout=3)
    assert [(d.code, d.range.start.line) for d in diags] == [("orphan-tool-use", 4)]
    for i in range(4, 8):
        with path.open("a") as f:
            f.write(entry("assistant", f"a{i}", f"u{i - 1}", [{"type": "text", "text": "yes"}], f"msg_{i}") + "\n")
            f.write(entry("user", f"u{i}", f"a{i}", "go on") + "\n")
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    diags = await wait_pushed(client, path.as_uri(), timeout=3)
    assert [(d.code, d.range.start.line) for d in diags] == [("orphan-tool-use", 4)]
    # Rewritten in place with a healthy, longer session: nothing of the old findings may stay.
    path.write_text(HEALTHY + entry("user", "u9", "a2", "thanks") + "\n")
    assert await wait_pushed(client, path.as_uri(), timeout=3, want=False) == []
