"""Incremental checks give exactly the findings of a whole-file check, at every step.

Files are written in random-sized pieces (cutting lines anywhere) and checked after each piece,
both with one in-memory state and with a state saved to disk and loaded again (the hook); the
findings (rule, severity, message, exact positions, related places, facts) must equal
`check_transcript_file`'s. Links across compactions, which the shortcut cannot take, must still
give the same findings (by a full read), and so must truncation, rewrites and rotation.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from core_support import CROSS_LINKS, SID, Builder, compacted, corpus_files, cross_link, tu, turn

from rewind_lsp.check import check_transcript_file
from rewind_lsp.findings import Finding, Severity
from rewind_lsp.incremental import CheckStopped, TranscriptState, check_transcript_incremental
from rewind_lsp.index import check_cached
from rewind_lsp.rules import default_rules


def key(fs: list[Finding]) -> list[tuple[Any, ...]]:
    return [(f.rule, f.severity, f.message, f.start, f.end, f.tool_use_id, f.related, f.facts) for f in fs]


def same(path: Path, state: TranscriptState) -> list[Finding]:
    full = check_transcript_file(str(path)).findings
    inc = check_transcript_incremental(str(path), state)
    assert key(inc) == key(full)
    return inc


def feed(data: bytes, path: Path, rng: random.Random, pieces: int, cache: Path | None = None) -> TranscriptState:
    """Append `data` to `path` in about `pieces` random pieces, checking after each one."""
    cuts = [*sorted(rng.sample(range(1, len(data)), min(pieces, len(data) - 1))), len(data)]
    path.write_bytes(b"")
    state = TranscriptState()
    start = 0
    for cut in cuts:
        with path.open("ab") as f:
            f.write(data[start:cut])
        start = cut
        same(path, state)
        if cache is not None:
            full = check_transcript_file(str(path)).findings
            assert key(check_cached(str(path), cache)[0]) == key(full)
    return state


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_real_sessions_in_pieces(path: Path, tmp_path: Path) -> None:
    data = path.read_bytes()
    assert not [f for f in check_transcript_file(str(path)).findings if f.severity == Severity.ERROR]  # healthy
    whole = TranscriptState()
    same(path, whole)
    assert whole.stats.fallbacks == 0
    rng = random.Random(path.name)
    feed(data, tmp_path / path.name, rng, pieces=min(60, data.count(b"\n") * 2), cache=tmp_path / "cache")


def test_closed_segments_keep_their_findings_and_drop_their_entries(b: Builder, tmp_path: Path) -> None:
    compacted(b, 2)
    b.assistant(tu("toolu_lost"))  # an unanswered call, then the session goes on: history after the next compaction
    b.user("never mind")
    b.compact()
    turn(b, "toolu_live")
    b.user("and now")
    b.assistant(tu("toolu_pending"))
    path = b.write(tmp_path / f"{SID}.jsonl")
    state = TranscriptState()
    found = same(path, state)
    assert [(f.rule, f.severity.label) for f in found] == [
        ("orphan-tool-use", "information"), ("orphan-tool-use", "warning")
    ]
    assert len(state.closed_findings) == 1 and state.open_entry_count < len(b.lines) // 3
    # One more line: only it is read, and the result is still exact.
    with path.open("a") as f:
        f.write(b.text_lines()[-1].replace("toolu_pending", "toolu_more").replace('"uuid": "a-', '"uuid": "x-') + "\n")
    same(path, state)
    assert state.stats.full_reads == 0 and 0 < state.stats.bytes_read < 1000
    same(path, state)
    assert state.stats.reused


def test_a_boundary_is_known_by_its_decoded_subtype_escaped_or_not(b: Builder, tmp_path: Path) -> None:
    # The reader tells the engine a chunk holds a boundary from the decoded lines, not by searching
    # the bytes: a subtype written with a JSON escape closes its segment like any other.
    compacted(b, 3)
    turn(b, "toolu_live")
    text = "\n".join(b.text_lines()) + "\n"
    assert '"compact_boundary"' in text
    escaped = text.replace('"compact_boundary"', '"compact_bound\\u0061ry"')
    for name, data in (("plain", text), ("escaped", escaped)):
        path = tmp_path / name / f"{SID}.jsonl"
        path.parent.mkdir()
        path.write_text(data)
        state = TranscriptState()
        same(path, state)
        assert state.open_start > 0 and state.open_entry_count < len(b.lines) // 2, name


def test_link_back_across_a_compaction_falls_back_to_a_full_read(b: Builder, tmp_path: Path) -> None:
    compacted(b, 2)
    before = b.lines[5]["uuid"]  # type: ignore[index]
    b.compact()
    turn(b, "toolu_x")
    path = b.write(tmp_path / f"{SID}.jsonl")
    state = TranscriptState()
    same(path, state)
    assert state.closed_findings == [] and state.stats.fallbacks == 0
    # A rewind to before the compactions: the new line hangs off a closed segment's line.
    b.user("back to where we were", parent=before)
    b.assistant(tu("toolu_after_rewind"))
    b.user("hello?")
    b.write(tmp_path / f"{SID}.jsonl")
    same(path, state)
    assert state.stats.fallbacks == 1
    b.compact()
    turn(b, "toolu_y")
    b.write(tmp_path / f"{SID}.jsonl")
    same(path, state)


@pytest.mark.parametrize("link", CROSS_LINKS)
def test_every_kind_of_cross_segment_link_gives_full_findings(link: str, b: Builder, tmp_path: Path) -> None:
    cross_link(b, link)
    data = "\n".join(b.text_lines()).encode() + b"\n"
    feed(data, tmp_path / f"{SID}.jsonl", random.Random(link), pieces=40, cache=tmp_path / "cache")


def test_truncation_rewrite_and_rotation_start_over(b: Builder, tmp_path: Path) -> None:
    compacted(b, 3)
    path = b.write(tmp_path / f"{SID}.jsonl")
    state = TranscriptState()
    same(path, state)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated mid-file (and mid-line)
    same(path, state)
    assert state.stats.full_reads == 1
    # Same size, other bytes before the read offset: rewritten in place.
    path.write_bytes(data)
    same(path, state)
    text = data.replace(b'"tool_use_id":"toolu_2_1"', b'"tool_use_id":"toolu_2_X"', 1)
    assert text != data
    with path.open("r+b") as f:
        f.write(text)
    os.utime(path, ns=(1, 1))
    same(path, state)
    assert state.stats.full_reads == 1
    assert [f.rule for f in state.findings or []] == ["orphan-tool-use", "orphan-tool-result"]
    # Rotation: another file (another inode) takes the name.
    other = tmp_path / "other.jsonl"
    b2 = Builder()
    turn(b2, "toolu_new")
    b2.write(other)
    os.replace(other, path)
    same(path, state)
    assert state.stats.full_reads == 1
    path.write_bytes(b"")
    assert same(path, state) == []


def test_a_torn_last_line_is_read_when_complete(b: Builder, tmp_path: Path) -> None:
    compacted(b, 2)
    b.assistant(tu("toolu_last"))
    lines = b.text_lines()
    path = tmp_path / f"{SID}.jsonl"
    head = "\n".join(lines[:-1]).encode() + b"\n"
    last = lines[-1].encode()
    path.write_bytes(head + last[:20])
    state = TranscriptState()
    assert same(path, state) == []
    with path.open("ab") as f:
        f.write(last[20:])  # complete but no newline yet: it counts, as in a whole-file read
    assert [f.rule for f in same(path, state)] == ["orphan-tool-use"]
    with path.open("ab") as f:
        f.write(b"\n")
    same(path, state)


def test_another_rule_set_starts_over(b: Builder, tmp_path: Path) -> None:
    compacted(b, 2)
    path = b.write(tmp_path / f"{SID}.jsonl")
    state = TranscriptState()
    check_transcript_incremental(str(path), state)
    check_transcript_incremental(str(path), state, default_rules())
    assert state.stats.full_reads == 1


def test_bad_lines_in_closed_and_open_segments(b: Builder, tmp_path: Path) -> None:
    compacted(b, 1)
    b.raw("{not json")
    b.compact()
    turn(b, "toolu_q")
    b.raw("[1, 2]")
    b.user("go on")
    b.assistant(tu("toolu_r"))
    data = "\n".join(b.text_lines()).encode() + b"\n"
    state = feed(data, tmp_path / f"{SID}.jsonl", random.Random(7), pieces=30)
    assert [f.rule for f in state.findings or []] == ["malformed-line", "malformed-line", "orphan-tool-use"]


def test_a_check_told_to_stop_stops_between_chunks(b: Builder, tmp_path: Path) -> None:
    """The server's open documents: closed or replaced while checked, the check stops at the next
    chunk instead of running on (a crafted or huge file must not hold the worker)."""
    for k in range(1200):
        b.user(f"prompt {k} " + "x" * 2000)
        b.assistant({"type": "text", "text": "y" * 500})
    b.assistant(tu("toolu_pending"))
    path = b.write(tmp_path / f"{SID}.jsonl")
    assert path.stat().st_size > 3 << 20  # several chunks
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) >= 2  # let one chunk through, then stop

    state = TranscriptState()
    with pytest.raises(CheckStopped):
        check_transcript_incremental(str(path), state, stop=stop)
    assert len(asked) == 2 and state.stop is None  # asked per chunk; the hook is not kept
    # Told nothing, a new state checks the whole file, exactly.
    assert [f.tool_use_id for f in same(path, TranscriptState())] == ["toolu_pending"]
