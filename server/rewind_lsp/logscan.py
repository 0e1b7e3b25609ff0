"""Scan terminal logs for the tool-use 400 and its neighbours, incrementally.

A terminal log is what the terminal was sent, not what it showed: colour and OSC escapes,
carriage-return redraws, and long messages wrapped onto indented continuation lines (even
mid-word, for ids and JSON). Matching happens on what the user saw; findings map back to
the original line and column.

What is a finding (the reference in tests/core/test_logscan_equivalence.py states it as code):
a rule matches on the *logical line* that begins at a physical line (that line as displayed,
plus up to MAX_CONTINUATION - 1 indented continuation lines, indentation dropped), with the
match starting on its first line; and the match must also be in what was written, not only
assembled on screen by redraws: one of the rule's patterns matches the line's *written text*
(escape sequences removed; with `wrap`, its continuation lines joined too), starting on it.

Speed: the raw bytes are searched once per anchor byte with RE2 patterns derived from the
rules (escape sequences, and for `wrap` rules soft wraps, accepted between any two characters),
each starting at a rare literal byte so RE2 skips ahead with memchr. Only the few lines that
hit are decoded, cleaned and mapped back; the rest of the log is never copied or decoded.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2

from .filemark import FileMark, rewritten, take_mark
from .findings import Finding, Position
from .rules import Rule, RuleSet

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-character escapes.
# An OSC never spans lines: an unterminated one (a torn write) must not swallow the lines after it.
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CSI = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])")
_TOOL_ID = re.compile(r"\b(?:(?:srv)?toolu_[A-Za-z0-9_]+|call_[A-Za-z0-9]{8,})")  # Claude Code; Codex (call_…)
_MESSAGES_INDEX = re.compile(r"\bmessages\.(\d+)(?:\.content\.(\d+))?")
Buffer = bytes | bytearray
# Continuation lines of a wrapped message are indented; a logical line spans at most this many.
MAX_CONTINUATION = 16
CHUNK_BYTES = 8 << 20
MAX_FINDINGS_PER_FILE = 2000
# At most this much of a file's end is read again on the next append (a logical line still growing).
HOLD_BACK_BYTES = 64 << 10


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


def written_text(raw: str) -> str:
    """A line as written: escape sequences removed, and the CR of a CRLF ending."""
    text = _ESCAPE.sub("", raw) if "\x1b" in raw else raw
    return text[:-1] if text.endswith("\r") else text


def _is_continuation(shown: str) -> bool:
    return bool(shown) and shown[0] in " \t" and bool(shown.strip())


# --- the raw-bytes prefilter --------------------------------------------------------------------
#
# Each pattern is rewritten into a Latin-1 RE2 pattern over the raw bytes that matches wherever
# the pattern matches a line's written text (a superset: anything it lets through is checked
# exactly afterwards). Every character-consuming atom is followed by `_GAP` (escape sequences;
# for `wrap` rules also a line break into the next line), anchors are dropped, counted repeats
# relaxed, classes widened to bytes (any non-ASCII character: a run of bytes >= 0x80, which also
# covers invalid UTF-8 shown as U+FFFD). Then the pattern is cut to start at a rare literal byte
# and to stop before an unbounded wildcard, so RE2 runs memchr between candidates instead of its
# DFA over every byte; patterns sharing that byte are searched together.

_ESC_BYTES = rb"\x1b(?:\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]|\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|[\x40-\x5a\x5c-\x5f])"
_GAP = b"(?:" + _ESC_BYTES + b")*"
# A soft wrap: the end of a line (its CR too) and the indentation of the next, escapes anywhere.
_WRAP_GAP = b"(?:" + _ESC_BYTES + rb"|\r?(?:" + _ESC_BYTES + rb")*\n(?:" + _ESC_BYTES + rb"|[ \t])*)*"
_NON_ASCII = rb"[\x80-\xff]+"
# Rough share of each byte in terminal output; only used to pick the rarest anchor.
_FREQ = {**{c: 0.15 for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}, **dict(zip(
    "etaoinshrdlcumwfgypbvkjxqz", (10, 7.5, 6.5, 6, 5.5, 5.5, 5, 5, 5, 3.5, 3.3, 2.2, 2.2, 2, 1.9, 1.8, 1.6, 1.6,
                                    1.5, 1.2, 0.8, 0.6, 0.1, 0.15, 0.08, 0.06), strict=True)),
         " ": 15, "`": 0.01, "{": 0.05, "}": 0.05, "_": 0.1, '"': 0.5, ".": 1, ",": 1, "-": 0.8, "/": 0.5}
_MIN_LITERALS = 4  # a cut pattern needs this many literal characters to be selective
_MAX_ITEMS = 40


class _Unsupported(Exception):
    """Syntax the rewriter does not know: every line is then checked exactly (slow, never wrong)."""


# The parse tree. (Plain classes: a dataclass costs ~1 ms of import time each, on the CLI's start.)
class _Atom:
    __slots__ = ("flags", "kind", "src")

    def __init__(self, kind: str, src: str, flags: str) -> None:
        # kind: "lit" (one character), "class" (anything else consuming one character), "zero"
        self.kind, self.src, self.flags = kind, src, flags


class _Repeat:
    __slots__ = ("hi", "lo", "node")

    def __init__(self, node: Any, lo: int, hi: int) -> None:
        self.node, self.lo, self.hi = node, lo, hi  # hi -1: unbounded


class _Seq:
    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items


class _Alt:
    __slots__ = ("branches",)

    def __init__(self, branches: list[Any]) -> None:
        self.branches = branches


class _Parser:
    """Just enough of RE2's syntax to find where one character ends and the next begins."""

    def __init__(self, pattern: str) -> None:
        self.s, self.i = pattern, 0

    def parse(self) -> Any:
        node = self.alt("")
        if self.i != len(self.s):
            raise _Unsupported(self.s)
        return node

    def alt(self, flags: str) -> Any:
        branches = [self.seq(flags)]
        while self.i < len(self.s) and self.s[self.i] == "|":
            self.i += 1
            branches.append(self.seq(flags))
        return branches[0] if len(branches) == 1 else _Alt(branches)

    def seq(self, flags: str) -> _Seq:
        items: list[Any] = []
        s = self.s
        while self.i < len(s) and s[self.i] not in "|)":
            if s.startswith("(?", self.i) and (m := re.match(r"\(\?([imsU-]*)\)", s[self.i:])):
                self.i += m.end()
                flags = _set_flags(flags, m.group(1))  # for the rest of this group
                continue
            node = self.atom(flags)
            items.append(self.quantified(node))
        return _Seq(items)

    def quantified(self, node: Any) -> Any:
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c in "*+?":
                lo, hi = {"*": (0, -1), "+": (1, -1), "?": (0, 1)}[c]
                self.i += 1
            elif c == "{" and (m := re.match(r"\{(\d+)(,(\d*))?\}", s[self.i:])):
                lo = int(m.group(1))
                hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else -1)
                self.i += m.end()
            else:
                return node
            if self.i < len(s) and s[self.i] == "?":  # lazy: the same set of matches
                self.i += 1
            node = _Repeat(node, lo, hi)
        return node

    def atom(self, flags: str) -> Any:
        s, i = self.s, self.i
        c = s[i]
        if c == "(":
            inner_flags = flags
            if s.startswith("(?", i):
                m = re.match(r"\(\?(?::|P?<\w+>|([imsU-]*):)", s[i:])
                if not m:
                    raise _Unsupported(s)
                if m.group(1) is not None:
                    inner_flags = _set_flags(flags, m.group(1))
                self.i += m.end()
            else:
                self.i += 1
            node = self.alt(inner_flags)
            if self.i >= len(s) or s[self.i] != ")":
                raise _Unsupported(s)
            self.i += 1
            return node
        if c == "[":
            j = i + 1
            if j < len(s) and s[j] == "^":
                j += 1
            if j < len(s) and s[j] == "]":
                j += 1
            while j < len(s) and s[j] != "]":
                if s[j] == "\\":
                    j += 2
                elif s.startswith("[:", j):
                    end = s.find(":]", j + 2)
                    if end < 0:
                        raise _Unsupported(s)
                    j = end + 2
                else:
                    j += 1
            if j >= len(s):
                raise _Unsupported(s)
            self.i = j + 1
            return _Atom("class", s[i:j + 1], flags)
        if c == "\\":
            if i + 1 >= len(s):
                raise _Unsupported(s)
            e = s[i + 1]
            if e in "bBAz":
                self.i = i + 2
                return _Atom("zero", "", flags)
            if e in "dDsSwWC":
                self.i = i + 2
                return _Atom("class", s[i:i + 2], flags)
            if e in "pP":
                m = re.match(r"\\[pP](\{\^?\w+\}|\w)", s[i:])
                if not m:
                    raise _Unsupported(s)
                self.i = i + m.end()
                return _Atom("class", m.group(), flags)
            if e == "Q":
                end = s.find("\\E", i + 2)
                text = s[i + 2:] if end < 0 else s[i + 2:end]
                self.i = len(s) if end < 0 else end + 2
                return _Seq([_Atom("lit", ch, flags) for ch in text])
            if e == "x":
                m = re.match(r"\\x(\{[0-9A-Fa-f]+\}|[0-9A-Fa-f]{2})", s[i:])
                if not m:
                    raise _Unsupported(s)
                self.i = i + m.end()
                return _Atom("lit", chr(int(m.group(1).strip("{}"), 16)), flags)
            if e in "01234567":
                m = re.match(r"\\([0-7]{1,3})", s[i:])
                assert m is not None
                self.i = i + m.end()
                return _Atom("lit", chr(int(m.group(1), 8)), flags)
            controls = {"a": "\a", "f": "\f", "t": "\t", "n": "\n", "r": "\r", "v": "\v"}
            if e in controls:
                self.i = i + 2
                return _Atom("lit", controls[e], flags)
            if e.isalnum():
                raise _Unsupported(s)
            self.i = i + 2
            return _Atom("lit", e, flags)
        self.i = i + 1
        if c in "^$":
            return _Atom("zero", "", flags)
        if c == ".":
            return _Atom("class", ".", flags)
        return _Atom("lit", c, flags)


def _set_flags(flags: str, change: str) -> str:
    on, _, off = change.partition("-")
    return "".join(sorted((set(flags) | set(on)) - set(off)))


_CLASS_BYTES: dict[tuple[str, str], tuple[bytes, bool]] = {}
_ASCII = "".join(chr(b) for b in range(128) if b != 10)


def _class_bytes(atom: _Atom) -> tuple[bytes, bool]:
    """The ASCII bytes (never a newline: written text has none) one character of `atom` can be,
    and whether it may also be a non-ASCII character."""
    key = (atom.src, atom.flags)
    if key not in _CLASS_BYTES:
        rx = re2.compile(f"(?{atom.flags}:{atom.src})" if atom.flags else atom.src)
        # One search over every ASCII character but the newline: the atom matches exactly one.
        ascii_ = bytes(sorted({ord(m.group()) for m in rx.finditer(_ASCII)}))
        src = atom.src
        narrow = src in ("\\d", "\\s", "\\w") or (
            src.startswith("[") and not src.startswith("[^") and src.isascii()
            and not re.search(r"\\[pPDSWC]|\[:\^", src))
        # Case folding reaches two non-ASCII letters from ASCII ones (KELVIN SIGN, LONG S).
        wide = not narrow or any(rx.fullmatch(ch) for ch in "\u212a\u017f")
        _CLASS_BYTES[key] = (ascii_, wide)
    return _CLASS_BYTES[key]


def _byte_class(data: bytes) -> bytes:
    return b"[" + b"".join(b"\\x%02x" % b for b in data) + b"]" if data else b"[^\\x00-\\xff]"


def _emit(node: Any, gap: bytes) -> bytes:
    if isinstance(node, _Seq):
        return b"".join(_emit(x, gap) for x in node.items)
    if isinstance(node, _Alt):
        return b"(?:" + b"|".join(_emit(x, gap) for x in node.branches) + b")"
    if isinstance(node, _Repeat):
        inner = _emit(node.node, gap)
        if not inner or node.hi == 0:
            return b""
        if node.lo >= 1 and node.hi == 1:
            return inner
        return b"(?:" + inner + b")" + (b"?" if node.hi == 1 else b"*" if node.lo == 0 else b"+")
    atom: _Atom = node
    if atom.kind == "zero":
        return b""
    if atom.kind == "lit":
        c = atom.src
        if c == "\n":
            return b"[^\\x00-\\xff]"  # written text holds no newline
        if "i" in atom.flags and c.lower() != c.upper():
            if not c.isascii():
                return b"(?:" + _NON_ASCII + b")" + gap
            folds = {c.lower(), c.upper()} | ({"\u212a"} if c in "kK" else set()) | ({"\u017f"} if c in "sS" else set())
            return b"(?:" + b"|".join(b"".join(b"\\x%02x" % b for b in f.encode()) for f in sorted(folds)) + b")" + gap
        if c == "\ufffd":  # stands for invalid UTF-8 too
            return b"(?:" + _NON_ASCII + b")" + gap
        return b"".join(b"\\x%02x" % b for b in c.encode()) + gap
    ascii_, wide = _class_bytes(atom)
    body = _byte_class(ascii_)
    return (b"(?:" + body + b"|" + _NON_ASCII + b")" if wide else body) + gap


def _literal_count(items: Sequence[Any]) -> int:
    return sum(1 for x in items if isinstance(x, _Atom) and x.kind == "lit")


def _broad(node: Any) -> bool:
    """An unbounded repeat of a wide class (`[^\\n]*`, `.+`): it would let a prefilter match run on."""
    if not (isinstance(node, _Repeat) and node.hi == -1 and isinstance(node.node, _Atom)):
        return False
    atom = node.node
    if atom.kind != "class":
        return False
    ascii_, wide = _class_bytes(atom)
    return wide or len(ascii_) > 40


def _branches(pattern: str) -> list[list[Any]] | None:
    """The top-level alternatives of `pattern`, each as a sequence of items; None: not understood."""
    try:
        tree = _Parser(pattern).parse()
    except (_Unsupported, re2.error, ValueError, RecursionError):  # RE2 allows 1,000 nested groups
        return None
    return [b.items if isinstance(b, _Seq) else [b] for b in (tree.branches if isinstance(tree, _Alt) else [tree])]


def _anchors(items: list[Any]) -> list[tuple[float, int, str]]:
    """(rough frequency, index, character) of each literal a prefilter pattern could start at:
    case-sensitive ASCII, with enough literals after it to be selective."""
    out = []
    for j, x in enumerate(items):
        if (isinstance(x, _Atom) and x.kind == "lit" and "i" not in x.flags and x.src.isascii() and x.src != "\n"
                and _literal_count(_cut(items[j:])) >= _MIN_LITERALS):
            out.append((_FREQ.get(x.src, 0.3), j, x.src))
    return out


def _cut(items: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for x in items[:_MAX_ITEMS]:
        if _broad(x):
            break
        out.append(x)
    return out


_LATIN1 = re2.Options()
_LATIN1.encoding = re2.Options.Encoding.LATIN1
_LATIN1.never_capture = True
_LATIN1.max_mem = 64 << 20


class _Prefilter:
    __slots__ = ("every_line", "searches")

    def __init__(self, searches: list[Any], every_line: bool) -> None:
        self.searches = searches  # compiled Latin-1 RE2 patterns; a hit's line is a candidate
        self.every_line = every_line  # some pattern could not be rewritten: every line is a candidate


_PREFILTERS: dict[tuple[int, ...], tuple[list[Rule], _Prefilter]] = {}


def _prefilter(rules: list[Rule]) -> _Prefilter:
    key = tuple(id(r) for r in rules)
    cached = _PREFILTERS.get(key)
    if cached is not None and all(a is b for a, b in zip(cached[0], rules, strict=True)):
        return cached[1]
    every_line = False
    branches: list[tuple[bytes, list[Any], list[tuple[float, int, str]]]] = []
    for rule in rules:
        for p in rule.patterns:
            try:
                parsed = _branches(p.pattern)
                if parsed is None:
                    raise _Unsupported(p.pattern)
                branches += [(_WRAP_GAP if rule.wrap else _GAP, items, _anchors(items)) for items in parsed]
            except (_Unsupported, re2.error, ValueError, RecursionError):
                every_line = True  # every line is checked exactly: slow, never wrong
    # Among the anchors about as rare as a branch's rarest, take the one most branches can use:
    # each distinct anchor byte costs one pass over the bytes.
    near = [[a for a in opts if a[0] <= 1.5 * min(o[0] for o in opts)] for _, _, opts in branches if opts]
    popular: dict[str, int] = {}
    for opts in near:
        for c in {a[2] for a in opts}:
            popular[c] = popular.get(c, 0) + 1
    groups: dict[bytes | None, list[bytes]] = {}
    for gap, items, opts in branches:
        try:
            if not opts:
                raw = _emit(_Seq(_cut(items)), gap)
                every_line = every_line or not raw
                groups.setdefault(None, []).append(raw)
                continue
            best = min(o[0] for o in opts)
            _, j, c = max((a for a in opts if a[0] <= 1.5 * best), key=lambda a: (popular[a[2]], -a[0], -a[1]))
            groups.setdefault(c.encode(), []).append(_emit(_Seq(_cut(items[j:])), gap))
        except (re2.error, ValueError, RecursionError):
            every_line = True
    searches = []
    for _, raws in sorted(groups.items(), key=lambda kv: kv[0] or b""):
        if every_line:
            break
        try:
            # One alternation per anchor byte: RE2 factors the common first byte out and skips to it.
            searches.append(re2.compile(b"|".join(b"(?:" + r + b")" for r in dict.fromkeys(raws)), _LATIN1))
        except re2.error:  # too big for RE2's memory budget
            every_line = True
    pf = _Prefilter(searches, every_line)
    if len(_PREFILTERS) > 64:
        _PREFILTERS.clear()
    _PREFILTERS[key] = (list(rules), pf)
    return pf


def _candidate_starts(buf: Buffer, end: int, pf: _Prefilter) -> list[int]:
    """Offsets of the starts of the lines of `buf[:end]` where a prefilter match starts, ascending."""
    if pf.every_line:
        starts = [0]
        at = buf.find(b"\n", 0, end)
        while at >= 0:
            starts.append(at + 1)
            at = buf.find(b"\n", at + 1, end)
        return starts if starts[-1] <= end else starts[:-1]
    found: set[int] = set()
    for rx in pf.searches:
        q = 0
        while q <= end:
            m = rx.search(buf, q, end)
            if m is None:
                break
            p = m.start()
            found.add(buf.rfind(b"\n", 0, p) + 1)
            # Resume at the next line, not after the match: a match on a later line that overlaps
            # this one (a wrapped message) must not be skipped.
            q = buf.find(b"\n", p, end) + 1
            if q == 0:
                break
    return sorted(found)


class _Lines:
    """The lines of `body` by index, located on demand next to known ones: only the few lines
    around candidates are ever decoded."""

    __slots__ = ("_astral", "_raw", "_shown", "_written", "body", "bounds", "end")

    def __init__(self, body: Buffer, end: int) -> None:
        self.body, self.end = body, end  # the lines are those of body[:end]
        self.bounds: dict[int, tuple[int, int]] = {}
        self._raw: dict[int, str] = {}
        self._shown: dict[int, tuple[str, list[int]]] = {}
        self._written: dict[int, str] = {}
        self._astral: dict[int, list[int]] = {}

    def add(self, k: int, start: int) -> None:
        end = self.body.find(b"\n", start, self.end)
        self.bounds[k] = (start, self.end if end < 0 else end)

    def exists(self, k: int) -> bool:
        if k < 0:
            return False
        if k in self.bounds:
            return True
        if k == 0:
            self.add(0, 0)
            return True
        if k - 1 in self.bounds:
            end = self.bounds[k - 1][1]
            if end >= self.end:
                return False
            self.add(k, end + 1)
            return True
        if k + 1 in self.bounds:
            start = self.bounds[k + 1][0]
            self.bounds[k] = (self.body.rfind(b"\n", 0, start - 1) + 1, start - 1)
            return True
        raise AssertionError("lines are only reached next to known ones")

    def raw(self, k: int) -> str:
        if k not in self._raw:
            self.exists(k)
            start, end = self.bounds[k]
            self._raw[k] = self.body[start:end].decode("utf-8", errors="replace")
        return self._raw[k]

    def shown(self, k: int) -> tuple[str, list[int]]:
        if k not in self._shown:
            self._shown[k] = display_line(self.raw(k))
        return self._shown[k]

    def utf16_column(self, k: int, index: int) -> int:
        """The 0-based UTF-16 column of character `index` of raw line k: the index plus one per
        character above U+FFFF before it (found once per line, not once per finding)."""
        if k not in self._astral:
            raw = self.raw(k)
            self._astral[k] = [] if raw.isascii() else [i for i, c in enumerate(raw) if ord(c) > 0xFFFF]
        return index + bisect.bisect_left(self._astral[k], index)

    def written(self, k: int) -> str:
        if k not in self._written:
            self._written[k] = written_text(self.raw(k))
        return self._written[k]


@dataclass(slots=True)
class _Logical:
    text: str
    # (offset in text, physical line index, origin map, leading whitespace stripped)
    parts: list[tuple[int, int, list[int], int]]


def _logical(lines: _Lines, first: int) -> _Logical:
    text_parts: list[str] = []
    parts: list[tuple[int, int, list[int], int]] = []
    pos = 0
    k = first
    while k - first < MAX_CONTINUATION and lines.exists(k):
        shown, origin = lines.shown(k)
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


def _position(logical: _Logical, offset: int, lines: _Lines, first_line_no: int) -> Position:
    for start, k, origin, stripped in reversed(logical.parts):
        if offset >= start or start == 0:
            idx = stripped + (offset - start)
            raw_index = origin[idx] if idx < len(origin) else len(lines.raw(k))
            return Position(first_line_no + k, raw_index + 1, lines.utf16_column(k, raw_index))
    raise AssertionError("offset before the logical line")


def _line_facts(logical: _Logical) -> tuple[list[str], dict[str, str]]:
    """The tool ids and facts of a logical line: the same for every match in it, so computed once
    per line (a long line holding many matches would otherwise be read once per match)."""
    ids = list(dict.fromkeys(_TOOL_ID.findall(logical.text)))
    facts: dict[str, str] = {}
    if ids:
        facts["tool_use_ids"] = ", ".join(ids)
    m = _MESSAGES_INDEX.search(logical.text)
    if m:
        facts["messages_index"] = m.group(1)
        if m.group(2) is not None:
            facts["content_index"] = m.group(2)
    facts["text"] = logical.text[:2000]
    return ids, facts


def _finding(rule: Rule, logical: _Logical, span: tuple[int, int], lines: _Lines, first_line_no: int,
             line_facts: tuple[list[str], dict[str, str]]) -> Finding:
    ids, facts = line_facts[0], dict(line_facts[1])
    message = rule.title
    if ids:
        message += f" ({', '.join(ids[:5])}{'…' if len(ids) > 5 else ''})"
    if "messages_index" in facts:
        message += f" at messages.{facts['messages_index']}"
    start = _position(logical, span[0], lines, first_line_no)
    end = _position(logical, max(span[1] - 1, span[0]), lines, first_line_no)
    # `end` was computed for the last matched character; LSP ranges are end-exclusive.
    end = Position(end.line, end.column + 1, end.utf16 + 1)
    return Finding(rule=rule.id, severity=rule.severity, message=message, start=start, end=end,
                   tool_use_id=ids[0] if ids else None, facts=facts)


def _gate(rule: Rule, logical: _Logical, lines: _Lines) -> bool:
    """Whether one of the rule's patterns matches the written text of this logical line (its first
    line; with `wrap`, its continuation lines joined on), starting on its first line."""
    first = lines.written(logical.parts[0][1])
    text = first
    if rule.wrap and len(logical.parts) > 1:
        text += "".join(lines.written(k).lstrip(" \t") for _, k, _, _ in logical.parts[1:])
    for p in rule.patterns:
        m = p.search(text)
        if m is not None and m.start() < len(first):
            return True
    return False


def _verify(lines: _Lines, candidates: list[int], rules: list[Rule], first_line_no: int) -> list[Finding]:
    findings: dict[tuple[int, str], Finding] = {}
    # Per rule, the (start, end) of what is already reported, so a wrapped message read again
    # from one of its continuation lines is not reported twice; and the physical lines of logical
    # lines its not_patterns excluded (a prompt quoting the error, wrapped), except response lines.
    # (Spans are kept by start line; a span covers at most MAX_CONTINUATION lines, so only that many
    # lines are looked at per match: linear in the number of findings.)
    reported: dict[tuple[int, int], list[tuple[int, tuple[int, int]]]] = {}
    furthest: dict[tuple[int, int], tuple[int, int]] = {}  # per (rule, line): the furthest end reported
    excluded: dict[int, set[int]] = {}
    done: set[int] = set()
    logicals: dict[int, _Logical] = {}
    gates: dict[tuple[int, int], bool] = {}

    def logical_at(k: int) -> _Logical:
        if k not in logicals:
            logicals[k] = _logical(lines, k)
        return logicals[k]

    def gate(ri: int, k: int) -> bool:
        if (ri, k) not in gates:
            gates[(ri, k)] = _gate(rules[ri], logical_at(k), lines)
        return gates[(ri, k)]

    for k in candidates:
        # Walk back to where the logical lines that may involve this line begin: a match found
        # here can start up to MAX_CONTINUATION - 1 lines up, and the logical line that would
        # exclude it (a prompt quoting it) as far again.
        first = k
        while first > 0 and k - first < 2 * MAX_CONTINUATION and _is_continuation(lines.shown(first)[0]):
            first -= 1
        # Every logical line from there to the hit: one logical line may hold several messages (a
        # `●` line with two `⎿` lines below it), and each start is read once per chunk.
        for start in range(first, k + 1):
            if start in done:
                continue
            done.add(start)
            logical = logical_at(start)
            span = range(start, start + len(logical.parts))
            # A finding is reported from the logical line that begins on its first line.
            first_len = logical.parts[1][0] if len(logical.parts) > 1 else len(logical.text)
            for ri, rule in enumerate(rules):
                if not any(gate(ri, x) for x in span):
                    continue
                if any(p.search(logical.text) for p in rule.not_patterns):
                    excluded.setdefault(ri, set()).update(span)
                    continue
                if not gate(ri, start):
                    continue
                if start in excluded.get(ri, ()) and not logical.text.lstrip().startswith("⎿"):
                    continue
                starts: set[tuple[int, int]] = set()
                for p in rule.patterns:
                    for m in p.finditer(logical.text):
                        if m.start() >= first_len:
                            break
                        starts.add((m.start(), m.end()))
                line_facts = _line_facts(logical) if starts else ([], {})
                for mspan in sorted(starts):
                    f = _finding(rule, logical, mspan, lines, first_line_no, line_facts)
                    at = (f.start.line, f.start.column)
                    # A line's spans are looked at only if `at` is before the furthest end among
                    # them: the many matches of one long line, in order, are each checked in O(1).
                    if any((line, col) <= at <= end
                           for line in range(f.start.line - MAX_CONTINUATION, f.start.line + 1)
                           if at <= furthest.get((ri, line), (0, 0))
                           for col, end in reported.get((ri, line), ())):
                        continue
                    here = reported.setdefault((ri, f.start.line), [])
                    f_end = (f.end.line, f.end.column)
                    here.append((f.start.column, f_end))
                    furthest[(ri, f.start.line)] = max(furthest.get((ri, f.start.line), (0, 0)), f_end)
                    findings.setdefault((f.start.line, rule.id), f)
    return sorted(findings.values(), key=lambda f: f.sort_key)


def _scan(body: Buffer, end: int, rules: list[Rule], first_line_no: int) -> tuple[list[Finding], int]:
    """Findings in `body[:end]` (whole lines, as UTF-8), and how many newlines it holds."""
    starts = _candidate_starts(body, end, _prefilter(rules))
    lines = _Lines(body, end)
    candidates: list[int] = []
    newlines, at = 0, 0
    for s in starts:  # line numbers by counting newlines up to each candidate, once over the body
        newlines += body.count(b"\n", at, s)
        at = s
        lines.add(newlines, s)
        candidates.append(newlines)
    newlines += body.count(b"\n", at, end)
    if not candidates:
        return [], newlines
    return _verify(lines, candidates, rules, first_line_no), newlines


def scan_text(text: str, rules: Iterable[Rule], first_line_no: int = 1) -> list[Finding]:
    """Findings in `text` (whole lines). Line numbers start at `first_line_no`."""
    rule_list = [r for r in rules if r.patterns]
    if not text or not rule_list:
        return []
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (legal in a str, not in UTF-8): one U+FFFD each
        data = re.sub("[\ud800-\udfff]", "\ufffd", text).encode("utf-8")
    return _scan(data, len(data), rule_list, first_line_no)[0]


@dataclass(slots=True)
class LogState:
    """Where an incremental scan of one log file stands."""

    offset: int = 0  # bytes already scanned completely
    line: int = 1  # line number at `offset`
    findings: dict[tuple[int, str], Finding] = field(default_factory=dict)
    mark: FileMark = field(default_factory=FileMark)  # what the last scan saw, to notice a rewrite

    def all(self) -> list[Finding]:
        return sorted(self.findings.values(), key=lambda f: f.sort_key)


def scan_file(path: str, state: LogState, rules: RuleSet | Iterable[Rule]) -> list[Finding]:
    """Scan what was appended since `state`; returns the NEW findings and updates `state`.

    Truncation (the file is shorter than what was scanned, or the bytes before `offset` are
    no longer the same: truncated and rewritten past it, as `logrotate copytruncate` does) and
    rotation (another inode at the path) restart the scan from the beginning (`filemark.rewritten`,
    the test incremental transcript checks make, without its tests of the file's start).
    """
    log_rules = rules.for_logs() if isinstance(rules, RuleSet) else [r for r in rules if r.patterns]
    new: list[Finding] = []
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if rewritten(f, st, state.mark, state.offset, whole=False):
            state.offset, state.line, state.findings = 0, 1, {}
        known = set(state.findings)
        # What is read again from `offset` on (a held-back last line) is judged afresh.
        state.findings = {k: v for k, v in state.findings.items() if k[0] < state.line}
        buf: bytearray | None = None
        while True:
            f.seek(state.offset)
            chunk: Buffer
            remaining = st.st_size - state.offset
            if remaining >= CHUNK_BYTES:
                # Full chunks go into one buffer: no fresh 8 MB object (and its page faults) per chunk.
                buf = buf or bytearray(CHUNK_BYTES)
                size = f.readinto(buf)
                chunk = buf
            else:
                buf = None
                # Only what is there (+1 to notice a file that grew since): a read of CHUNK_BYTES
                # allocates that much whatever the file holds.
                chunk = f.read(remaining + 1)
                if len(chunk) > remaining:
                    f.seek(state.offset)
                    chunk = f.read(CHUNK_BYTES)
                size = len(chunk)
            at_eof = size < CHUNK_BYTES
            end = chunk.rfind(b"\n", 0, size)
            if end < 0:
                if at_eof:
                    break  # nothing, or an unfinished last line: scan it once it ends
                end = size - 1  # one giant line: scan it in pieces
            body_len = end + 1
            found, n_lines = (_scan(chunk, body_len, log_rules, state.line) if log_rules
                              else ([], chunk.count(b"\n", 0, body_len)))
            for finding in found:
                key = (finding.start.line, finding.rule)
                if key not in state.findings and len(state.findings) < MAX_FINDINGS_PER_FILE:
                    state.findings[key] = finding
                    if key not in known:
                        new.append(finding)
            # The last logical line may go on in the next append: scan it again then. Walk back
            # from the last line by offsets (only these few lines are decoded).
            keep, keep_at = n_lines - 1, -1
            if n_lines:
                keep_at = chunk.rfind(b"\n", 0, body_len - 1) + 1
                while keep > 0 and n_lines - keep < MAX_CONTINUATION:
                    line_end = chunk.find(b"\n", keep_at, body_len)
                    if not _is_continuation(display_line(chunk[keep_at:line_end].decode("utf-8", "replace"))[0]):
                        break
                    keep -= 1
                    keep_at = chunk.rfind(b"\n", 0, keep_at - 1) + 1
            if keep > 0:
                state.offset += keep_at
                state.line += keep
            elif not at_eof or not n_lines or body_len > HOLD_BACK_BYTES:
                state.offset += body_len
                state.line += n_lines
            # else: all that was read is one logical line that may still grow (a wrapped message
            # whose continuation is not written yet): read it again with the next append.
            if at_eof:
                break
        state.mark = take_mark(f, st, state.offset)
    return new
