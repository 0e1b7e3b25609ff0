"""Scan terminal logs for the tool-use 400 and its neighbours, incrementally.

A terminal log is what the terminal was sent, not what it showed: colour and OSC escapes,
carriage-return redraws, and long messages wrapped onto indented continuation lines (even
mid-word, for ids and JSON). Matching happens on what the user saw; findings map back to
the original line and column.

Speed: a whole chunk is cleaned with one regex and searched with each rule's RE2 patterns
and anchors, so the Python-level work is proportional to the candidate lines, not the log.
"""

from __future__ import annotations

import bisect
import itertools
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .findings import Finding, Position
from .rules import Rule, RuleSet

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-character escapes.
# An OSC never spans lines: an unterminated one (a torn write) must not swallow the lines after it.
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
# A line break into an indented continuation line, as `_logical` joins them (mid-word wraps too).
_WRAP = re.compile(rb"\n[ \t]+(?=[^ \t\n])")
_CSI = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])")
_TOOL_ID = re.compile(r"\b(?:srv)?toolu_[A-Za-z0-9_]+")
_MESSAGES_INDEX = re.compile(r"\bmessages\.(\d+)")
# Continuation lines of a wrapped message are indented; a logical line spans at most this many.
MAX_CONTINUATION = 16
CHUNK_BYTES = 8 << 20
MAX_FINDINGS_PER_FILE = 2000
# At most this much of a file's end is read again on the next append (a logical line still growing).
HOLD_BACK_BYTES = 64 << 10
# How many bytes before the scanned offset are remembered to notice a file rewritten in place.
TAIL_BYTES = 256


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def display_line(raw: str) -> tuple[str, list[int]]:
    """What a terminal shows for one line, and for each shown character its index in `raw`."""
    if not _CONTROL.search(raw):  # nothing to interpret (the common case): shown as written
        return raw, list(range(len(raw)))
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


def _logical(lines: list[str], first: int, last_allowed: int,
             display: Callable[[int], tuple[str, list[int]]] | None = None) -> _Logical:
    text_parts: list[str] = []
    parts: list[tuple[int, int, list[int], int]] = []
    pos = 0
    k = first
    while k <= last_allowed and k - first < MAX_CONTINUATION:
        shown, origin = display(k) if display else display_line(lines[k])
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


def _join_wraps(clean: bytes) -> tuple[bytes, list[int], list[int]]:
    """`clean` with every break into an indented continuation line removed, and the way back:
    from joined offset `gap_at[k]` on, add `gap_shift[k]` to get the offset in `clean`."""
    gaps = [m.span() for m in _WRAP.finditer(clean)]
    if not gaps:
        return clean, [], []
    gap_shift = list(itertools.accumulate(end - start for start, end in gaps))
    gap_at = [end - shift for (_, end), shift in zip(gaps, gap_shift, strict=True)]
    return _WRAP.sub(b"", clean), gap_at, gap_shift


def scan_text(text: str, rules: Iterable[Rule], first_line_no: int = 1) -> list[Finding]:
    """Findings in `text` (whole lines). Line numbers start at `first_line_no`."""
    rules = [r for r in rules if r.patterns]
    if not text or not rules:
        return []
    clean_text = _ESCAPE.sub("", text) if "\x1b" in text else text
    # Searched as UTF-8 bytes, encoded once: the re2 wrapper re-encodes a str on every call.
    # Offsets are bytes here; only the line they fall on is used.
    clean = clean_text.replace("\r\n", "\n").encode("utf-8", "surrogatepass")
    # Candidate positions: any pattern hit in the cleaned text, and in the same text with wrapped
    # continuation lines joined back (a message wrapped mid-word only matches there).
    hits: dict[str, set[int]] = {}
    joined, gap_at, gap_shift = _join_wraps(clean)
    for rule in rules:
        found: set[int] = set()
        for p in rule.patterns:
            found.update(m.start() for m in p.finditer(clean))
            if gap_at:
                for m in p.finditer(joined):
                    k = bisect.bisect_right(gap_at, m.start()) - 1
                    found.add(m.start() + (gap_shift[k] if k >= 0 else 0))
        if found:
            hits[rule.id] = found
    if not hits:
        return []
    lines = text.split("\n")
    clean_newlines = [m.start() for m in re.finditer(b"\n", clean)]
    # The lines each rule has a hit on; only those rules are tried on a logical line.
    hit_lines = {rid: {bisect.bisect_left(clean_newlines, h) for h in found} for rid, found in hits.items()}
    rules = [r for r in rules if r.id in hit_lines]

    candidate_lines = sorted(set().union(*hit_lines.values()))
    findings: dict[tuple[int, str], Finding] = {}
    # Per rule, the (start, end) of what is already reported, so a wrapped message read again
    # from one of its continuation lines is not reported twice; and the physical lines of logical
    # lines its not_patterns excluded (a prompt quoting the error, wrapped), except response lines.
    # (Spans are kept by start line; a span covers at most MAX_CONTINUATION lines, so only that many
    # lines are looked at per match: linear in the number of findings.)
    reported: dict[tuple[str, int], list[tuple[int, tuple[int, int]]]] = {}
    excluded: dict[str, set[int]] = {}
    done: set[int] = set()
    display_cache: dict[int, tuple[str, list[int]]] = {}

    def display(k: int) -> tuple[str, list[int]]:
        if k not in display_cache:
            display_cache[k] = display_line(lines[k])
        return display_cache[k]

    for k in candidate_lines:
        # Walk back to the start of the logical line this hit belongs to.
        first = k
        while first > 0 and k - first < MAX_CONTINUATION and _is_continuation(display(first)[0]):
            first -= 1
        # Every logical line from there to the hit: one logical line may hold several messages (a
        # `●` line with two `⎿` lines below it), and each start is read once per chunk.
        for start in range(first, k + 1):
            if start in done:
                continue
            done.add(start)
            logical = _logical(lines, start, len(lines) - 1, display)
            # A finding is reported from the logical line that begins on its first line.
            first_len = logical.parts[1][0] if len(logical.parts) > 1 else len(logical.text)
            for rule in rules:
                lines_hit = hit_lines[rule.id]
                if not any(x in lines_hit for x in range(start, start + len(logical.parts))):
                    continue
                if any(p.search(logical.text) for p in rule.not_patterns):
                    excluded.setdefault(rule.id, set()).update(part[1] for part in logical.parts)
                    continue
                if start not in lines_hit:
                    continue
                if start in excluded.get(rule.id, ()) and not logical.text.lstrip().startswith("⎿"):
                    continue
                starts: set[tuple[int, int]] = set()
                for p in rule.patterns:
                    for m in p.finditer(logical.text):
                        if m.start() >= first_len:
                            break
                        starts.add((m.start(), m.end()))
                for span in sorted(starts):
                    f = _bump_end(_finding(rule, logical, span, lines, first_line_no))
                    at = (f.start.line, f.start.column)
                    if any((line, col) <= at <= end
                           for line in range(f.start.line - MAX_CONTINUATION, f.start.line + 1)
                           for col, end in reported.get((rule.id, line), ())):
                        continue
                    here = reported.setdefault((rule.id, f.start.line), [])
                    here.append((f.start.column, (f.end.line, f.end.column)))
                    findings.setdefault((f.start.line, rule.id), f)
    return sorted(findings.values(), key=lambda f: f.sort_key)


@dataclass(slots=True)
class LogState:
    """Where an incremental scan of one log file stands."""

    offset: int = 0  # bytes already scanned completely
    line: int = 1  # line number at `offset`
    identity: tuple[int, int] | None = None  # (device, inode) of the file scanned
    findings: dict[tuple[int, str], Finding] = field(default_factory=dict)
    tail: bytes = b""  # the bytes just before `offset`: if they change, the file was rewritten

    def all(self) -> list[Finding]:
        return sorted(self.findings.values(), key=lambda f: f.sort_key)


def scan_file(path: str, state: LogState, rules: RuleSet | Iterable[Rule]) -> list[Finding]:
    """Scan what was appended since `state`; returns the NEW findings and updates `state`.

    Truncation (the file is shorter than what was scanned, or the bytes before `offset` are
    no longer the same: truncated and rewritten past it, as `logrotate copytruncate` does) and
    rotation (another inode at the path) restart the scan from the beginning.
    """
    log_rules = rules.for_logs() if isinstance(rules, RuleSet) else [r for r in rules if r.patterns]
    new: list[Finding] = []
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        identity = (st.st_dev, st.st_ino)
        rewritten = False
        if state.identity == identity and state.tail and state.offset <= st.st_size:
            f.seek(state.offset - len(state.tail))
            rewritten = f.read(len(state.tail)) != state.tail
        if state.identity != identity or st.st_size < state.offset or rewritten:
            state.offset, state.line, state.findings, state.tail = 0, 1, {}, b""
            state.identity = identity
        known = set(state.findings)
        # What is read again from `offset` on (a held-back last line) is judged afresh.
        state.findings = {k: v for k, v in state.findings.items() if k[0] < state.line}
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
                    if key not in known:
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
            elif not at_eof or not raw_lines or len(body) > HOLD_BACK_BYTES:
                state.offset += len(body)
                state.line += len(raw_lines)
            # else: all that was read is one logical line that may still grow (a wrapped message
            # whose continuation is not written yet): read it again with the next append.
            if at_eof:
                break
        f.seek(max(state.offset - TAIL_BYTES, 0))
        state.tail = f.read(min(state.offset, TAIL_BYTES))
    return new
