"""The fast log scanner (a raw-bytes RE2 prefilter, then only the lines around its hits decoded and
checked) finds exactly what a straightforward reading of the rules finds: every line displayed,
every logical line built, every rule tried on every one of them.

The reference below is the definition of a finding, written for clarity and nothing else; the
generated logs are what makes the prefilter earn its keep: escapes between any two characters
(mid-word too), redraws, soft wraps (mid-word too) onto indented lines, prompts quoting the
error, CRLF, invalid UTF-8, and user rules in most of RE2's syntax (flags, classes, repeats,
anchors, \\Q…\\E, \\p{…}, case folding onto non-ASCII letters).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import re2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewind_lsp.findings import Finding, Position, Severity
from rewind_lsp.logscan import MAX_CONTINUATION, LogState, display_line, scan_file, scan_text
from rewind_lsp.rules import Rule, default_rules

SETTINGS = settings(
    max_examples=int(os.environ.get("CORE_MAX_EXAMPLES", "300")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

# --- the reference -----------------------------------------------------------------------------

_ESC = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_IDS = re.compile(r"\b(?:srv)?toolu_[A-Za-z0-9_]+")
_INDEX = re.compile(r"\bmessages\.(\d+)")


def _written(raw: str) -> str:
    text = _ESC.sub("", raw)
    return text[:-1] if text.endswith("\r") else text


def _continues(shown: str) -> bool:
    return bool(shown) and shown[0] in " \t" and bool(shown.strip())


def reference(text: str, rules: list[Rule]) -> list[tuple[Any, ...]]:
    text = re.sub("[\ud800-\udfff]", "\ufffd", text)
    rules = [r for r in rules if r.patterns]
    lines = text.split("\n")
    shown = [display_line(x) for x in lines]
    # The logical line starting at each line: (text, [(offset in text, line, origin, indent dropped)]).
    logical: list[tuple[str, list[tuple[int, int, list[int], int]]]] = []
    for s in range(len(lines)):
        joined, parts = "", []
        for k in range(s, min(len(lines), s + MAX_CONTINUATION)):
            line, origin = shown[k]
            if k > s and not _continues(line):
                break
            indent = len(line) - len(line.lstrip(" \t")) if k > s else 0
            parts.append((len(joined), k, origin, indent))
            joined += line[indent:]
        logical.append((joined, parts))

    def written_hit(rule: Rule, s: int) -> bool:
        first = _written(lines[s])
        rest = "".join(_written(lines[k]).lstrip(" \t") for _, k, _, _ in logical[s][1][1:]) if rule.wrap else ""
        return any((m := p.search(first + rest)) is not None and m.start() < len(first) for p in rule.patterns)

    def position(s: int, offset: int) -> Position:
        for start, k, origin, indent in reversed(logical[s][1]):
            if offset >= start or start == 0:
                i = indent + offset - start
                col = origin[i] if i < len(origin) else len(lines[k])
                return Position(k + 1, col + 1, len(lines[k][:col].encode("utf-16-le")) // 2)
        raise AssertionError

    found: dict[tuple[int, str], tuple[Any, ...]] = {}
    spans: dict[int, list[tuple[tuple[int, int], tuple[int, int]]]] = {}
    excluded: dict[int, set[int]] = {}
    for s in range(len(lines)):
        joined, parts = logical[s]
        lines_of = range(s, s + len(parts))
        first_len = parts[1][0] if len(parts) > 1 else len(joined)
        for ri, rule in enumerate(rules):
            if not any(written_hit(rule, x) for x in lines_of):
                continue
            if any(p.search(joined) for p in rule.not_patterns):
                excluded.setdefault(ri, set()).update(lines_of)
                continue
            if not written_hit(rule, s):
                continue
            if s in excluded.get(ri, ()) and not joined.lstrip().startswith("⎿"):
                continue
            matches = sorted({m.span() for p in rule.patterns for m in p.finditer(joined) if m.start() < first_len})
            for a, b in matches:
                start, last = position(s, a), position(s, max(b - 1, a))
                at = (start.line, start.column)
                if any(lo <= at <= hi for lo, hi in spans.get(ri, ())):
                    continue  # inside what this rule already reported
                end = (last.line, last.column + 1)
                spans.setdefault(ri, []).append((at, end))
                ids = list(dict.fromkeys(_IDS.findall(joined)))
                found.setdefault((start.line, rule.id), (
                    rule.id, start.line, start.column, start.utf16, last.line, last.column + 1, last.utf16 + 1,
                    ids[0] if ids else None))
    return sorted(found.values(), key=lambda f: (f[1], f[2], f[0]))


def _key(f: Finding) -> tuple[Any, ...]:
    return (f.rule, f.start.line, f.start.column, f.start.utf16, f.end.line, f.end.column, f.end.utf16,
            f.tool_use_id)


def fast(text: str, rules: list[Rule]) -> list[tuple[Any, ...]]:
    return sorted((_key(f) for f in scan_text(text, rules)), key=lambda f: (f[1], f[2], f[0]))


# --- user rules in most of RE2's syntax, with a text each matches --------------------------------

USER = [
    ("(?i)frob\\s*nicator", "FROBnicator", False),
    ("\\bfoo_bar\\d{2,3}\\b", "foo_bar123", True),
    ("caf\\x{e9}\\s+ok", "café ok", False),
    ("(?:alpha|beta)+\\s*omega", "alphabeta omega", True),
    ("^\\s*ERR!", "  ERR! bad", False),
    ("\\p{Greek}+Zeta", "αβγZeta", True),
    ("\\Qa.b*c\\E", "xa.b*cx", False),
    ("k(?i:elvin)s", "kELVINs", True),
    ("quux[^\\n]*?y{2}zz", "quux ... yyzz", True),
    ("(?s)bar.baz", "bar\tbaz", False),
    ("theend\\s*$", "theend  ", False),
    ("[[:upper:]]{3}-\\d+!", "ABC-12!", True),
    ("(?i)sk8er", "\u017f\u212a8er", False),
    ("zap|zip\\s*zop", "zip zop", True),
    ("(?U)nono.+stop", "nono---stop", False),
    ("Did\\s*not\\s*find\\s*\\d+\\s*fish", "Did not find 3 fish", True),
    ("Omega\\p{Greek}\\p{Greek}!", "Omegaαβ!", False),
    ("Mark.{2}Mark", "Mark€😀Mark", True),
    ("Name:\\S\\W:", "Name:é€:", False),
]


def _user_rule(i: int, pattern: str, wrap: bool) -> Rule:
    return Rule(id=f"user-{i}", title=f"user rule {i}", severity=Severity.WARNING, applies_to=("log",),
                patterns=(re2.compile(pattern),), not_patterns=(re2.compile("^\\s*[>❯][\\s\\x{00A0}]"),),
                hover="h", fix_markdown="f", fix_path=Path("f.md"), links=(), source=Path("r.toml"), wrap=wrap)


USER_RULES = [_user_rule(i, p, w) for i, (p, _, w) in enumerate(USER)]
MESSAGES = [
    "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation.",
    "API Error: 400 orphaned tool_result in conversation history",
    "messages.12: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_01AbC.",
    'API Error: 400 {"type":"error","error":{"message":"messages.3: tool_use ids must be unique"}}',
    'API Error: 429 {"type":"error","error":{"type":"rate_limit_error"}}',
    "Prompt is too long",
    "SyntaxError: Unexpected token '<'",
    "OAuth token has expired",
    *(text for _, text, _ in USER),
]
ESCAPES = ["\x1b[0m", "\x1b[31m", "\x1b[1;38;5;208m", "\x1b[2K", "\x1b[K", "\x1b[1K", "\x1b[5G", "\x1b[3C",
           "\x1b[2D", "\x1b]0;claude\x07", "\x1b]8;;https://x.y\x1b\\", "\x1b(B", "\x1b=", "\x1b", "\r", "\b",
           "\x00", "\t"]
COLOURS = ["\x1b[0m", "\x1b[31m", "\x1b[1;38;5;208m", "\x1b]0;claude\x07", "\x1b(B", "\x1b[?25l"]
PREFIXES = ["", "  ⎿  ", "● ", "❯ ", "> ", "❯\u00a0", "  ", "⠋ Thinking…\r\x1b[2K", "\x1b[2m  ⎿  \x1b[0m"]


@st.composite
def message_lines(draw: st.DrawFn) -> list[str]:
    """A message as a terminal received it: a prefix, escapes anywhere, maybe soft-wrapped."""
    msg = draw(st.sampled_from(MESSAGES))
    if draw(st.integers(0, 3)) == 0:  # drop or change a character: a near miss
        i = draw(st.integers(0, len(msg) - 1))
        msg = msg[:i] + draw(st.sampled_from(["", "x", " ", "\u00e9"])) + msg[i + 1:]
    cuts = sorted(draw(st.lists(st.integers(0, len(msg)), max_size=4)))
    pieces, at = [], 0
    for c in cuts:
        # Mostly what leaves the text as written (colours, titles), sometimes a redraw.
        pieces += [msg[at:c], draw(st.sampled_from(COLOURS) | st.sampled_from(ESCAPES))]
        at = c
    text = draw(st.sampled_from(PREFIXES)) + "".join(pieces) + msg[at:]
    wraps = sorted(draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=2)) if draw(st.booleans()) else [])
    out, at = [], 0
    for w in wraps:
        out.append(text[at:w])
        at = w
    out.append(text[at:])
    return [out[0]] + [draw(st.sampled_from(["     ", "  ", "\t", "", "\x1b[0m  "])) + x for x in out[1:]]


noise = st.lists(st.sampled_from(ESCAPES) | st.sampled_from(["tool", " use", "API", "Error", "  ", "❯", "⎿", "é",
                                                              "😀", "x" * 5, "{", "\\"]), max_size=6).map("".join)
logs = st.lists(message_lines() | noise.map(lambda x: [x]), max_size=10).flatmap(
    lambda groups: st.tuples(st.just([line for g in groups for line in g]), st.booleans()))


def _text(lines: list[str], crlf: bool) -> str:
    return "".join(line + ("\r\n" if crlf else "\n") for line in lines)


@SETTINGS
@given(logs)
def test_shipped_rules_find_what_the_reference_finds(log: tuple[list[str], bool]) -> None:
    text = _text(*log)
    rules = default_rules().for_logs()
    assert fast(text, rules) == reference(text, rules), text


@SETTINGS
@given(logs)
def test_user_rules_in_any_syntax_find_what_the_reference_finds(log: tuple[list[str], bool]) -> None:
    text = _text(*log)
    rules = [*default_rules().for_logs(), *USER_RULES]
    assert fast(text, rules) == reference(text, rules), text


@SETTINGS
@given(logs, st.binary(max_size=6), st.integers(0, 400))
def test_a_file_with_invalid_utf8_is_read_as_the_reference_reads_it(
    tmp_path: Path, log: tuple[list[str], bool], junk: bytes, at: int
) -> None:
    data = _text(*log).encode()
    data = data[:at] + junk + data[at:]
    path = tmp_path / "t.log"
    path.write_bytes(data)
    rules = [*default_rules().for_logs(), *USER_RULES]
    state = LogState()
    scan_file(str(path), state, rules)
    text = data.decode("utf-8", errors="replace")
    # A last line without its newline is not scanned yet (it may still grow).
    whole = text[: text.rfind("\n") + 1]
    got = sorted((_key(f) for f in state.all()), key=lambda f: (f[1], f[2], f[0]))
    assert got == reference(whole, rules), data


@pytest.mark.parametrize(("pattern", "text", "wrap"), USER)
def test_each_user_pattern_is_found_through_escapes_and_wraps(pattern: str, text: str, wrap: bool) -> None:
    rule = USER_RULES[[p for p, _, _ in USER].index(pattern)]
    # An escape sequence after every character (what a colouring terminal may write)...
    prefix = "" if pattern.startswith("^") else "  ⎿  "
    def colour(s: str) -> str:
        return "".join(f"{c}\x1b[3{i % 8}m" for i, c in enumerate(s))

    log = f"before\n{prefix}{colour(text)}\nafter\n"
    m = rule.patterns[0].search(text)
    assert m is not None
    column = len(prefix) + len(colour(text[: m.start()])) + 1
    assert [(f.rule, f.start.line, f.start.column) for f in scan_text(log, [rule])] == [(rule.id, 2, column)]
    assert fast(log, [rule]) == reference(log, [rule])
    # ...and, for a wrap rule, a soft wrap in the middle of it.
    if wrap and len(text) > 2:
        cut = len(text) // 2
        log = f"{prefix}{text[:cut]}\r\n\x1b[2m     {text[cut:]}\r\n"
        assert [(f.rule, f.start.line) for f in scan_text(log, [rule])] == [(rule.id, 1)]
        assert fast(log, [rule]) == reference(log, [rule])
