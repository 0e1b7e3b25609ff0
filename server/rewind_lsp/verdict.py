"""Findings of rebuilt conversations, at exact places: the last step of a transcript check.

`validate` says what is wrong with a conversation (faults on entries and blocks); this turns the
faults into findings with the severity of where they happened (the live chain, a sidechain,
history), places each one on the exact block of its line (`locate`, read back through a
`LineFetcher`), and adds the findings of unreadable lines and of the API errors Claude Code
recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING

import msgspec

from .conversation import Conversation, rebuild
from .findings import Finding, Position, Severity, line_position
from .transcript import BadLine, Entry, Transcript
from .validate import Fault, validate

_API_ERROR = attrgetter("api_error")

if TYPE_CHECKING:  # rules (re2, TOML) and logscan load only when needed: the hook's budget
    from . import locate
    from .rules import Rule, RuleSet

CONCURRENCY_400 = "tool-use-concurrency-400"

LineFetcher = Callable[[int, int], bytes]  # (offset, length) -> the line's bytes


class TranscriptCheck(msgspec.Struct):
    transcript: Transcript
    conversations: list[Conversation]
    findings: list[Finding]
    # validate()'s faults of each live conversation (main, sidechains), by id(conversation): what a
    # repair plans from, without validating them again.
    faults: dict[int, list[Fault]] = msgspec.field(default_factory=dict)

    @property
    def main(self) -> Conversation | None:
        return next((c for c in self.conversations if c.kind == "main"), None)


def file_fetcher(path: str) -> LineFetcher:
    def fetch(offset: int, length: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    return fetch


def bytes_fetcher(data: bytes) -> LineFetcher:
    return lambda offset, length: data[offset : offset + length]


class _Locator:
    """Positions of blocks inside lines. Each line is fetched and decoded once, its content array
    walked once (`locate.element_spans`) and its UTF-16 columns worked out once (`locate.Columns`):
    placing N blocks of one line costs one pass over it, not N."""

    def __init__(self, fetch: LineFetcher) -> None:
        self.fetch = fetch
        self.cache: dict[int, str] = {}
        self.spans: dict[int, list[tuple[int, int]]] = {}
        self.columns: dict[int, locate.Columns] = {}
        self.interrupted: dict[int, bool] = {}
        # Where a block is: the nth element of `message.content` (Claude Code), or, for a line that
        # is one item (a Codex rollout's `payload`), the value at this path.
        self.item_path: list[str | int] | None = None

    def text(self, e: Entry) -> str:
        if e.line not in self.cache:
            self.cache[e.line] = self.fetch(e.offset, e.length).decode("utf-8", errors="replace")
        return self.cache[e.line]

    def position(self, line: int, text: str, char_index: int) -> Position:
        """`findings.line_position(line, text, char_index)`, for a line read through this locator."""
        columns = self.columns.get(line)
        if columns is None:
            from .locate import Columns  # json.decoder and re: only when there is a finding to place

            columns = self.columns[line] = Columns(text)
        return Position(line, char_index + 1, columns.utf16(char_index))

    def block(self, e: Entry, block: int | None) -> tuple[Position, Position]:
        text = self.text(e)
        start, end = 0, len(text)
        if block is not None and self.item_path is not None:
            from .locate import span

            found = span(text, self.item_path)
            if found is not None:
                start, end = found
        elif block is not None:
            spans = self.spans.get(e.line)
            if spans is None:
                from .locate import element_spans

                spans = self.spans[e.line] = element_spans(text, ["message", "content"])
            if 0 <= block < len(spans):
                start, end = spans[block]
        return self.position(e.line, text, start), self.position(e.line, text, end)

    def marked_interrupted(self, e: Entry) -> bool:
        """Does the line carry `"interrupted": true` (looked for once per line)?"""
        marked = self.interrupted.get(e.line)
        if marked is None:
            own = self.fetch(e.offset, e.length)
            marked = self.interrupted[e.line] = b'"interrupted":true' in own or b'"interrupted": true' in own
        return marked


def _finding(fault: Fault, severity: Severity, conv: Conversation, loc: _Locator) -> Finding:
    start, end = loc.block(fault.entry, fault.block)
    related = tuple((loc.block(e, b)[0], note) for e, b, note in fault.related)
    message = fault.message
    if conv.kind == "sidechain":
        message += f" (in {conv.label})"
    elif conv.kind == "history":
        message += " (in history that is no longer sent: a rewound branch or before a compaction)"
    facts = dict(fault.facts)
    facts["conversation"] = conv.label
    if fault.entry.session_id:
        facts["session_id"] = fault.entry.session_id
    return Finding(fault.rule, severity, message, start, end, fault.tool_use_id, related, facts)


class _Rules:
    """The rule set, loaded on first use: a healthy transcript needs none of it."""

    def __init__(self, rules: RuleSet | None) -> None:
        self._rules = rules

    def get(self, rule_id: str) -> Rule | None:
        if self._rules is None:
            from .rules import default_rules

            self._rules = default_rules()
        return self._rules.get(rule_id)


RECORDED_400_PAIRED = (
    "Claude Code recorded the tool-use 400 here{ids}, but every tool call of this conversation pairs now: "
    "the request it refused may have held something the transcript does not (a block compaction or a hook "
    "changed, an MCP tool gone on resume). Rewind to the prompt before it: `rewind` cuts there, "
    "`rewind --mode patch` keeps everything and leaves the recorded error out"
)


def _api_error_findings(
    conv: Conversation, severity: Severity, rule: Rule, loc: _Locator, paired: bool
) -> list[Finding]:
    """Synthetic API-error entries recording the 400 itself.

    One verdict for every surface (docs/CONTRACT.md): `severity` (error) when the conversation
    still has a pairing fault, a warning when it pairs now, information once the session went
    on after it or in history."""
    from .logscan import scan_text

    out: list[Finding] = []
    # Where the last real reply stands: "the session went on after it" is one comparison per entry
    # (a scan of the rest of the chain for each recorded error was quadratic in retries).
    last_reply = max((i for i, x in enumerate(conv.order) if x.type == "assistant" and x.is_message), default=-1)
    for i, e in enumerate(conv.order):
        if not e.api_error:
            continue
        answered_after = last_reply > i
        for f in scan_text(loc.text(e), [rule]):
            ids = f" ({f.tool_use_id})" if f.tool_use_id else ""
            where = f" at messages.{f.facts['messages_index']}" if "messages_index" in f.facts else ""
            if conv.kind == "history" or answered_after:
                sev = Severity.INFORMATION
                message = f"Claude Code recorded the tool-use 400 here{ids}{where} (the session went on after it)"
            elif paired:
                sev = Severity.WARNING
                message = RECORDED_400_PAIRED.format(ids=ids + where)
            else:
                sev = severity
                message = (f"Claude Code recorded the tool-use 400 here{ids}{where}: the conversation's tool calls "
                           "no longer pair up (the error on this conversation says where)")
            facts = dict(f.facts)
            facts["conversation"] = conv.label
            facts["recorded_400"] = "paired" if paired else "broken"
            out.append(Finding(
                f.rule, sev, message,
                Position(e.line, f.start.column, f.start.utf16), Position(e.line, f.end.column, f.end.utf16),
                f.tool_use_id, (), facts,
            ))
    return out


# Since 2.1.265 "the interrupted tool call is kept and marked interrupted" when the process died
# mid-tool, and the loader leaves a result-less call out on resume (2.1.88's filterUnresolvedToolUses):
# not a break. The exact on-disk shape is not public; what is assumed is a marker on the tool_use's
# own line, `"interrupted": true` (docs/CONTRACT.md). An interruption *text* after a call is not
# enough: Claude Code writes a result for a call it interrupts, so a missing one is a lost line.
INTERRUPTED_NOTE = (" (marked interrupted: Claude Code keeps an interrupted tool call on disk and leaves it out "
                    "when the session is resumed)")


def _first_judged(conv: Conversation, active: set[int]) -> int:
    """Where the faults of a history conversation can first be its own: every fault is on a line of
    the message it is found in, and one on a line of the live conversations is judged there (below),
    so the messages before the first with a line of its own need no judging. Unless it holds a
    recorded 400 of its own: that finding says whether the whole conversation pairs."""
    if conv.kind != "history" or not active:
        return 0
    first = next((i for i, m in enumerate(conv.messages) if any(id(e) not in active for e in m.entries)),
                 len(conv.messages))
    if first and any(x.api_error and id(x) not in active for x in conv.order):
        return 0
    return first


def conversation_findings(
    conversations: Sequence[Conversation], bad_lines: Sequence[BadLine], fetch: LineFetcher, rules: RuleSet | None,
    faults_of: dict[int, list[Fault]] | None = None,
) -> list[Finding]:
    """The findings of rebuilt conversations and unreadable lines, sorted, at exact positions.
    `faults_of`: filled with the faults of each conversation that is not history."""
    ruleset = _Rules(rules)
    loc = _Locator(fetch)
    findings: dict[tuple[int, int, str, str | None], Finding] = {}
    # The live conversations' lines, by identity: only history is judged against them (a check
    # without history, such as a repair's, makes no set of every line).
    active: set[int] = set()
    if any(conv.kind == "history" for conv in conversations):
        for conv in conversations:
            if conv.kind != "history":
                active.update(map(id, conv.order))

    def add(f: Finding) -> None:
        findings.setdefault((f.start.line, f.start.column, f.rule, f.tool_use_id), f)

    for conv in conversations:
        loc.item_path = ["payload"] if conv.api == "responses" else None
        faults = validate(conv, _first_judged(conv, active))
        if faults_of is not None and conv.kind != "history":
            faults_of[id(conv)] = faults
        for fault in faults:
            rule = ruleset.get(fault.rule)
            base = rule.severity if rule else Severity.ERROR
            if conv.kind == "history":
                if fault.pending or id(fault.entry) in active:
                    continue  # normal for a rewound branch, or already judged on the live chain
                severity = Severity.INFORMATION
            elif fault.facts.get("fork") == "parent":
                severity = Severity.INFORMATION  # answered in the parent session the fork points at
            elif fault.rule == "orphan-tool-use" and loc.marked_interrupted(fault.entry):
                severity = Severity.INFORMATION
                fault = msgspec.structs.replace(fault, message=fault.message + INTERRUPTED_NOTE)
            else:
                severity = Severity.WARNING if fault.pending else base
            add(_finding(fault, severity, conv, loc))
        if any(map(_API_ERROR, conv.order)):  # a C loop over a million lines, not a generator
            rule = ruleset.get(CONCURRENCY_400)
            if rule is not None:
                paired = not any(not f.pending for f in faults)
                for f in _api_error_findings(conv, rule.severity, rule, loc, paired):
                    add(f)
    malformed = ruleset.get("malformed-line") if bad_lines else None
    if not conversations and len(bad_lines) > 1:
        # Not a transcript at all (plain text, another tool's JSONL): one finding, not one a line.
        first = bad_lines[0]
        text = fetch(first.offset, 1 << 16).split(b"\n", 1)[0].decode("utf-8", errors="replace")
        add(Finding(
            "malformed-line", malformed.severity if malformed else Severity.WARNING,
            f"not a Claude Code transcript: none of its {len(bad_lines)} lines is a transcript entry "
            f"(line {first.line}: {first.reason})",
            line_position(first.line, text, 0), line_position(first.line, text, len(text)),
        ))
        bad_lines = ()
    for bad in bad_lines:
        text = fetch(bad.offset, 1 << 16).split(b"\n", 1)[0].decode("utf-8", errors="replace")
        col = min(bad.column - 1, len(text))
        add(Finding(
            "malformed-line", malformed.severity if malformed else Severity.WARNING,
            f"line {bad.line} is not a transcript entry: {bad.reason}; it is skipped",
            line_position(bad.line, text, col), line_position(bad.line, text, len(text)),
        ))
    return sorted(findings.values(), key=lambda f: f.sort_key)


def analyze(
    transcript: Transcript, fetch: LineFetcher, rules: RuleSet | None = None, history: bool = True
) -> TranscriptCheck:
    """`history=False`: rewound and compacted history is not rebuilt, nor judged (its findings are
    information only): the live conversations and their findings are the same."""
    conversations = rebuild(transcript.entries, history=history)
    faults: dict[int, list[Fault]] = {}
    findings = conversation_findings(conversations, transcript.bad_lines, fetch, rules, faults)
    return TranscriptCheck(transcript, conversations, findings, faults)
