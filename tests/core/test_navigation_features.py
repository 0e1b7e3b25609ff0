"""The navigation features' answers (outline, jumps, hints, lenses) from a transcript's map, as the
server sends them: whole-response assertions, in each position encoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from core_support import SID, Builder, text, tu
from lsprotocol import types

from rewind_lsp.check import check_transcript_file
from rewind_lsp.lsp.hints import code_lenses, hint_label, inlay_hints
from rewind_lsp.lsp.jumps import Jumps
from rewind_lsp.lsp.outline import document_symbols, folding_ranges, workspace_symbols
from rewind_lsp.navigation import TranscriptMap, build
from rewind_lsp.repair_plan import rewind_drops

ENCODINGS = [types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf16, types.PositionEncodingKind.Utf32]


def _session(tmp_path: Path, broken: bool = False) -> tuple[Path, TranscriptMap, list[str]]:
    b = Builder()
    b.user("réparer le test 🚀 please")
    b.tool_turn(["toolu_01A", "toolu_01B"], "dag")
    b.assistant(text("Fixed ✓."))
    b.user("now run the suite")
    b.assistant(tu("toolu_01C", command="npm test"))
    if not broken:
        b.result("toolu_01C", "passed")
    b.user("thanks")
    b.assistant(text("Done."))
    path = b.write(tmp_path / f"{SID}.jsonl")
    check = check_transcript_file(str(path))
    data = path.read_bytes()
    return path, build(check.conversations, lambda o, n: data[o:o + n]), path.read_text().splitlines()


def _length(lines: list[str], encoding: str):  # type: ignore[no-untyped-def]
    def length(line0: int) -> int:
        t = lines[line0]
        if encoding == types.PositionEncodingKind.Utf8:
            return len(t.encode())
        if encoding == types.PositionEncodingKind.Utf16:
            return len(t.encode("utf-16-le")) // 2
        return len(t)
    return length


def test_the_outline_has_one_symbol_per_turn_with_its_calls_and_replies(tmp_path: Path) -> None:
    _, m, lines = _session(tmp_path, broken=True)
    symbols = document_symbols(m, _length(lines, types.PositionEncodingKind.Utf16))
    assert [(s.name, s.detail, s.range.start.line, s.range.end.line) for s in symbols] == [
        ("réparer le test 🚀 please", "messages.0", 0, 6), ("now run the suite", "messages.4", 7, 8),
        ("thanks", "messages.6", 9, 10)]
    first = symbols[0].children or []
    assert [(c.name, c.detail) for c in first] == [
        ("Let me look.", "reply"), ("Bash ls ✓", "toolu_01A · result line 5"),
        ("Bash ls ✓", "toolu_01B · result line 6"), ("Fixed ✓.", "reply")]
    assert [(c.name, c.detail) for c in symbols[1].children or []] == [("Bash npm test ✗", "toolu_01C · no result")]
    assert symbols[0].range.end.character == len(lines[6].encode("utf-16-le")) // 2
    assert [(f.start_line, f.end_line) for f in folding_ranges(m)] == [(0, 6), (2, 4), (3, 5), (7, 8), (9, 10)]


def test_workspace_symbols_find_prompts_across_sessions(tmp_path: Path) -> None:
    _, m, _ = _session(tmp_path)
    found = workspace_symbols("SUITE", [("file:///a.jsonl", m), ("file:///b.jsonl", m)])
    assert [(s.name, s.location.uri, s.location.range.start.line) for s in found] == [  # type: ignore[union-attr]
        ("now run the suite", "file:///a.jsonl", 7), ("now run the suite", "file:///b.jsonl", 7)]


def _units(text: str, chars: int, encoding: str) -> int:
    return {types.PositionEncodingKind.Utf8: len(text[:chars].encode()),
            types.PositionEncodingKind.Utf16: len(text[:chars].encode("utf-16-le")) // 2,
            types.PositionEncodingKind.Utf32: chars}[encoding]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_definition_from_a_result_lands_on_its_tool_use(tmp_path: Path, encoding: str) -> None:
    """Both lines hold non-ASCII text (a cwd with é and an emoji) before the blocks: the columns are
    counted in the client's units."""
    b = Builder()
    b.user("go")
    use = b.assistant(tu("toolu_01X", command="ls"), cwd="/tmp/prøjet 🚀")
    b.result("toolu_01X", "done", of=use, cwd="/tmp/prøjet 🚀")
    b.assistant(text("ok"))
    path = b.write(tmp_path / f"{SID}.jsonl")
    data = path.read_bytes()
    lines = path.read_text().splitlines()
    m = build(check_transcript_file(str(path)).conversations, lambda o, n: data[o:o + n])
    jumps = Jumps(m, lambda n: lines[n - 1], encoding)
    result_line, use_line = lines[2], lines[1]
    cursor = _units(result_line, result_line.index('"tool_use_id"'), encoding)
    (loc,) = jumps.definition("file:///s.jsonl", types.Position(2, cursor))
    start = use_line.index('{"type":"tool_use"')
    end = start + use_line[start:].index("}}") + 2
    assert loc.range == types.Range(types.Position(1, _units(use_line, start, encoding)),
                                    types.Position(1, _units(use_line, end, encoding)))
    on_use = types.Position(1, _units(use_line, start + 3, encoding))
    refs = jumps.references("file:///s.jsonl", on_use, include_declaration=True)
    assert [r.range.start.line for r in refs] == [1, 2]
    assert [r.range.start.line for r in jumps.references("file:///s.jsonl", on_use, include_declaration=False)] == [2]
    assert [(h.range.start.line, h.kind) for h in jumps.highlights(on_use)] == [
        (1, types.DocumentHighlightKind.Write), (2, types.DocumentHighlightKind.Read)]
    assert jumps.definition("file:///s.jsonl", types.Position(0, 0)) == []


def test_hints_name_the_api_index_and_where_the_result_is(tmp_path: Path) -> None:
    _, m, _ = _session(tmp_path, broken=True)
    assert [hint_label(m, n) for n in range(1, 12)] == [
        "messages.0", "messages.1", "messages.1 → result line 5", "messages.1 → result line 6", "messages.2",
        "messages.2", "messages.3", "messages.4", "messages.5 ✗ toolu_01C: no result", "messages.6", "messages.7"]
    hints = inlay_hints(m, 7, 8)
    assert [(h.position.line, h.label) for h in hints] == [(7, "messages.4"), (8, "messages.5 ✗ toolu_01C: no result")]


def test_lenses_rewind_to_each_prompt_before_the_break_and_repair_at_the_top(tmp_path: Path) -> None:
    path, m, _ = _session(tmp_path, broken=True)
    check = check_transcript_file(str(path))
    assert check.main is not None
    lenses = code_lenses("file:///s.jsonl", m, rewind_drops(check.main), broken=True)
    assert [(lens.range.start.line, lens.command.title, lens.command.command, lens.command.arguments)  # type: ignore[union-attr]
            for lens in lenses] == [
        (0, "Repair session (keeps everything)", "rewind-lsp.repair", ["file:///s.jsonl"]),
        (7, "Rewind to here (drops 4 messages)", "rewind-lsp.rewindTo", ["file:///s.jsonl", "8"]),
    ]


def test_a_lens_drops_what_rewind_to_that_prompt_drops(tmp_path: Path) -> None:
    from rewind_lsp.rewind import preview

    path, _, _ = _session(tmp_path)
    check = check_transcript_file(str(path))
    assert check.main is not None
    drops = rewind_drops(check.main)
    assert sorted(drops) == [8, 11]
    for line, n in drops.items():
        (p,) = preview(path, to=str(line))
        assert p.total_messages - p.kept_messages == n


def test_the_hint_names_the_index_a_recorded_raw_400_names(tmp_path: Path) -> None:
    """A session compacted once, then broken: the API counts from the compaction's summary (messages.0)
    and leaves the recorded error out. Its raw 400 names messages.3.content.1 (counted here by hand: the
    summary, "ok", "run both", then the reply whose second block is the lost call); the hint on that
    line, `locate` and the checker name the same."""
    from core_support import run_cli

    b = Builder()
    b.user("old work")
    b.assistant(text("old reply"))
    b.compact()                                   # messages.0: the summary
    b.assistant(text("ok"))                       # messages.1
    b.user("run both")                            # messages.2
    lost = b.assistant(text("running"), tu("toolu_01LOST"))  # messages.3: content.0 text, content.1 the call
    b.user("well?")                               # messages.4 (the call's result never came)
    raw = ('API Error: 400 {"type":"error","error":{"type":"invalid_request_error","message":"messages.3.content.1: '
           '`tool_use` ids were found without `tool_result` blocks immediately after: toolu_01LOST. Each `tool_use` '
           'block must have a corresponding `tool_result` block in the next message."}}')
    e = b.assistant(text(raw), isApiErrorMessage=True)
    e["message"]["model"] = "<synthetic>"
    path = b.write(tmp_path / f"{SID}.jsonl")
    line = b.line_of(lost)
    check = check_transcript_file(str(path))
    data = path.read_bytes()
    m = build(check.conversations, lambda o, n: data[o:o + n])
    assert hint_label(m, line) == "messages.3 ✗ toolu_01LOST: no result"
    orphan = next(f for f in check.findings if f.rule == "orphan-tool-use")
    recorded = next(f for f in check.findings if f.rule == "tool-use-concurrency-400")
    assert orphan.facts["messages_index"] == recorded.facts["messages_index"] == "3"
    r = run_cli("locate", "--format", "json", str(path), "messages.3.content.1")
    assert (json.loads(r.stdout)["line"], json.loads(r.stdout)["tool_use_id"]) == (line, "toolu_01LOST")


def _long_session(tmp_path: Path, turns: int) -> tuple[Path, TranscriptMap, list[str]]:
    """`turns` prompts, each answered by a reply; the third one's reply calls a tool left unanswered."""
    b = Builder()
    for k in range(turns):
        b.user(f"prompt {k + 1}")
        if k == 2:
            b.assistant(tu("toolu_01EARLY", command="ls"))
            b.result("toolu_01EARLY", "ok")  # answered: the call pairs
        b.assistant(text(f"reply {k + 1}"))
    path = b.write(tmp_path / f"{SID}.jsonl")
    check = check_transcript_file(str(path))
    data = path.read_bytes()
    return path, build(check.conversations, lambda o, n: data[o:o + n]), path.read_text().splitlines()


def test_past_the_turns_shown_the_outline_groups_the_earlier_ones(tmp_path: Path) -> None:
    """2,500 turns: the last 2,000 one by one, the 500 before in 100 groups of 5, each a symbol with no
    children; folding and lenses follow the same turns, so neither grows with the session."""
    from rewind_lsp.lsp.outline import GROUPS, TURNS_SHOWN

    path, m, lines = _long_session(tmp_path, TURNS_SHOWN + 500)
    symbols = document_symbols(m, _length(lines, types.PositionEncodingKind.Utf16))
    assert len(symbols) == GROUPS + TURNS_SHOWN
    first, last_group, first_turn = symbols[0], symbols[GROUPS - 1], symbols[GROUPS]
    assert first == types.DocumentSymbol(
        name="turns 1–5", kind=types.SymbolKind.Package, detail="lines 1–12 · 5 prompts",
        range=types.Range(types.Position(0, 0), types.Position(11, len(lines[11]))),
        selection_range=types.Range(types.Position(0, 0), types.Position(0, len(lines[0]))))
    assert (last_group.name, last_group.detail) == ("turns 496–500", "lines 993–1,002 · 5 prompts")
    assert (first_turn.name, first_turn.detail) == ("prompt 501", "messages.1002")
    assert symbols[-1].name == f"prompt {TURNS_SHOWN + 500}"
    folds = folding_ranges(m)
    assert len(folds) == GROUPS + TURNS_SHOWN
    assert (folds[0].start_line, folds[0].end_line, folds[0].kind) == (0, 11, types.FoldingRangeKind.Region)
    check = check_transcript_file(str(path))
    assert check.main is not None
    lenses = code_lenses("file:///s.jsonl", m, rewind_drops(check.main), broken=False)
    assert len(lenses) == TURNS_SHOWN  # on each prompt shown one by one: the earlier ones have none
    assert lenses[0].range.start.line == first_turn.range.start.line


def test_a_group_with_an_unpaired_call_says_so(tmp_path: Path) -> None:
    from rewind_lsp.lsp.outline import TURNS_SHOWN

    b = Builder()
    for k in range(TURNS_SHOWN + 100):
        b.user(f"prompt {k + 1}")
        b.assistant(tu("toolu_01LOST", command="ls") if k == 0 else text(f"reply {k + 1}"))
    path = b.write(tmp_path / f"{SID}.jsonl")
    check = check_transcript_file(str(path))
    data = path.read_bytes()
    m = build(check.conversations, lambda o, n: data[o:o + n])
    lines = path.read_text().splitlines()
    symbols = document_symbols(m, _length(lines, types.PositionEncodingKind.Utf8))
    assert (symbols[0].name, symbols[0].detail) == ("turns 1–1 ✗", "lines 1–2 · 1 prompt, 1 unpaired call")
    assert (symbols[1].name, symbols[1].detail) == ("turns 2–2", "lines 3–4 · 1 prompt")
