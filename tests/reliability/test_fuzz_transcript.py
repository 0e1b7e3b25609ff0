"""Fuzzing the transcript reader and the pairing validator (`check_transcript_bytes`).

Every input must come back as a result, never an exception; every line that is not a JSON
entry (and ends with a newline) must come back as a `malformed-line` finding at that line;
every finding must point inside the file. Valid conversations generated here must check clean,
so the generator itself is checked too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rel_strategies import FUZZ, conversations, dumps, examples, json_values, paths, replaced, serialize
from rel_support import FUZZ_CASES, SID, isolated_env, run_cli

from rewind_lsp.check import check_transcript_bytes
from rewind_lsp.findings import Finding, Severity
from rewind_lsp.rules import default_rules
from rewind_lsp.transcript import OTHER, Entry, _from_any, parse_line

KNOWN_RULES = {r.id for r in default_rules()}


# --- the oracle -----------------------------------------------------------------------------


def physical_lines(data: bytes) -> list[tuple[int, bytes, bool]]:
    """(line number, body, ended with a newline), as a transcript reader must see them."""
    parts = data.split(b"\n")
    out = []
    for i, raw in enumerate(parts, 1):
        ended = i < len(parts)
        if not ended and raw == b"":
            break
        body = raw[:-1] if raw.endswith(b"\r") else raw
        out.append((i, body, ended))
    return out


def is_entry(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body.decode("utf-8", errors="replace")), dict)
    except (ValueError, RecursionError):
        return False


def check_sane(data: bytes) -> list[Finding]:
    """Check `data`; assert the result is sane; return the findings."""
    result = check_transcript_bytes(data)
    lines = physical_lines(data)
    n_lines = max(len(lines), 1)
    for f in result.findings:
        assert f.rule in KNOWN_RULES, f
        assert isinstance(f.severity, Severity)
        assert 1 <= f.start.line <= n_lines, (f, n_lines)
        assert f.start.column >= 1 and f.start.utf16 >= 0, f
        assert (f.end.line, f.end.column) >= (f.start.line, f.start.column), f
        assert f.tool_use_id is None or isinstance(f.tool_use_id, str)
        assert isinstance(f.message, str) and f.message
    want_bad = {n for n, body, ended in lines if ended and body.strip() and not is_entry(body)}
    # A last line without its newline that is no entry: a writer mid-line (JSON cut short: no
    # finding yet) or malformed. One that does not even start like an object is surely malformed.
    for n, body, ended in lines:
        if not ended and body.strip() and not is_entry(body) and not body.lstrip().startswith(b"{"):
            want_bad.add(n)
    maybe = {n for n, body, ended in lines if not ended and body.lstrip().startswith(b"{") and not is_entry(body)}
    got_bad = {f.start.line for f in result.findings if f.rule == "malformed-line"}
    if not result.conversations and len(result.transcript.bad_lines) > 1:
        # No transcript at all: one finding at its first bad line says so, not one a line.
        (only,) = [f for f in result.findings if f.rule == "malformed-line"]
        assert only.message.startswith("not a Claude Code transcript: none of its "), only
        assert got_bad == {min(b.line for b in result.transcript.bad_lines)}
        return result.findings
    assert want_bad <= got_bad <= want_bad | maybe, f"malformed-line at {sorted(got_bad)}, expected {sorted(want_bad)}"
    return result.findings


# --- the fuzz targets -----------------------------------------------------------------------


@settings(FUZZ, max_examples=examples(300))
@given(conversations(), st.booleans(), st.booleans())
def _valid_conversations_check_clean(conv: list[dict[str, Any]], compact: bool, ascii_only: bool) -> None:
    FUZZ_CASES["transcript: valid conversations"] += 1
    findings = check_sane(serialize(conv, compact=compact, ascii_only=ascii_only))
    assert findings == [], [(f.rule, f.start.line, f.message) for f in findings]


def test_generated_valid_conversations_check_clean() -> None:
    before = FUZZ_CASES["transcript: valid conversations"]
    _valid_conversations_check_clean()
    assert FUZZ_CASES["transcript: valid conversations"] - before >= examples(300) // 2


@settings(FUZZ, max_examples=examples(2000))
@given(st.binary(max_size=600))
def _random_bytes(data: bytes) -> None:
    FUZZ_CASES["transcript: random bytes"] += 1
    check_sane(data)


def test_random_bytes_never_crash() -> None:
    before = FUZZ_CASES["transcript: random bytes"]
    _random_bytes()
    assert FUZZ_CASES["transcript: random bytes"] - before >= examples(2000) // 2


@settings(FUZZ, max_examples=examples(600))
@given(conversations(), st.data())
def _wrong_types_everywhere(conv: list[dict[str, Any]], data: st.DataObject) -> None:
    """Take a valid conversation and replace any field of any entry (or the entry) with any JSON value."""
    FUZZ_CASES["transcript: a field replaced by any JSON value"] += 1
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        k = data.draw(st.integers(min_value=0, max_value=len(conv) - 1))
        path = data.draw(st.sampled_from(paths(conv[k])))
        conv[k] = replaced(conv[k], path, data.draw(json_values))
    check_sane(serialize(conv, ascii_only=data.draw(st.booleans())))


def test_wrong_types_in_every_field_never_crash() -> None:
    before = FUZZ_CASES["transcript: a field replaced by any JSON value"]
    _wrong_types_everywhere()
    assert FUZZ_CASES["transcript: a field replaced by any JSON value"] - before >= examples(600) // 2


@st.composite
def byte_damage(draw: st.DrawFn) -> bytes:
    """A valid transcript, then damaged as files get damaged: cut, spliced, re-encoded."""
    data = serialize(draw(conversations()))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(st.sampled_from(["truncate", "cut-middle", "insert", "flip", "nul", "bad-utf8", "crlf", "cr-only"]))
        at = draw(st.integers(min_value=0, max_value=len(data)))
        if kind == "truncate":
            data = data[:at]
        elif kind == "cut-middle":
            data = data[:at] + data[at + draw(st.integers(min_value=1, max_value=200)):]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=20)) + data[at:]
        elif kind == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1:]
        elif kind == "nul":
            data = data[:at] + b"\x00" + data[at:]
        elif kind == "bad-utf8":
            bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]))
            data = data[:at] + bad + data[at:]
        elif kind == "crlf":
            data = data.replace(b"\n", b"\r\n")
        elif kind == "cr-only" and draw(st.booleans()):
            data = data.replace(b"\n", b"\r") + b"\n"  # CR line ends, one final newline
    return data


@settings(FUZZ, max_examples=examples(800))
@given(byte_damage())
def _damaged_files(data: bytes) -> None:
    FUZZ_CASES["transcript: truncated, spliced, NUL, non-UTF-8, CR/CRLF"] += 1
    check_sane(data)


def test_damaged_files_never_crash() -> None:
    before = FUZZ_CASES["transcript: truncated, spliced, NUL, non-UTF-8, CR/CRLF"]
    _damaged_files()
    assert FUZZ_CASES["transcript: truncated, spliced, NUL, non-UTF-8, CR/CRLF"] - before >= examples(800) // 2


_SEEN = ("line", "offset", "length", "type", "uuid", "parent", "logical_parent", "sidechain", "agent_id",
         "session_id", "subtype", "version", "api_error", "source_tool_assistant", "message_id", "role", "model",
         "text_content")  # every attribute the chain rebuild, the validator and the rewinder read


def _norm(e: Entry) -> tuple[Any, ...]:
    blocks = tuple((b.index, b.kind, None if b.kind == OTHER else b.tool_id) for b in e.blocks)
    return (*(getattr(e, s) for s in _SEEN), blocks)


@settings(FUZZ, max_examples=examples(800))
@given(conversations(), st.data())
def _fast_and_tolerant_paths_agree(conv: list[dict[str, Any]], data: st.DataObject) -> None:
    """The typed fast path and the tolerant path read any entry the same way: schema drift never
    changes what the validator sees."""
    FUZZ_CASES["transcript: fast path == tolerant path"] += 1
    k = data.draw(st.integers(min_value=0, max_value=len(conv) - 1))
    entry = conv[k]
    if data.draw(st.booleans()):
        path = data.draw(st.sampled_from(paths(entry)[1:] or [()]))
        entry = replaced(entry, path, data.draw(json_values))
    assume(isinstance(entry, dict))
    raw = dumps(entry).encode("utf-8")
    parsed = parse_line(1, 0, raw)
    assert isinstance(parsed, Entry)
    assert _norm(parsed) == _norm(_from_any(1, 0, len(raw), json.loads(raw)))


def test_fast_path_and_tolerant_path_agree() -> None:
    before = FUZZ_CASES["transcript: fast path == tolerant path"]
    _fast_and_tolerant_paths_agree()
    assert FUZZ_CASES["transcript: fast path == tolerant path"] - before >= examples(800) // 2


# --- hand-made hostile inputs ---------------------------------------------------------------


def _entry_line(content: Any) -> bytes:
    return dumps({"type": "user", "uuid": "u1", "parentUuid": None, "sessionId": SID,
                  "message": {"role": "user", "content": content}}).encode()


@pytest.mark.parametrize("shape", ["arrays", "objects", "inside-an-entry", "unclosed"])
def test_deep_nesting_100k_is_a_malformed_line(shape: str) -> None:
    depth = 100_000
    if shape == "arrays":
        line = b"[" * depth + b"]" * depth
    elif shape == "objects":
        line = b'{"a":' * depth + b"1" + b"}" * depth
    elif shape == "inside-an-entry":
        line = _entry_line("X").replace(b'"X"', b"[" * depth + b"]" * depth)
    else:
        line = b"[" * depth
    data = _entry_line("hello") + b"\n" + line + b"\n" + _entry_line("after") + b"\n"
    findings = check_sane(data)
    assert [(f.rule, f.start.line) for f in findings] == [("malformed-line", 2)]
    FUZZ_CASES["transcript: hand-made hostile inputs"] += 1


@pytest.mark.parametrize("size", [1 << 20, 16 << 20])
def test_huge_strings_are_read(size: int) -> None:
    big = "x" * size
    data = (_entry_line(big) + b"\n"
            + dumps({"type": "assistant", "uuid": "a1", "parentUuid": "u1", "sessionId": SID,
                     "message": {"id": "m1", "role": "assistant",
                                 "content": [{"type": "tool_use", "id": "toolu_big", "name": big[:1000],
                                              "input": {"x": big}}]}}).encode()
            + b"\n" + dumps({"type": "user", "uuid": "u2", "parentUuid": "a1", "sessionId": SID,
                             "message": {"role": "user", "content": "next"}}).encode() + b"\n")
    findings = check_sane(data)
    assert [(f.rule, f.start.line, f.tool_use_id) for f in findings] == [("orphan-tool-use", 2, "toolu_big")]
    FUZZ_CASES["transcript: hand-made hostile inputs"] += 1


def test_nul_bytes_and_invalid_utf8() -> None:
    raw_nul = _entry_line("a\x00b".replace("\x00", "NULMARK")).replace(b"NULMARK", b"\x00")  # a raw NUL: not JSON
    escaped_nul = _entry_line("a\x00b")  # \u0000 escape: valid JSON
    bad_utf8 = _entry_line("caf\u00e9").replace("é".encode(), b"\xe9")  # latin-1 byte in a string
    only_nuls = b"\x00" * 64
    data = b"\n".join([escaped_nul, raw_nul, bad_utf8, only_nuls]) + b"\n"
    findings = check_sane(data)
    assert {(f.rule, f.start.line) for f in findings} == {("malformed-line", 2), ("malformed-line", 4)}
    FUZZ_CASES["transcript: hand-made hostile inputs"] += 1


def test_crlf_line_ends_read_like_lf() -> None:
    lines = [dumps(e) for e in [
        {"type": "user", "uuid": "u1", "parentUuid": None, "message": {"role": "user", "content": "hi"}},
        {"type": "assistant", "uuid": "a1", "parentUuid": "u1",
         "message": {"id": "m1", "role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1"}]}},
        {"type": "user", "uuid": "u2", "parentUuid": "a1", "message": {"role": "user", "content": "next"}},
    ]]
    lf = check_sane(("\n".join(lines) + "\n").encode())
    crlf = check_sane(("\r\n".join(lines) + "\r\n").encode())
    def where(fs: list[Finding]) -> list[tuple[str, int, int]]:
        return [(f.rule, f.start.line, f.start.column) for f in fs]

    assert where(crlf) == where(lf)
    assert [f.rule for f in lf] == ["orphan-tool-use"]
    FUZZ_CASES["transcript: hand-made hostile inputs"] += 1


def test_cr_only_file_gets_a_finding() -> None:
    """CR-only line ends, no final LF: one last line that is not a JSON value cut short, so it is
    malformed (a writer mid-line leaves truncated JSON), never a torn tail that checks clean."""
    lines = [dumps(e) for e in [
        {"type": "user", "uuid": "u1", "parentUuid": None, "message": {"role": "user", "content": "hi"}},
        {"type": "assistant", "uuid": "a1", "parentUuid": "u1",
         "message": {"id": "m1", "role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1"}]}},
        {"type": "user", "uuid": "u2", "parentUuid": "a1", "message": {"role": "user", "content": "next"}},
    ]]
    data = ("\r".join(lines) + "\r").encode()
    findings = check_transcript_bytes(data).findings
    assert [(f.rule, f.start.line) for f in findings] == [("malformed-line", 1)]
    # The same bytes cut mid-value are a writer mid-line: no finding until the line is complete.
    assert check_transcript_bytes(data[: len(lines[0]) // 2]).findings == []


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_cli_reports_ids_with_lone_surrogates(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"{SID}.jsonl"
    path.write_text("".join(dumps(e, ascii_only=True) + "\n" for e in [
        {"type": "user", "uuid": "u1", "parentUuid": None, "message": {"role": "user", "content": "hi"}},
        {"type": "assistant", "uuid": "a1", "parentUuid": "u1",
         "message": {"id": "m1", "role": "assistant", "content": [{"type": "tool_use", "id": "toolu_\ud800x"}]}},
        {"type": "user", "uuid": "u2", "parentUuid": "a1", "message": {"role": "user", "content": "next"}},
    ]))
    env = {**isolated_env(tmp_path), "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
    out = run_cli(["check", "--format", fmt, str(path)], env)
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.returncode == 1 and "orphan-tool-use" in out.stdout


def test_a_100mb_single_line_completes() -> None:
    """One 100 MB line, built in memory: a huge valid entry reads clean; the same bytes broken
    are one malformed-line finding. Neither may crash or hang."""
    size = 100 << 20
    head = b'{"type":"user","uuid":"u1","parentUuid":null,"message":{"role":"user","content":"'
    tail = b'"}}'
    body = bytearray(head)
    body += b"a" * (size - len(head) - len(tail))
    body += tail
    data = bytes(body) + b"\n"
    del body
    assert len(data) == size + 1
    assert check_transcript_bytes(data).findings == []
    broken = data[:-5] + b"\n"  # the same line, its end cut off, then a newline
    del data
    findings = check_transcript_bytes(broken).findings
    assert [(f.rule, f.start.line) for f in findings] == [("malformed-line", 1)]
    FUZZ_CASES["transcript: 100 MB single line"] += 2
