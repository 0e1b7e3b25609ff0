"""Fuzzing rewind: on any transcript, damaged or not, rewind either refuses with a RewindError or
writes a copy with no error left; the original is never changed; nothing else is left behind."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rel_strategies import FUZZ, conversations, examples, json_values, paths, replaced, serialize
from rel_support import FUZZ_CASES, SID, broken_lines, entry, tool_use

from rewind_lsp.check import check_transcript_file
from rewind_lsp.findings import Severity
from rewind_lsp.rewind import RewindError, rewind


@st.composite
def broken_conversations(draw: st.DrawFn) -> list[Any]:
    """A generated conversation with its pairing broken (and sometimes a field made nonsense)."""
    conv: list[Any] = draw(conversations())
    kind = draw(st.sampled_from(["drop-line", "duplicate-line", "swap", "retarget-result", "wrong-type"]))
    k = draw(st.integers(min_value=0, max_value=len(conv) - 1))
    if kind == "drop-line" and len(conv) > 1:
        del conv[k]
    elif kind == "duplicate-line":
        conv.insert(k, conv[k])
    elif kind == "swap" and len(conv) > 1:
        j = draw(st.integers(min_value=0, max_value=len(conv) - 1))
        conv[k], conv[j] = conv[j], conv[k]
    elif kind == "retarget-result":
        for e in conv:
            content = e.get("message", {}).get("content") if isinstance(e.get("message"), dict) else None
            if isinstance(content, list):
                for b in content:
                    if isinstance(b, dict) and b.get("type") == "tool_result":
                        b["tool_use_id"] = draw(st.sampled_from(["toolu_gone", "toolu_00a"]))
                        break
    else:
        path = draw(st.sampled_from(paths(conv[k])))
        conv[k] = replaced(conv[k], path, draw(json_values))
    return conv


def _rewind_property(data: bytes, mode: str, in_place: bool) -> str:
    folder = Path(tempfile.mkdtemp(prefix="rewind-fuzz-"))
    try:
        src = folder / f"{SID}.jsonl"
        src.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        try:
            result = rewind(src, mode=mode, in_place=in_place)
        except RewindError as exc:
            assert str(exc)
            assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
            assert sorted(p.name for p in folder.iterdir()) == [src.name], "a refused rewind left files"
            return "refused"
        errors = [f for f in check_transcript_file(str(result.path)).findings if f.severity == Severity.ERROR]
        assert not errors, [(f.rule, f.start.line, f.message) for f in errors]
        if in_place:
            assert result.backup is not None and result.backup.read_bytes() == data
        else:
            assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
            assert result.path.parent == folder and result.path != src
        assert not [p for p in folder.iterdir() if p.name.endswith(".rewind-tmp")]
        for line in result.path.read_bytes().splitlines():
            # The copy is all JSON lines; untouched lines are carried over byte for byte (invalid UTF-8 too).
            json.loads(line.decode("utf-8", errors="replace"))
        return "repaired"
    finally:
        shutil.rmtree(folder)


@settings(FUZZ, max_examples=examples(500))
@given(broken_conversations(), st.sampled_from(["truncate", "patch"]), st.booleans(), st.booleans())
def _rewind_any_broken_conversation(conv: list[Any], mode: str, in_place: bool, bad_byte: bool) -> None:
    FUZZ_CASES["rewind: broken conversations"] += 1
    data = serialize(conv)
    if bad_byte:  # an invalid UTF-8 byte inside every text block (a tool's raw output, say)
        data = data.replace(b'"text":"', b'"text":"\xff')
    outcome = _rewind_property(data, mode, in_place)
    FUZZ_CASES[f"rewind: broken conversations → {outcome}"] += 1


def test_rewind_any_broken_conversation() -> None:
    before = FUZZ_CASES["rewind: broken conversations"]
    _rewind_any_broken_conversation()
    assert FUZZ_CASES["rewind: broken conversations"] - before >= examples(500) // 2


@pytest.mark.parametrize("mode", ["truncate", "patch"])
def test_rewind_line_with_invalid_utf8(tmp_path: Path, mode: str) -> None:
    """A session whose last message line holds an invalid UTF-8 byte: the reader accepts it (with
    replacement), so rewind must too. (Until fixed, rewind died with UnicodeDecodeError.)"""
    lines = [*broken_lines()[:2], entry("user", "u2", "a1", "caf\u00e9 MARK")]
    data = ("\n".join(lines) + "\n").encode().replace(b"MARK", b"\xff")
    _rewind_property(data, mode, False)
    FUZZ_CASES["rewind: hand-made hostile inputs"] += 1


def test_rewind_refuses_what_it_cannot_repair(tmp_path: Path) -> None:
    """No conversation at all, or broken from its first message (truncate): a clear refusal."""
    for data in [b"", b"\n\n", b"garbage\n", b'{"type":"summary"}\n',
                 (entry("assistant", "a1", None, [tool_use("toolu_X")], "m1") + "\n"
                  + entry("user", "u1", "a1", "hi") + "\n").encode()]:
        _rewind_property(data, "truncate", False)
        _rewind_property(data, "patch", False)
        FUZZ_CASES["rewind: hand-made hostile inputs"] += 2
