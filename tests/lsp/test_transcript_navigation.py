"""The transcript as a document, over stdio with the real server: outline, jumps, hints, lenses."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from lsp_support import PROJECTS, diagnostics_for, entry, open_doc, tool_result, tool_use
from lsprotocol import types
from pytest_lsp import LanguageClient

from rewind_lsp.check import check_transcript_file

CORPUS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "real").resolve()

LINES = [
    entry("user", "u1", None, "list the files"),
    entry("assistant", "a1", "u1", [tool_use("toolu_01LS")], "msg_1"),
    entry("user", "u2", "a1", [tool_result("toolu_01LS")]),
    entry("assistant", "a2", "u2", [{"type": "text", "text": "Here they are."}], "msg_2"),
    entry("user", "u3", "a2", "now run the tests"),
    entry("assistant", "a3", "u3", [tool_use("toolu_01RUN")], "msg_3"),
    entry("user", "u4", "a3", "hello?"),
]


def _open(client: LanguageClient, lines: list[str]) -> str:
    folder = PROJECTS / f"nav-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    path = folder / f"{uuid.uuid4()}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return open_doc(client, path)


def _doc(uri: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri=uri)


async def test_outline_jumps_hints_and_lenses(client: LanguageClient) -> None:
    uri = _open(client, LINES)
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(text_document=_doc(uri)))
    assert symbols is not None
    assert [(s.name, s.detail) for s in symbols] == [  # type: ignore[union-attr]
        ("list the files", "messages.0"), ("now run the tests", "messages.4"), ("hello?", "messages.6")]
    first, second, _ = symbols
    assert [(c.name, c.detail) for c in first.children or []] == [  # type: ignore[union-attr]
        ("Bash ls ✓", "toolu_01LS · result line 3"), ("Here they are.", "reply")]
    assert [(c.name, c.detail) for c in second.children or []] == [  # type: ignore[union-attr]
        ("Bash ls ✗", "toolu_01RUN · no result")]

    result_line = LINES[2]
    at = result_line.index("toolu_01LS")  # ASCII line: the same column in every encoding
    defs = await client.text_document_definition_async(
        types.DefinitionParams(text_document=_doc(uri), position=types.Position(2, at)))
    assert isinstance(defs, list) and len(defs) == 1
    use_start = LINES[1].index('{"type":"tool_use"')
    assert (defs[0].uri, defs[0].range.start) == (uri, types.Position(1, use_start))  # type: ignore[union-attr]
    refs = await client.text_document_references_async(types.ReferenceParams(
        context=types.ReferenceContext(include_declaration=False), text_document=_doc(uri),
        position=types.Position(1, use_start + 2)))
    assert [r.range.start.line for r in refs or []] == [2]

    hints = await client.text_document_inlay_hint_async(types.InlayHintParams(
        text_document=_doc(uri), range=types.Range(types.Position(0, 0), types.Position(6, 0))))
    assert [(h.position.line, h.label) for h in hints or []] == [
        (0, "messages.0"), (1, "messages.1 → result line 3"), (2, "messages.2"), (3, "messages.3"),
        (4, "messages.4"), (5, "messages.5 ✗ toolu_01RUN: no result"), (6, "messages.6")]

    lenses = await client.text_document_code_lens_async(types.CodeLensParams(text_document=_doc(uri)))
    assert [(lens.range.start.line, lens.command.title, list(lens.command.arguments or []))  # type: ignore[union-attr]
            for lens in lenses or []] == [
        (0, "Repair session (keeps everything)", [uri]),
        (4, "Rewind to here (drops 3 messages)", [uri, "5"]),
    ]
    folds = await client.text_document_folding_range_async(types.FoldingRangeParams(text_document=_doc(uri)))
    assert [(f.start_line, f.end_line) for f in folds or []] == [(0, 3), (1, 2), (4, 5)]
    found = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="tests"))
    assert [(s.name, s.location.uri) for s in found or []] == [("now run the tests", uri)]  # type: ignore[union-attr]


def _rollout_line(n: int, kind: str, payload: dict[str, object]) -> str:
    return json.dumps({"timestamp": f"2026-11-30T10:00:{n:02d}.000Z", "type": kind, "payload": payload},
                      separators=(",", ":"))


def _prompt(n: int, text: str) -> str:
    return _rollout_line(n, "response_item", {"type": "message", "role": "user",
                                              "content": [{"type": "input_text", "text": text}]})


ROLLOUT = [
    _rollout_line(0, "session_meta", {"id": "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "cwd": "/tmp/p"}),
    _prompt(1, "<environment_context>\n  <cwd>/tmp/p</cwd>\n</environment_context>"),
    _prompt(2, "list the files"),
    _rollout_line(3, "response_item", {"type": "function_call", "name": "shell", "call_id": "call_A1",
                                       "arguments": json.dumps({"command": ["bash", "-lc", "ls -la"]})}),
    _rollout_line(4, "response_item", {"type": "custom_tool_call", "name": "apply_patch", "call_id": "call_B2",
                                       "input": "*** Begin Patch\n*** End Patch"}),
    _rollout_line(5, "response_item", {"type": "custom_tool_call_output", "call_id": "call_B2", "output": "ok"}),
    _rollout_line(6, "response_item", {"type": "function_call_output", "call_id": "call_A1", "output": "a b"}),
    _rollout_line(7, "response_item", {"type": "message", "role": "assistant",
                                       "content": [{"type": "output_text", "text": "Two files."}]}),
    _prompt(8, "now run the tests"),
    _rollout_line(9, "response_item", {"type": "local_shell_call", "call_id": "call_C3", "status": "completed",
                                       "action": {"type": "exec", "command": ["npm", "test"]}}),
    _prompt(10, "hello?"),
]


async def test_a_codex_rollout_reads_as_a_document_without_messages_n(client: LanguageClient) -> None:
    """A rollout's own map: prompts (not Codex's injected context), calls of every kind with their outputs,
    jumps between a call and its output (at the line's payload), hints saying where each output is,
    no `messages.N` (the Responses API names a call by its call_id), rewind-to-here where `rewind --to` takes it."""
    folder = PROJECTS / f"nav-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    path = folder / "rollout-2026-11-30T10-00-00-0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b.jsonl"
    path.write_text("\n".join(ROLLOUT) + "\n")
    uri = open_doc(client, path)
    await diagnostics_for(client, uri)
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(text_document=_doc(uri)))
    assert [(s.name, s.detail, [(c.name, c.detail) for c in s.children or []])  # type: ignore[union-attr]
            for s in symbols or []] == [
        ("list the files", "2026-11-30T10:00:02.000Z", [
            ("shell ls -la ✓", "call_A1 · output line 7"), ("apply_patch *** Begin Patch ✓", "call_B2 · output line 6"),
            ("Two files.", "reply")]),
        ("now run the tests", "2026-11-30T10:00:08.000Z", [("local_shell npm test ✗", "call_C3 · no output")]),
        ("hello?", "2026-11-30T10:00:10.000Z", []),
    ]
    payload = ROLLOUT[3].index('{"type":"function_call"')
    defs = await client.text_document_definition_async(
        types.DefinitionParams(text_document=_doc(uri), position=types.Position(6, ROLLOUT[6].index("call_A1"))))
    assert [(d.uri, d.range.start, d.range.end) for d in defs or []] == [  # type: ignore[union-attr]
        (uri, types.Position(3, payload), types.Position(3, len(ROLLOUT[3]) - 1))]
    refs = await client.text_document_references_async(types.ReferenceParams(
        context=types.ReferenceContext(include_declaration=False), text_document=_doc(uri),
        position=types.Position(3, payload + 2)))
    output = ROLLOUT[6].index('{"type":"function_call_output"')
    assert [r.range.start for r in refs or []] == [types.Position(6, output)]
    hints = await client.text_document_inlay_hint_async(types.InlayHintParams(
        text_document=_doc(uri), range=types.Range(types.Position(0, 0), types.Position(10, 0))))
    assert [(h.position.line, h.label) for h in hints or []] == [
        (3, "→ output line 7"), (4, "→ output line 6"), (9, "✗ call_C3: no output")]
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(text_document=_doc(uri)))
    assert [(lens.range.start.line, lens.command.title, list(lens.command.arguments or []))  # type: ignore[union-attr]
            for lens in lenses or []] == [(0, "Repair session (keeps everything)", [uri]),
                                          (8, "Rewind to here (drops 3 messages)", [uri, "9"])]
    # The lens runs the rewind it names: a new rollout cut before that prompt, which checks clean.
    answer = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        lenses[1].command.command, lenses[1].command.arguments))  # type: ignore[index, union-attr]
    copy = Path(answer["path"])
    assert copy.name.startswith("rollout-") and copy.parent == folder
    assert [json.loads(x)["payload"].get("call_id") for x in copy.read_text().splitlines()][3:7] == [
        "call_A1", "call_B2", "call_B2", "call_A1"]
    assert len(copy.read_text().splitlines()) == 8
    assert check_transcript_file(str(copy)).findings == []
    folds = await client.text_document_folding_range_async(types.FoldingRangeParams(text_document=_doc(uri)))
    assert [(f.start_line, f.end_line) for f in folds or []] == [(2, 7), (3, 6), (4, 5), (8, 9)]


async def test_the_lens_runs_the_rewind_it_names(client: LanguageClient) -> None:
    uri = _open(client, LINES)
    await diagnostics_for(client, uri)
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(text_document=_doc(uri)))
    (rewind,) = [lens for lens in lenses or [] if lens.command and lens.command.title.startswith("Rewind")]
    assert rewind.command is not None
    answer = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        rewind.command.command, rewind.command.arguments))
    copy = Path(answer["path"])
    kept = [json.loads(line)["uuid"] for line in copy.read_text().splitlines()]
    assert kept == ["u1", "a1", "u2", "a2"]
    assert not [f for f in check_transcript_file(str(copy)).findings if f.severity <= 2]


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*/*.jsonl"))[:3] if CORPUS.exists() else [])
async def test_every_result_of_a_real_session_jumps_to_its_tool_use(client: LanguageClient, name: str) -> None:
    (src,) = list(CORPUS.glob(f"*/{name}"))
    folder = PROJECTS / f"real-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    path = folder / name
    shutil.copy(src, path)
    uri = open_doc(client, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(text_document=_doc(uri)))
    assert symbols
    checked = 0
    for n, text in enumerate(lines):
        d = json.loads(text)
        content = (d.get("message") or {}).get("content")
        if d.get("type") != "user" or not isinstance(content, list) or d.get("isSidechain"):
            continue
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                tid = block["tool_use_id"]
                col = text.index(tid)
                if any(ord(c) > 127 for c in text[:col]):
                    continue  # the column would need the client's encoding; ASCII prefixes suffice here
                defs = await client.text_document_definition_async(types.DefinitionParams(
                    text_document=_doc(uri), position=types.Position(n, col)))
                assert isinstance(defs, list) and len(defs) == 1, (n, tid)
                target = lines[defs[0].range.start.line]  # type: ignore[union-attr]
                assert f'"id":"{tid}"' in target.replace(" ", ""), (n, tid)
                checked += 1
                if checked >= 40:
                    return
    assert checked


def _plain(value: object) -> object:
    """pygls's client hands an unknown method's answer back as named tuples: plain JSON again."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}  # type: ignore[attr-defined]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


async def test_the_sessions_list_puts_broken_ones_first(client: LanguageClient) -> None:
    """`rewind-lsp/sessions`: what a client's list of sessions shows (VS Code's Claude sessions view)."""
    import asyncio

    folder = PROJECTS / f"list-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    healthy = folder / f"{uuid.uuid4()}.jsonl"
    healthy.write_text("\n".join(LINES[:4]) + "\n")
    broken = folder / f"{uuid.uuid4()}.jsonl"
    broken.write_text("\n".join(LINES) + "\n")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        answer: dict = _plain(await client.protocol.send_request_async("rewind-lsp/sessions", {}))  # type: ignore[assignment]
        ours = [s for s in answer["sessions"] if s["path"].startswith(str(folder))]
        if len(ours) == 2 or loop.time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert ours == [
        {"uri": broken.as_uri(), "path": str(broken), "kind": "session", "sessionId": broken.stem, "errors": 1,
         "warnings": 0, "firstError": {"line": 5, "message": (
             "tool_use toolu_01RUN has no tool_result immediately after it: the next user message (line 7) "
             "does not answer it")}},
        {"uri": healthy.as_uri(), "path": str(healthy), "kind": "session", "sessionId": healthy.stem, "errors": 0,
         "warnings": 0, "firstError": None},
    ]


async def test_a_400_in_a_terminal_log_links_to_the_failing_line(client: LanguageClient) -> None:
    """The raw API error names `messages.5.content.0`; the log names the session: the link and the
    command open that block's line of the session's transcript."""
    from lsp_support import LOG_DIR

    folder = PROJECTS / f"log-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    sid = str(uuid.uuid4())
    transcript = folder / f"{sid}.jsonl"
    transcript.write_text("\n".join(LINES) + "\n")
    log = LOG_DIR / f"term-{uuid.uuid4().hex[:8]}.log"
    log.write_text(
        f"$ claude --resume {sid}\n"
        'API Error: 400 {"type":"error","error":{"type":"invalid_request_error","message":"messages.5.content.0: '
        "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_01RUN. Each `tool_use` "
        'block must have a corresponding `tool_result` block in the next message."}}\n')
    uri = open_doc(client, log, language="log")
    await diagnostics_for(client, uri)
    links = await client.text_document_document_link_async(types.DocumentLinkParams(text_document=_doc(uri)))
    col = LINES[5].index('{"type":"tool_use"') + 1
    assert [(lk.range.start.line, lk.target) for lk in links or []] == [(1, f"{transcript.as_uri()}#L6,{col}")]
    td = client.capabilities.text_document  # type: ignore[attr-defined]
    if td and td.document_link and td.document_link.tooltip_support:
        assert [lk.tooltip for lk in links or []] == [f"messages.5.content.0 is line 6 of {transcript.name}"]
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=_doc(uri), position=types.Position(1, 5)))
    assert hover is not None and hover.contents.value.endswith(  # type: ignore[union-attr]
        f"\n\nmessages.5.content.0 is line 6 of {transcript.name}")
    diags = await diagnostics_for(client, uri)
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=_doc(uri), range=diags[0].range, context=types.CodeActionContext(diagnostics=diags)))
    opens = [(a.title, a.command.command, list(a.command.arguments or []))  # type: ignore[union-attr]
             for a in actions or [] if a.title.startswith("Open")]
    assert opens == [("Open the failing message in the session", "rewind-lsp.openMessage",
                      [uri, "messages.5.content.0"])]
    answer = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        "rewind-lsp.openMessage", [uri, "messages.5.content.0"]))
    assert _plain(answer) == {"uri": transcript.as_uri(), "line": 5, "column": col - 1}
    answer = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        "rewind-lsp.openMessage", [uri, "toolu_01LS"]))
    assert _plain(answer) == {"uri": transcript.as_uri(), "line": 1, "column": LINES[1].index('{"type":"tool_use"')}


@pytest.mark.skipif(not (CORPUS / "marot-spotter" / "ae4a77f8-aedd-4bc1-888f-c94edc91af04.jsonl").exists(),
                    reason="the real corpus (../shared/corpus/real) is not beside this clone")
async def test_a_task_call_links_to_its_subagents_transcript(client: LanguageClient) -> None:
    """A real session with a subagent: its Task call links to `<session>/subagents/agent-<id>.jsonl`."""
    sid = "ae4a77f8-aedd-4bc1-888f-c94edc91af04"
    folder = PROJECTS / f"sub-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    shutil.copy(CORPUS / "marot-spotter" / f"{sid}.jsonl", folder / f"{sid}.jsonl")
    shutil.copytree(CORPUS / "marot-spotter" / sid, folder / sid)
    uri = open_doc(client, folder / f"{sid}.jsonl")
    links = await client.text_document_document_link_async(types.DocumentLinkParams(text_document=_doc(uri)))
    lines = (folder / f"{sid}.jsonl").read_text(encoding="utf-8").splitlines()
    assert [lk.target for lk in links or []] == [(folder / sid / "subagents" / "agent-aac57f5.jsonl").as_uri()]
    (link,) = links or []
    assert '"name":"Task"' in lines[link.range.start.line].replace(" ", "")
