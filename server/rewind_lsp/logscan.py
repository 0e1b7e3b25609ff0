"""Scan terminal logs for the tool-use 400 and its neighbours, incrementally.

A terminal log is what the terminal was sent, not what it showed: colour and OSC escapes,
carriage-return redraws, and long messages wrapped onto indented continuation lines (even
mid-word, for ids and JSON). Matching happens on what the user saw; findings map back to
the original line and column.

Speed: a whole chunk is cleaned with one regex and searched with each rule's RE2 patterns
and anchors, so the Python-level work is proportional to the candidate lines, not the log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .findings import Finding, Position
from .rules import Rule, RuleSet

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-character escapes.
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CSI = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])")
_TOOL_ID = re.compile(r"\b(?:srv)?toolu_[A-Za-z0-9_]+")
_MESSAGES_INDEX = re.compile(r"\bmessages\.(\d+)")
# Continuation lines of a wrapped message are indented; a logical line spans at most this many.
MAX_CONTINUATION = 16
CHUNK_BYTES = 8 << 20
MAX_FINDINGS_PER_FILE = 2000


def display_line(raw: str) -> tuple[str, list[int]]:
    """What a terminal shows for one line, and for each shown character its index in `raw`."""
    cells: list[str] = []
    origin: list[int] = []
    cursor = 0
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == "\x1b":
            m = _CSI.match(raw, i)
            if m:
                arg, final = m.group(1), m.group(2)
                num = int(arg) if arg.isdigit() else None
                if final == "K":  # erase in line
                    if num in (None, 0):
                        del cells[cursor:], origin[cursor:]
                    elif num == 2:
                        cells, origin = [" "] * cursor, [i] * cursor
                    elif num == 1:
                        for k in range(min(cursor, len(cells))):
                            cells[k] = " "
                elif final == "G":  # cursor to column
                    cursor = max((num or 1) - 1, 0)
                elif final == "C":
                    cursor += num or 1
                elif final == "D":
                    cursor = max(cursor - (num or 1), 0)
                i = m.end()
                continue
            m2 = _ESCAPE.match(raw, i)
            i = m2.end() if m2 else i + 1
            continue
        if c == "\r":
            cursor = 0
        elif c == "\b":
            cursor = max(cursor - 1, 0)
        elif c >= " " or c == "\t":
            while len(cells) < cursor:
                cells.append(" ")
                origin.append(i)
            if cursor < len(cells):
                cells[cursor], origin[cursor] = c, i
            else:
                cells.append(c)
                origin.append(i)
            cursor += 1
        i += 1
    return "".join(cells), origin


def _is_continuation(shown: str) -> bool:
    return bool(shown) and shown[0] in " \t" and bool(shown.strip())


@dataclass(slots=True)
class _Logical:
    text: str
    # (offset in text, physical line index, origin map, leading whitespace stripped)
    parts: list[tuple[int, int, list[int], int]]


def _logical(lines: list[str], first: int, last_allowed: int) -> _Logical:
    text_parts: list[str] = []
    parts: list[tuple[int, int, list[int], int]] = []
    pos = 0
    k = first
    while k <= last_allowed and k - first < MAX_CONTINUATION:
        shown, origin = display_line(lines[k])
        if k > first:
            if not _is_continuation(shown):
                break
            stripped = len(shown) - len(shown.lstrip(" \t"))
        else:
            stripped = 0
        piece = shown[stripped:]
        parts.append((pos, k, origin, stripped))
        text_parts.append(piece)
        pos += len(piece)
        k += 1
    return _Logical("".join(text_parts), parts)


def _position(logical: _Logical, offset: int, lines: list[str], first_line_no: int) -> Position:
    for start, k, origin, stripped in reversed(logical.parts):
        if offset >= start or start == 0:
            idx = stripped + (offset - start)
            raw_index = origin[idx] if idx < len(origin) else len(lines[k])
            prefix = lines[k][:raw_index]
            return Position(first_line_no + k, raw_index + 1, len(prefix.encode("utf-16-le")) // 2)
    raise AssertionError("offset before the logical line")


def _match(rule: Rule, text: str) -> tuple[int, int] | None:
    if any(p.search(text) for p in rule.not_patterns):
        return None
    best: tuple[int, int] | None = None
    for p in rule.patterns:
        m = p.search(text)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), m.end())
    return best


def _finding(rule: Rule, logical: _Logical, span: tuple[int, int], lines: list[str], first_line_no: int) -> Finding:
    ids = list(dict.fromkeys(_TOOL_ID.findall(logical.text)))
    facts: dict[str, str] = {}
    if ids:
        facts["tool_use_ids"] = ", ".join(ids)
    m = _MESSAGES_INDEX.search(logical.text)
    if m:
        facts["messages_index"] = m.group(1)
    facts["text"] = logical.text[:2000]
    message = rule.title
    if ids:
        message += f" ({', '.join(ids[:5])}{'…' if len(ids) > 5 else ''})"
    if "messages_index" in facts:
        message += f" at messages.{facts['messages_index']}"
    return Finding(
        rule=rule.id,
        severity=rule.severity,
        message=message,
        start=_position(logical, span[0], lines, first_line_no),
        end=_position(logical, max(span[1] - 1, span[0]), lines, first_line_no),
        tool_use_id=ids[0] if ids else None,
        facts=facts,
    )


def _bump_end(f: Finding) -> Finding:
    # `end` was computed for the last matched character; LSP ranges are end-exclusive.
    e = f.end
    return Finding(f.rule, f.severity, f.message, f.start, Position(e.line, e.column + 1, e.utf16 + 1),
                   f.tool_use_id, f.related, f.facts)


def scan_text(text: str, rules: Iterable[Rule], first_line_no: int = 1) -> list[Finding]:
    """Findings in `text` (whole lines). Line numbers start at `first_line_no`."""
    rules = [r for r in rules if r.patterns]
    if not text or not rules:
        return []
    clean = _ESCAPE.sub("", text) if "\x1b" in text else text
    clean = clean.replace("\r\n", "\n")
    # Candidate positions: any pattern or anchor hit in the cleaned text.
    hits: set[int] = set()
    for rule in rules:
        for p in rule.patterns:
            hits.update(m.start() for m in p.finditer(clean))
    if not hits:
        return []
    lines = text.split("\n")
    clean_newlines = [m.start() for m in re.finditer("\n", clean)] if len(hits) > 0 else []
    import bisect

    candidate_lines = sorted({bisect.bisect_left(clean_newlines, h) for h in hits})
    findings: dict[tuple[int, str], Finding] = {}
    for k in candidate_lines:
        # Walk back to the start of the logical line this hit belongs to.
        first = k
        while first > 0 and k - first < MAX_CONTINUATION and _is_continuation(display_line(lines[first])[0]):
            first -= 1
        for start in range(first, k + 1):
            logical = _logical(lines, start, len(lines) - 1)
            for rule in rules:
                span = _match(rule, logical.text)
                if span is None or span[0] >= len(logical.text):
                    continue
                f = _bump_end(_finding(rule, logical, span, lines, first_line_no))
                findings.setdefault((f.start.line, rule.id), f)
            if any(key[0] == first_line_no + start for key in findings):
                break
    return sorted(findings.values(), key=lambda f: f.sort_key)


@dataclass(slots=True)
class LogState:
    """Where an incremental scan of one log file stands."""

    offset: int = 0  # bytes already scanned completely
    line: int = 1  # line number at `offset`
    identity: tuple[int, int] | None = None  # (device, inode) of the file scanned
    findings: dict[tuple[int, str], Finding] = field(default_factory=dict)

    def all(self) -> list[Finding]:
        return sorted(self.findings.values(), key=lambda f: f.sort_key)


def scan_file(path: str, state: LogState, rules: RuleSet | Iterable[Rule]) -> list[Finding]:
    """Scan what was appended since `state`; returns the NEW findings and updates `state`.

    Truncation (the file is shorter than what was scanned) and rotation (another inode at
    the path) restart the scan from the beginning.
    """
    log_rules = rules.for_logs() if isinstance(rules, RuleSet) else [r for r in rules if r.patterns]
    new: list[Finding] = []
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        identity = (st.st_dev, st.st_ino)
        if state.identity != identity or st.st_size < state.offset:
            state.offset, state.line, state.findings = 0, 1, {}
            state.identity = identity
        while True:
            f.seek(state.offset)
            chunk = f.read(CHUNK_BYTES)
            at_eof = len(chunk) < CHUNK_BYTES
            end = chunk.rfind(b"\n")
            if end < 0:
                if at_eof:
                    break  # nothing, or an unfinished last line: scan it once it ends
                end = len(chunk) - 1  # one giant line: scan it in pieces
            body = chunk[: end + 1]
            raw_lines = body.split(b"\n")[:-1]
            for finding in scan_text(body.decode("utf-8", errors="replace"), log_rules, state.line):
                key = (finding.start.line, finding.rule)
                if key not in state.findings and len(state.findings) < MAX_FINDINGS_PER_FILE:
                    state.findings[key] = finding
                    new.append(finding)
            # The last logical line may go on in the next append: scan it again then.
            keep = len(raw_lines) - 1
            while keep > 0 and len(raw_lines) - keep < MAX_CONTINUATION and _is_continuation(
                display_line(raw_lines[keep].decode("utf-8", errors="replace"))[0]
            ):
                keep -= 1
            if keep > 0:
                state.offset += sum(len(x) + 1 for x in raw_lines[:keep])
                state.line += keep
            else:
                state.offset += len(body)
                state.line += len(raw_lines)
            if at_eof:
                break
    return new
