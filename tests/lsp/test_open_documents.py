"""Open documents answered from memory: checked off the event loop, once per version, appends read
alone, obsolete checks dropped; positions right in every encoding a client may negotiate."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
import pytest_lsp
from lsp_support import BROKEN, BROKEN_LINES, ENV, LOG_DIR, PROJECTS, ROOT, SERVER, SESSION, entry, tool_use
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from rewind_lsp.lsp.documents import Documents, OpenDocument
from rewind_lsp.rules import load_rules

RULES = load_rules([])
NON_ASCII = "héllo 😀 — naïve"  # 2-byte, 4-byte (a surrogate pair in UTF-16) and 3-byte characters
FAULT_LINE = json.dumps(
    {"type": "assistant", "uuid": "a1", "parentUuid": "u1", "sessionId": SESSION, "cwd": "/tmp/proj",
     "message": {"id": "msg_1", "role": "assistant",
                 "content": [{"type": "text", "text": NON_ASCII}, tool_use("toolu_01ABC")]}},
    ensure_ascii=False, separators=(",", ":"),
)
NON_ASCII_BROKEN = "\n".join([BROKEN_LINES[0], FAULT_LINE, BROKEN_LINES[2]]) + "\n"
LOG_PREFIX = f"{NON_ASCII} "
LOG_LINE = f"{LOG_PREFIX}API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation."


def units(text: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    if encoding == "utf-16":
        return len(text.encode("utf-16-le")) // 2
    return len(text)


# --- end to end, one client per position encoding ---------------------------------------------


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER, server_env=ENV),
                    params=["utf-8", "utf-16", "utf-32"])
async def encoded(lsp_client: LanguageClient, request):  # type: ignore[no-untyped-def]
    @lsp_client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
    def show_message_request(params: types.ShowMessageRequestParams) -> None:
        return None  # a newly broken watched file is announced: the user dismisses it

    caps = client_capabilities("visual-studio-code")  # a client that takes pushed diagnostics
    caps.general = types.GeneralClientCapabilities(position_encodings=[request.param])
    result = await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=caps,
            workspace_folders=[types.WorkspaceFolder(uri=ROOT.as_uri(), name="root")],
            initialization_options={"watchRoots": [str(PROJECTS), str(LOG_DIR)]},
        )
    )
    lsp_client.encoding = request.param  # type: ignore[attr-defined]
    assert result.capabilities.position_encoding == request.param
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not any("rewind-lsp: watching" in m.message for m in lsp_client.log_messages):
        assert loop.time() < deadline, "the server never said it was watching"
        await asyncio.sleep(0.01)
    yield
    await lsp_client.shutdown_session()


async def pushed(client: LanguageClient, uri: str, count: int = 1, timeout: float = 10) -> list[types.Diagnostic]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(client.diagnostics.get(uri, [])) < count:
        assert loop.time() < deadline, f"no {count} diagnostics for {uri}: {client.diagnostics.get(uri)}"
        await asyncio.sleep(0.02)
    return list(client.diagnostics[uri])


def open_text(client: LanguageClient, path: Path, text: str, version: int = 1) -> str:
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="jsonl", version=version, text=text)))
    return uri


async def test_columns_after_non_ascii_text_in_every_encoding(encoded: LanguageClient, tmp_path: Path) -> None:
    """The block at fault comes after 2-, 3- and 4-byte characters on its line; the column is counted in
    the negotiated encoding's units, for the diagnostic, the hover and a code action's range."""
    encoding = encoded.encoding  # type: ignore[attr-defined]
    folder = PROJECTS / f"enc-{encoding}"
    folder.mkdir(exist_ok=True)
    path = folder / f"{SESSION}.jsonl"
    path.write_text(NON_ASCII_BROKEN, encoding="utf-8")
    uri = open_text(encoded, path, NON_ASCII_BROKEN)
    d = (await pushed(encoded, uri))[0]
    prefix = FAULT_LINE[: FAULT_LINE.index('{"type":"tool_use"')]
    assert (d.code, d.range.start.line, d.range.start.character) == ("orphan-tool-use", 1, units(prefix, encoding))
    block_end = FAULT_LINE.index("}}]}}") + 2  # the tool_use block's closing brace, included
    assert d.range.end.character == units(FAULT_LINE[:block_end], encoding)
    hover = await encoded.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=d.range.start))
    assert hover is not None and hover.range == d.range and "toolu_01ABC" in hover.contents.value  # type: ignore[union-attr]


async def test_log_columns_after_non_ascii_text_in_every_encoding(encoded: LanguageClient) -> None:
    """Log findings leave the UTF-8 column to the server, which counts it from the open buffer's line."""
    encoding = encoded.encoding  # type: ignore[attr-defined]
    path = LOG_DIR / f"enc-{encoding}.log"
    text = f"first line\n{LOG_LINE}\n"
    uri = open_text(encoded, path, text)
    d = (await pushed(encoded, uri))[0]
    assert (d.code, d.range.start.line, d.range.start.character) == (
        "tool-use-concurrency-400", 1, units(LOG_PREFIX, encoding))


async def test_columns_of_a_log_on_disk_in_every_encoding(encoded: LanguageClient) -> None:
    """A watched log that is not open: the UTF-8 column is counted once on the server's worker, from the
    file's line, not re-read for each publish."""
    encoding = encoded.encoding  # type: ignore[attr-defined]
    path = LOG_DIR / f"disk-{encoding}.log"
    path.write_text(f"first line\n{LOG_LINE}\n", encoding="utf-8")
    d = (await pushed(encoded, path.as_uri()))[0]
    assert (d.code, d.range.start.line, d.range.start.character) == (
        "tool-use-concurrency-400", 1, units(LOG_PREFIX, encoding))


# --- end to end: appends and obsolete versions ------------------------------------------------


async def test_an_append_is_checked_and_published_with_its_version(encoded: LanguageClient) -> None:
    encoding = encoded.encoding  # type: ignore[attr-defined]
    folder = PROJECTS / f"append-{encoding}"
    folder.mkdir(exist_ok=True)
    path = folder / f"{SESSION}.jsonl"
    uri = open_text(encoded, path, NON_ASCII_BROKEN)
    await pushed(encoded, uri)
    end = types.Position(line=3, character=0)
    added = entry("user", "u3", "u2", [{"type": "tool_result", "tool_use_id": "toolu_09GONE", "content": "ok"}]) + "\n"
    encoded.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=end, end=end), text=added)]))
    got = await pushed(encoded, uri, count=2)
    assert sorted((d.code, d.range.start.line) for d in got) == [("orphan-tool-result", 3), ("orphan-tool-use", 1)]


async def test_an_obsolete_check_is_never_published(encoded: LanguageClient) -> None:
    """A large broken document, made healthy right after it was opened: the check of version 1 is still
    running when version 2 comes (a few bytes, read at once), so only version 2's (empty) diagnostics
    are published."""
    encoding = encoded.encoding  # type: ignore[attr-defined]
    filler = [entry("user", f"f{i}", None if i == 0 else f"f{i - 1}", "x" * 400) for i in range(20000)]
    broken = "\n".join([*filler, BROKEN.replace('"parentUuid":null', '"parentUuid":"f19999"', 1)]) + "\n"
    path = LOG_DIR.parent / f"obsolete-{encoding}.jsonl"
    versions: list[int | None] = []
    features = encoded.protocol.fm.features
    keep = features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS]

    def record(params: types.PublishDiagnosticsParams) -> None:
        if params.uri == path.as_uri():
            versions.append(params.version)
        keep(params)

    features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = record

    uri = open_text(encoded, path, broken)
    # A small edit (the fault's line made a text reply), so that it arrives while version 1 is checked.
    start, end = types.Position(line=len(filler) + 1, character=0), types.Position(line=len(filler) + 2, character=0)
    healthy = entry("assistant", "a1", "u1", [{"type": "text", "text": "done"}], "msg_1") + "\n"
    encoded.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=start, end=end),
                                                               text=healthy)]))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not versions:
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    assert versions == [2] and list(encoded.diagnostics[uri]) == []


# --- in the process: the document store itself ------------------------------------------------


def store(published: list[tuple[int, int]]) -> Documents:
    def publish(doc: OpenDocument) -> None:
        published.append((doc.version, len(doc.findings)))

    def failed(doc: OpenDocument, reason: str) -> None:
        raise AssertionError(reason)

    docs = Documents(publish, failed)
    docs.rules = lambda: RULES
    return docs


def append_at_end(doc: OpenDocument, text: str) -> list[types.TextDocumentContentChangeEvent]:
    end = types.Position(line=doc.newlines, character=0)
    return [types.TextDocumentContentChangePartial(range=types.Range(start=end, end=end), text=text)]


async def test_an_append_reads_only_the_appended_bytes(tmp_path: Path) -> None:
    published: list[tuple[int, int]] = []
    docs = store(published)
    try:
        big = "\n".join(entry("user", f"f{i}", None if i == 0 else f"f{i - 1}", "x" * 200) for i in range(5000)) + "\n"
        doc = docs.did_open((tmp_path / "big.jsonl").as_uri(), 1, big + BROKEN.replace(
            '"parentUuid":null', '"parentUuid":"f4999"', 1))
        assert len(await docs.findings(doc)) == 1
        added = entry("user", "u3", "u2", [{"type": "tool_result", "tool_use_id": "toolu_09GONE", "content": "ok"}])
        docs.did_change(doc.uri, 2, append_at_end(doc, added + "\n"), "utf-16")
        assert sorted(f.rule for f in await docs.findings(doc)) == ["orphan-tool-result", "orphan-tool-use"]
        assert doc.state is not None
        stats = doc.state.stats
        assert (stats.full_reads, stats.bytes_read) == (0, len(added.encode()) + 1)
        assert published == [(1, 1), (2, 2)]
    finally:
        docs.shutdown()


async def test_an_edit_in_the_middle_is_checked_from_scratch(tmp_path: Path) -> None:
    published: list[tuple[int, int]] = []
    docs = store(published)
    try:
        doc = docs.did_open((tmp_path / "s.jsonl").as_uri(), 1, NON_ASCII_BROKEN)
        assert len(await docs.findings(doc)) == 1
        # Replace the fault's line by a healthy text reply: a range edit inside the document (UTF-16 units).
        line = types.Position(line=1, character=0)
        after = types.Position(line=2, character=0)
        healthy = entry("assistant", "a1", "u1", [{"type": "text", "text": "done"}], "msg_1") + "\n"
        docs.did_change(doc.uri, 2, [types.TextDocumentContentChangePartial(
            range=types.Range(start=line, end=after), text=healthy)], "utf-16")
        assert await docs.findings(doc) == []
        assert doc.text == "\n".join([BROKEN_LINES[0], healthy.rstrip("\n"), BROKEN_LINES[2]]) + "\n"
    finally:
        docs.shutdown()


async def test_requests_during_a_check_wait_for_that_one_check(tmp_path: Path) -> None:
    published: list[tuple[int, int]] = []
    docs = store(published)
    try:
        doc = docs.did_open((tmp_path / "s.jsonl").as_uri(), 1, BROKEN)
        answers = await asyncio.gather(*(docs.findings(doc) for _ in range(5)))
        assert all(a is answers[0] for a in answers) and len(answers[0]) == 1
        assert published == [(1, 1)]  # one check, one publish
        assert await docs.findings(doc) is answers[0]  # later requests read it: no check
        assert published == [(1, 1)]
    finally:
        docs.shutdown()


@pytest.mark.parametrize("how", ["change", "close"])
async def test_a_check_made_obsolete_while_it_runs_is_dropped(tmp_path: Path, how: str) -> None:
    published: list[tuple[int, int]] = []
    docs = store(published)
    try:
        filler = "\n".join(entry("user", f"f{i}", None, "x" * 400) for i in range(40000)) + "\n"
        doc = docs.did_open((tmp_path / "s.jsonl").as_uri(), 1, filler + BROKEN)
        while doc.queued:  # the worker took version 1 and checks it now
            await asyncio.sleep(0.001)
        if how == "change":
            docs.did_change(doc.uri, 2, [types.TextDocumentContentChangeWholeDocument(text=filler)], "utf-16")
            assert await docs.findings(doc) == []
            assert published == [(2, 0)]
        else:
            docs.did_close(doc.uri)
            assert await docs.findings(doc) == []
            await asyncio.sleep(0.3)
            # Still running meanwhile? Then wait for it to end: its result must not be published.
            docs.checker.pool.submit(lambda: None).result(timeout=30)
            await asyncio.sleep(0.05)
            assert published == []
            assert doc.mirror is None  # its mirror file is gone with it
    finally:
        docs.shutdown()


def test_findings_of_files_on_disk_carry_their_utf8_columns(tmp_path: Path) -> None:
    from rewind_lsp.lsp.server import RewindLanguageServer

    log = tmp_path / "x.log"
    log.write_text(f"first line\n{LOG_LINE}\n", encoding="utf-8")
    server = RewindLanguageServer()
    try:
        (f,) = server.check_disk(str(log))
        assert (f.start.line, f.start.utf8) == (2, len(LOG_PREFIX.encode()))
        assert server.check_disk(str(log)) == [f]  # remembered: the file is not read for its lines again
    finally:
        server.io.shutdown()


async def test_mirrors_of_killed_servers_are_removed(tmp_path: Path) -> None:
    import subprocess
    import sys
    import tempfile

    from rewind_lsp.lsp.documents import MIRROR_PREFIX

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    stale = Path(tempfile.mkdtemp(prefix=f"{MIRROR_PREFIX}{gone}-"))
    (stale / "doc-1.jsonl").write_text(BROKEN)
    alive = Path(tempfile.mkdtemp(prefix=f"{MIRROR_PREFIX}{os.getpid()}-"))
    docs = store([])
    try:
        doc = docs.did_open((tmp_path / "s.jsonl").as_uri(), 1, BROKEN)
        await docs.findings(doc)
        assert not stale.exists() and alive.exists()
        assert docs.checker.folder is not None
        assert Path(docs.checker.folder).name.startswith(f"{MIRROR_PREFIX}{os.getpid()}-")
    finally:
        docs.shutdown()
        alive.rmdir()
    assert docs.checker.folder is not None and not Path(docs.checker.folder).exists()


def test_an_append_keeps_the_utf8_columns_it_counted_and_counts_only_new_findings() -> None:
    """The UTF-8 columns of an open document's findings are counted once: an append reuses them (a
    100 MB document's text is not joined and scanned again), and a new finding gets its own."""
    from rewind_lsp.lsp.documents import DocumentChecker

    checker = DocumentChecker()
    doc = OpenDocument((PROJECTS / f"{SESSION}.jsonl").as_uri(), 1, NON_ASCII_BROKEN)
    try:
        _, first = checker.check(doc, RULES) or (0, [])
        (f,) = [x for x in first if x.rule == "orphan-tool-use"]
        col = FAULT_LINE.index('{"type":"tool_use"')
        assert (f.start.line, f.start.utf8) == (2, len(FAULT_LINE[:col].encode("utf-8")))
        done = dict(doc.worker_utf8)
        more = json.dumps({"type": "user", "uuid": "u3", "parentUuid": "u2", "sessionId": SESSION,
                           "message": {"role": "user", "content": "still there?"}}) + "\n"
        doc.apply([types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(3, 0), types.Position(3, 0)), text=more)], 2, "utf-16")
        _, second = checker.check(doc, RULES) or (0, [])
        (g,) = [x for x in second if x.rule == "orphan-tool-use"]
        assert g is done[next(k for k in done if k.rule == "orphan-tool-use")]  # the counted one, reused
        late = FAULT_LINE.replace('"a1"', '"a9"').replace('"u1"', '"u3"').replace("toolu_01ABC", "toolu_01LATE")
        doc.apply([types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(4, 0), types.Position(4, 0)), text=late + "\n" + more.replace(
                '"u3"', '"u4"', 1).replace('"u2"', '"a9"'))], 3, "utf-16")
        _, third = checker.check(doc, RULES) or (0, [])
        (h,) = [x for x in third if x.tool_use_id == "toolu_01LATE"]
        assert (h.start.line, h.start.utf8) == (5, len(late[:late.index('{"type":"tool_use"')].encode("utf-8")))
    finally:
        checker.close(doc)


def test_a_document_closed_while_it_is_checked_stops_its_check() -> None:
    """The check of an open document asks between chunks whether it is still wanted: closed (or
    given a whole new text) after the worker took its snapshot, it stops and drops its half-built
    state instead of reading the rest of a large file."""
    from rewind_lsp.lsp.documents import DocumentChecker

    class ClosedRightAfterItsSnapshot(OpenDocument):
        def take(self) -> tuple[int, list[str], bool, list[str]] | None:
            taken = super().take()
            self.closed = True  # the didClose that arrives while the worker checks
            return taken

    text = "".join(
        json.dumps({"type": "user", "uuid": f"p{k}", "parentUuid": None, "sessionId": SESSION,
                    "message": {"role": "user", "content": "x" * 4000}}) + "\n" for k in range(600)
    ) + BROKEN  # ~2.4 MB: more than one chunk
    checker = DocumentChecker()
    try:
        closing = ClosedRightAfterItsSnapshot((PROJECTS / f"{SESSION}.jsonl").as_uri(), 1, text)
        assert checker.check(closing, RULES) is None
        assert closing.mirror is None and closing.state is None  # nothing half built is kept
        kept = OpenDocument((PROJECTS / f"{SESSION}.jsonl").as_uri(), 1, text)
        _, found = checker.check(kept, RULES) or (0, [])
        assert "orphan-tool-use" in {f.rule for f in found}
    finally:
        checker.shutdown()
