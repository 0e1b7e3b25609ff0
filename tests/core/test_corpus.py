"""The real transcripts in ../shared/corpus/real (see its PROVENANCE.md): every one is healthy and
must check clean; removing a tool_result line from one must give exactly the orphan-tool-use of
that id, with the severity of where it was (live chain: error; pre-compaction history: information).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from core_support import CORPUS, corpus_files, run_cli, serious, summary

from rewind_lsp.check import check_log_file, check_transcript_bytes, check_transcript_file
from rewind_lsp.findings import Severity

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared real corpus is absent ({CORPUS})")

TRANSCRIPTS = corpus_files("*.jsonl")
TERMINALS = corpus_files("*.terminal.txt")
# Removals per file: all of them in small files, an evenly spread deterministic sample in big ones.
SAMPLE = 30


def _id(p: Path) -> str:
    return str(p.relative_to(CORPUS))


def test_corpus_is_present_and_complete() -> None:
    names = {p.name for p in TRANSCRIPTS}
    assert len(TRANSCRIPTS) >= 10
    assert {"short.jsonl", "subagent.jsonl", "agent-aac57f5.jsonl",
            "1af7fc5e-8455-4414-9ccd-011d40f70b2a.jsonl"} <= names
    assert len(TERMINALS) == 2


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=_id)
def test_real_transcript_checks_clean(path: Path) -> None:
    check = check_transcript_file(str(path))
    assert serious(check.findings) == [], summary(check.findings)
    assert check.transcript.bad_lines == []


def test_cli_check_on_the_whole_corpus_exits_0_with_no_errors() -> None:
    proc = run_cli("check", "--format", "json", str(CORPUS))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r for r in results if r["severity"] in ("error", "warning")] == []


def _result_lines(lines: list[bytes]) -> list[tuple[int, list[str]]]:
    out = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        d = json.loads(raw)
        content = d.get("message", {}).get("content") if isinstance(d.get("message"), dict) else None
        if d.get("type") != "user" or not isinstance(content, list):
            continue
        ids = [b["tool_use_id"] for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if ids:
            out.append((i + 1, ids))
    return out


def _sample(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(k * step)] for k in range(n)]


@pytest.mark.parametrize("path", [p for p in TRANSCRIPTS if b'"tool_result"' in p.read_bytes()], ids=_id)
def test_removing_a_tool_result_gives_orphan_tool_use(path: Path) -> None:
    data = path.read_bytes()
    lines = data.split(b"\n")
    results = _result_lines(lines)
    original = check_transcript_bytes(data)
    # Where each line sits in the original: its conversation kind, and whether removing it leaves its
    # tool_use legitimately pending (it is alone in the last message of its conversation).
    where: dict[int, tuple[str, bool]] = {}
    for conv in original.conversations:
        for k, msg in enumerate(conv.messages):
            for e in msg.entries:
                pending = k == len(conv.messages) - 1 and len(msg.entries) == 1
                where.setdefault(e.line, (conv.kind, pending))
    checked = 0
    for line_no, ids in _sample(results, SAMPLE):
        kind, pending = where[line_no]
        if pending:
            continue  # a trailing result, or the last one before a compaction: legitimately pending
        broken = b"\n".join(lines[: line_no - 1] + lines[line_no:])
        fs = check_transcript_bytes(broken).findings
        expected = Severity.INFORMATION if kind == "history" else Severity.ERROR
        got = sorted((f.rule, f.severity, f.tool_use_id) for f in fs)
        assert got == sorted(("orphan-tool-use", expected, tid) for tid in ids), (line_no, kind, summary(fs))
        # Reported at the line of the tool_use, which is before the removed line.
        assert all(f.start.line < line_no for f in fs)
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("path", TERMINALS, ids=_id)
def test_real_terminal_captures_have_no_400(path: Path) -> None:
    fs = check_log_file(str(path))
    assert [f for f in fs if f.rule == "tool-use-concurrency-400"] == []
    assert [f for f in fs if f.severity <= Severity.WARNING] == []
