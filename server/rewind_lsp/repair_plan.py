"""The repair plan: which lines of a session to drop, rewrite or add so that it pairs again.

Two modes:
- `truncate`: the active conversation cut back to the last point where every tool call pairs;
- `patch`: everything kept; each unanswered tool_use gets an `is_error` tool_result worded
  like Claude Code's own, orphaned tool_results become text at the end of their message,
  duplicate ids are renamed consistently, results are moved in front of other content.

A plan is data (lines to drop, lines to replace, lines to insert after a line); `placement`
streams the source through it into a new file.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from array import array
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any

from .check import CONCURRENCY_400, TranscriptCheck
from .conversation import Conversation, Message
from .findings import Severity
from .transcript import TOOL_RESULT, TOOL_USE, Entry
from .validate import Fault, validate

_line_of = attrgetter("line")
_entries_of = attrgetter("entries")

MISSING_RESULT_TEXT = "[Tool result missing due to internal error]"


class RewindError(Exception):
    """Rewind refused; nothing was written. The message says why."""


class LineSessionIds:
    """Each line's own top-level sessionId as the check read it, when it is plain (no quote,
    backslash, control or non-ASCII character: written as is in JSON), by line number: for the copy
    to rewrite it in the line's bytes without decoding the line again (`placement.write_copy`)."""

    __slots__ = ("at", "values")

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.values: list[bytes] = [b""]  # 0: not known
        last = entries[-1].line if entries else 0
        self.at = array("I", bytes(4 * (last + 1)))
        index: dict[str, int] = {}
        at = self.at
        for e in entries:
            v = e.session_id
            if v is None:
                continue
            k = index.get(v)
            if k is None:
                k = index[v] = len(self.values) if _plain(v) else 0
                if k:
                    self.values.append(v.encode("ascii"))
            at[e.line] = k

    def of(self, line: int) -> bytes | None:
        at = self.at
        k = at[line] if line < len(at) else 0
        return self.values[k] if k else None

    def shared(self, first: int, after: int) -> tuple[bytes, int] | None:
        """The one id of the lines from `first` to before `after` that have a known one, and how
        many have it; None when some have another (or none does)."""
        ks = self.at[first:after]
        k = max(ks, default=0)
        n = ks.count(k) if k else 0
        return (self.values[k], n) if n and n + ks.count(0) == len(ks) else None


def _plain(v: str) -> bool:
    return v.isascii() and v.isprintable() and '"' not in v and "\\" not in v


@dataclass(slots=True)
class Plan:
    drop: set[int] = field(default_factory=set)  # line numbers
    replace: dict[int, dict[str, Any]] = field(default_factory=dict)  # line -> new JSON object
    # line -> its new parentUuid, for a line that changes in nothing else: set in its own bytes as
    # they are copied, never decoded (patch relinks every line of a long conversation's DAG layout).
    reparent: dict[int, str | None] = field(default_factory=dict)
    insert_after: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    fixed: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # what the copy does not carry, said in the summary
    kept_messages: int = 0  # of the main conversation
    total_messages: int = 0
    last_prompt: Entry | None = None  # the last user prompt the copy keeps
    added_results: int = 0  # synthetic tool_results (patch)
    # validate(conversation) by id(conversation), while planning: each step asks for the same faults.
    faults: dict[int, list[Fault]] = field(default_factory=dict)
    session_ids: LineSessionIds | None = None  # for a new session: each line's sessionId, as read
    source_size: int = -1  # the bytes of the source the plan is for (-1: all of it)

    def faults_of(self, conv: Conversation) -> list[Fault]:
        if id(conv) not in self.faults:
            self.faults[id(conv)] = validate(conv)
        return self.faults[id(conv)]


class SourceLines:
    """Reads and decodes chosen lines of the source, once each: through `fd` when given (the
    descriptor analysed, read in place: no open per line), else by opening `path`."""

    def __init__(self, path: Path, fd: int | None = None) -> None:
        self.path = path
        self.fd = fd
        self.cache: dict[int, dict[str, Any]] = {}

    def get(self, e: Entry) -> dict[str, Any]:
        if e.line not in self.cache:
            self.cache[e.line] = self.fresh(e)
        return self.cache[e.line]

    def fresh(self, e: Entry) -> dict[str, Any]:
        """The line decoded anew (not cached): a copy of its own, for the plan to change."""
        if self.fd is not None:
            raw = os.pread(self.fd, e.length, e.offset)
        else:
            with open(self.path, "rb") as f:
                f.seek(e.offset)
                raw = f.read(e.length)
        # As the reader does (and Claude Code): invalid UTF-8 is read with replacement.
        return json.loads(raw.decode("utf-8", errors="replace"))  # type: ignore[no-any-return]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _synthetic_user(
    template: dict[str, Any], content: list[dict[str, Any]], source_assistant: str | None
) -> dict[str, Any]:
    """A user entry shaped like Claude Code's own, copying context fields from a neighbour."""
    entry: dict[str, Any] = {
        "parentUuid": None,
        "isSidechain": template.get("isSidechain", False),
        "userType": template.get("userType", "external"),
        "cwd": template.get("cwd"),
        "sessionId": template.get("sessionId"),
        "version": template.get("version"),
        "gitBranch": template.get("gitBranch"),
        "type": "user",
        "message": {"role": "user", "content": content},
        "uuid": str(uuid.uuid4()),
        # The neighbour's time, not the repair's: Claude Code resumes from the newest leaf, and a
        # line stamped now would outrank the conversation's real end.
        "timestamp": template.get("timestamp") if isinstance(template.get("timestamp"), str) else now(),
    }
    if template.get("agentId"):
        entry["agentId"] = template["agentId"]
    if source_assistant:
        entry["sourceToolAssistantUUID"] = source_assistant
    return {k: v for k, v in entry.items() if v is not None or k == "parentUuid"}


def _orphan_text(block: dict[str, Any]) -> dict[str, Any]:
    content = block.get("content")
    if isinstance(content, list):
        body = "\n".join(str(c.get("text", "")) if isinstance(c, dict) else str(c) for c in content)
    else:
        body = "" if content is None else str(content)
    tid = block.get("tool_use_id")
    note = f"[Result of tool call {tid}, whose request was lost, kept as text by rewind-lsp]"
    return {"type": "text", "text": f"{note}\n{body}"}


def _editable(e: Entry, lines: SourceLines, plan: Plan) -> dict[str, Any]:
    """The line's JSON object as it will be written, a copy the plan may change."""
    if e.line not in plan.replace:
        plan.replace[e.line] = lines.fresh(e)
        if e.line in plan.reparent:
            plan.replace[e.line]["parentUuid"] = plan.reparent.pop(e.line)
    return plan.replace[e.line]


def leave_out_recorded_errors(check: TranscriptCheck, lines: SourceLines, plan: Plan) -> None:
    """Synthetic API-error entries (`isApiErrorMessage`) on a live chain from its first fault or
    recorded 400 on are not carried into the copy: they were never sent to the API, and a recorded
    400 left in would make the copy check as broken. Lines that hang off them are relinked to what
    they hung from. The original keeps them."""
    broken_at: dict[int, int] = {}  # id(conversation) -> first line of a fault or recorded 400
    for conv in check.conversations:
        if conv.kind == "history":
            continue
        lines_at = [f.entry.line for f in plan.faults_of(conv) if not f.pending]
        lines_at += [f.start.line for f in check.findings
                     if f.rule == CONCURRENCY_400 and f.facts.get("conversation") == conv.label]
        if lines_at:
            broken_at[id(conv)] = min(lines_at)
    gone: dict[str, str | None] = {}  # uuid of a left-out entry -> its parent
    count = 0
    for conv in check.conversations:
        start = broken_at.get(id(conv))
        if start is None:
            continue
        for e in conv.order:
            if e.api_error and e.line >= start and e.line not in plan.drop:
                plan.drop.add(e.line)
                count += 1
                if e.uuid:
                    gone[e.uuid] = e.parent
    if not gone:
        return
    for e in check.transcript.entries:
        if e.line in plan.drop:
            continue
        current = plan.replace[e.line].get("parentUuid") if e.line in plan.replace else e.parent
        if current in gone:
            parent = current
            while parent in gone:
                parent = gone[parent]
            _editable(e, lines, plan)["parentUuid"] = parent
    plan.left_out.append(f"left out {count} recorded API error(s) (never sent to the API; the original keeps them)")


def _server_half_text(block: dict[str, Any]) -> dict[str, Any]:
    kind = str(block.get("type"))
    tid = block.get("id") or block.get("tool_use_id")
    body = json.dumps({k: v for k, v in block.items() if k not in ("type", "id", "tool_use_id")}, ensure_ascii=False)
    return {"type": "text", "text": f"[{kind} {tid}, whose other half is in another message, kept as text by "
                                    f"rewind-lsp]\n{body}", "__kind__": kind}


def _message_index(conv: Conversation) -> dict[int, int]:
    return {id(e): i for i, m in enumerate(conv.messages) for e in m.entries}


def _places_of(conv: Conversation, entries: Iterable[Entry]) -> dict[int, int]:
    """`_message_index` of these entries only (by identity; one not in a message is left out): a
    few faults' places in a long conversation without a map of all its lines (1M lines: 0.5 s)."""
    wanted = {id(e) for e in entries}
    out: dict[int, int] = {}
    if not wanted:
        return out
    msgs = conv.messages
    # From the end: a session breaks where it was last written, so the faults are mostly there.
    for i in range(len(msgs) - 1, -1, -1):
        for e in msgs[i].entries:
            if id(e) in wanted:
                out[id(e)] = i
                if len(out) == len(wanted):
                    return out
    return out


def _result_ids(msg: Message) -> frozenset[str]:
    return frozenset(b.tool_id for e in msg.entries for b in e.blocks if b.kind == TOOL_RESULT and b.tool_id)


def plan_patch(conv: Conversation, lines: SourceLines, plan: Plan,
               answered_in_parent: frozenset[str] | None = None) -> None:
    """Mend `conv` in the copy. A fork's first results answer its parent's last call
    (`answered_in_parent`, None when the parent cannot be read): those are left as they are, since
    Claude Code hydrates the parent in front of them; one the parent never asked for is mended."""
    faults = [f for f in plan.faults_of(conv) if not (
        f.facts.get("fork") == "parent" and (answered_in_parent is None or f.tool_use_id in answered_in_parent))]
    msgs = conv.messages
    # The parent's last calls that the fork's first message leaves unanswered (message -1: the parent's).
    unanswered = sorted(answered_in_parent - _result_ids(msgs[0])) \
        if answered_in_parent and conv.forked and msgs and msgs[0].role == "user" else []
    if not faults and not unanswered:
        return
    msg_of = _places_of(conv, (f.entry for f in faults))
    # Per user message: entries to move behind its results, and new entries to add there.
    tail: dict[int, list[dict[str, Any]]] = defaultdict(list)
    # Per assistant message index with no user message after it: synthetic results.
    new_results: dict[int, list[dict[str, Any]]] = defaultdict(list)
    renamed: dict[tuple[int, str], list[str]] = defaultdict(list)  # (user message index, old id) -> new ids

    def obj(e: Entry) -> dict[str, Any]:
        return _editable(e, lines, plan)

    for tid in unanswered:
        new_results[-1].append({"type": "tool_result", "tool_use_id": tid, "content": MISSING_RESULT_TEXT,
                                "is_error": True})
        plan.added_results += 1
        plan.fixed.append(f"line {msgs[0].entries[0].line}: added the missing tool_result for {tid} (called at "
                          "the end of the conversation this session was forked from)")
    for fault in faults:
        e, mi = fault.entry, msg_of.get(id(fault.entry), -1)
        if fault.facts.get("server_tool") and fault.block is not None:
            # A server tool's half without its other half in the same message: both halves are
            # kept as text in place (an assistant message may hold text anywhere; no pairing needed).
            content = obj(e)["message"]["content"]
            content[fault.block] = _server_half_text(content[fault.block])
            plan.fixed.append(f"line {e.line}: kept the unpaired {content[fault.block]['__kind__']} "
                              f"{fault.tool_use_id} as text")
            del content[fault.block]["__kind__"]
        elif fault.rule == "orphan-tool-use" and fault.tool_use_id:
            result = {"type": "tool_result", "tool_use_id": fault.tool_use_id, "content": MISSING_RESULT_TEXT,
                      "is_error": True}
            new_results[mi].append(result)
            plan.added_results += 1
            plan.fixed.append(f"line {e.line}: added the missing tool_result for {fault.tool_use_id}")
        elif fault.rule == "orphan-tool-result" and fault.block is not None:
            d = obj(e)
            content = d["message"]["content"]
            text = _orphan_text(content[fault.block])
            content[fault.block] = None  # removed below, after every fault of this line
            tail[mi].append({"__text__": text, "__template__": e})
            plan.fixed.append(f"line {e.line}: kept the orphaned tool_result for {fault.tool_use_id} as text")
        elif fault.rule == "duplicate-tool-use-id" and fault.tool_use_id and fault.block is not None:
            new_id = f"toolu_rw{uuid.uuid4().hex[:22]}"
            obj(e)["message"]["content"][fault.block]["id"] = new_id
            renamed[(mi + 1, fault.tool_use_id)].append(new_id)
            plan.fixed.append(f"line {e.line}: renamed the duplicate tool_use id {fault.tool_use_id} to {new_id}")
        elif fault.rule == "tool-result-not-first":
            plan.fixed.append(f"line {e.line}: moved the tool_result for {fault.tool_use_id} before other content")

    # Rename the results that answer renamed duplicates, the last ones with that id: per user message,
    # its results by old id, found in one pass. When the first use of the id is in the same message,
    # one result is left to it; a renamed use that no result is left for is answered as missing.
    by_message: dict[int, dict[str, list[str]]] = defaultdict(dict)
    for (ui, old), new_ids in renamed.items():
        by_message[ui][old] = new_ids
    for ui, olds in by_message.items():
        if not (0 < ui < len(msgs) and msgs[ui].role == "user"):
            continue
        found: dict[str, list[tuple[Entry, int]]] = defaultdict(list)
        for ent in msgs[ui].entries:
            d = plan.replace.get(ent.line) or lines.get(ent)
            blocks = d.get("message", {}).get("content")
            if isinstance(blocks, list):
                for bi, b in enumerate(blocks):
                    if isinstance(b, dict) and b.get("type") == TOOL_RESULT and b.get("tool_use_id") in olds:
                        found[b["tool_use_id"]].append((ent, bi))
        uses = Counter(b.tool_id for e in msgs[ui - 1].entries for b in e.blocks if b.kind == TOOL_USE)
        for old, new_ids in olds.items():
            answers = found.get(old, [])
            if uses[old] > len(new_ids):  # the use that kept the id is in this message: its result stays
                answers = answers[1:]
            paired = min(len(new_ids), len(answers))
            for new_id, (ent, bi) in zip(new_ids[len(new_ids) - paired:], answers[len(answers) - paired:],
                                         strict=True):
                obj(ent)["message"]["content"][bi]["tool_use_id"] = new_id
            for new_id in new_ids[:len(new_ids) - paired]:
                new_results[ui - 1].append({"type": "tool_result", "tool_use_id": new_id,
                                            "content": MISSING_RESULT_TEXT, "is_error": True})
                plan.added_results += 1
                plan.fixed.append(f"line {msgs[ui - 1].entries[-1].line}: added the missing tool_result for "
                                  f"{new_id} (renamed from {old})")

    # Lay out each touched user message: results first, then synthetic results, then the rest.
    touched = set(tail) | {i + 1 for i in new_results} | {msg_of.get(id(f.entry), -1) for f in faults}
    layout: dict[int, tuple[list[Entry], list[Entry | dict[str, Any]]]] = {}  # msg -> (staying, moving)
    new_messages: dict[int, dict[str, Any]] = {}  # assistant msg -> a new user message after it
    for i, msg in enumerate(msgs):
        if msg.role == "assistant" and i in new_results and (i + 1 >= len(msgs) or msgs[i + 1].role != "user"):
            new_messages[i] = _synthetic_user(lines.get(msg.entries[-1]), new_results[i], msg.entries[-1].uuid)
        if msg.role != "user" or i not in touched:
            continue
        results: list[Entry] = []
        others: list[Entry | dict[str, Any]] = []
        texts_of: dict[int, list[dict[str, Any]]] = defaultdict(list)  # id(line) -> its orphans' texts
        for t in tail[i]:
            texts_of[id(t["__template__"])].append(t)
        for ent in msg.entries:
            d = plan.replace.get(ent.line) or lines.get(ent)
            content = d.get("message", {}).get("content")
            if ent.line in plan.replace and isinstance(content, list):
                content[:] = [b for b in content if b is not None]
                if not content:  # the line held only the orphan: it becomes the text itself
                    for t in texts_of.get(id(ent), ()):
                        content.append(t["__text__"])
                        t["__done__"] = True
                    others.append(ent)
                    continue
            if not isinstance(content, list):
                others.append(ent)
                continue
            is_res = [isinstance(b, dict) and b.get("type") == TOOL_RESULT for b in content]
            if not any(is_res):
                others.append(ent)
                continue
            if not all(is_res):  # results and other content on one line: results first
                fixed = [b for b, r in zip(content, is_res, strict=True) if r] + [
                    b for b, r in zip(content, is_res, strict=True) if not r]
                if fixed != content:
                    obj(ent)["message"]["content"] = fixed
            results.append(ent)
        # The first message of a fork hangs from the parent's last line, which is not in this file.
        prev_assistant = msgs[i - 1].entries[-1].uuid if i > 0 else msg.entries[0].parent
        synth: list[Entry | dict[str, Any]] = (
            [_synthetic_user(lines.get(msg.entries[-1]), new_results[i - 1], prev_assistant)]
            if (i - 1) in new_results else []
        )
        texts: list[Entry | dict[str, Any]] = [
            _synthetic_user(lines.get(t["__template__"]), [t["__text__"]], None)
            for t in tail[i] if not t.get("__done__")
        ]
        layout[i] = (results, synth + others + texts)

    _relink(conv, layout, new_messages, plan, obj)


def _relink(
    conv: Conversation,
    layout: dict[int, tuple[list[Entry], list[Entry | dict[str, Any]]]],
    new_messages: dict[int, dict[str, Any]],
    plan: Plan,
    obj: Any,
) -> None:
    """Place moved and new lines after their message's last line, and make the conversation one
    linear parentUuid chain in API order (the layout every Claude Code version loads)."""
    msgs = conv.messages
    sequence: list[Entry | dict[str, Any]] = []
    # The lines of the messages come in `order` as in the messages, other lines between them: the
    # next message line is the one `(nxt, at)` points at (no map of every line to its message).
    nxt = at = 0
    for e in conv.order:
        if nxt == len(msgs) or e is not msgs[nxt].entries[at]:
            if not (e.api_error and e.line in plan.drop):  # a recorded error left out
                sequence.append(e)
            continue
        mi, first = nxt, at == 0
        at += 1
        if at == len(msgs[nxt].entries):
            nxt, at = nxt + 1, 0
        if not first:
            continue  # a later line of a message laid out at its first
        msg: Message = msgs[mi]
        if mi not in layout and mi not in new_messages:  # the usual message: its lines as they are
            sequence.extend(msg.entries)
            continue
        anchor = max(x.line for x in msg.entries)
        if mi in layout:
            staying, moving = layout[mi]
            sequence.extend(staying)
            sequence.extend(moving)
            for x in moving:
                if isinstance(x, dict):
                    plan.insert_after[anchor].append(x)
                else:
                    plan.drop.add(x.line)
                    plan.insert_after[anchor].append(obj(x))
        else:
            sequence.extend(msg.entries)
        if mi in new_messages:
            sequence.append(new_messages[mi])
            plan.insert_after[anchor].append(new_messages[mi])
    prev_uuid: str | None = None
    for k, x in enumerate(sequence):
        this_uuid = x.get("uuid") if isinstance(x, dict) else x.uuid
        if this_uuid is None:
            continue
        if k == 0 and isinstance(x, dict) and conv.order:
            # A new first line (a fork's answer to its parent's last call) hangs where the old first did.
            x["parentUuid"] = conv.order[0].parent
        if k > 0 and prev_uuid is not None:
            parent = x.get("parentUuid") if isinstance(x, dict) else x.parent
            if parent != prev_uuid:
                if isinstance(x, dict):
                    x["parentUuid"] = prev_uuid
                elif x.line in plan.replace:
                    plan.replace[x.line]["parentUuid"] = prev_uuid
                else:
                    plan.reparent[x.line] = prev_uuid
        prev_uuid = this_uuid
    assert nxt == len(msgs), "a message line missing from the conversation's order"


def rewind_points(main: Conversation) -> list[Entry]:
    """The user prompts of the live conversation, in order: where `--to` may cut (as `/rewind`'s menu).
    (A prompt of its order is always in one of its messages: `conversation._assemble` leaves out of
    them only lines that are not messages.)"""
    return [e for e in main.order if _is_prompt(e)]


def last_prompt(main: Conversation) -> Entry | None:
    """The last of `rewind_points`, found from the end."""
    return next((e for e in reversed(main.order) if _is_prompt(e)), None)


def rewind_drops(main: Conversation) -> dict[int, int]:
    """For each prompt `rewind --to` accepts (by line): how many messages cutting there drops. A
    prompt after a break, or the first one, is refused by `--to`, so it is not here."""
    msg_of = _message_index(main)
    faults = validate(main)
    first_fault = min((msg_of.get(id(f.entry), 0) for f in faults), default=None)
    total = len(main.messages)
    return {e.line: total - msg_of[id(e)] for e in rewind_points(main)
            if msg_of[id(e)] > 0 and (first_fault is None or first_fault >= msg_of[id(e)])}


def _point(main: Conversation, to: str) -> Entry:
    points = rewind_points(main)
    for e in points:
        if to == e.uuid or (to.isdigit() and int(to) == e.line):
            return e
    listed = ", ".join(f"line {e.line} ({e.uuid})" for e in points[-10:]) or "none"
    more = f" (the last 10 of {len(points)})" if len(points) > 10 else ""
    raise RewindError(f"--to {to}: not a user prompt of the live conversation; the prompts it can rewind to are"
                      f"{more}: {listed}")


def plan_truncate(check: TranscriptCheck, plan: Plan, to: str | None = None) -> None:
    main = check.main
    if main is None:
        if any(c.kind == "sidechain" for c in check.conversations):
            raise RewindError("this is a subagent transcript (only sidechain entries): nothing to cut back; "
                              "use --mode patch")
        raise RewindError("no conversation to rewind: the file has no user or assistant entries")
    faults = list(plan.faults_of(main))
    msgs = main.messages
    if to is not None:
        point = _point(main, to)
        places = _places_of(main, [point, *(f.entry for f in faults)])
        keep = places[id(point)]
        earlier = sorted(f.entry.line for f in faults if places.get(id(f.entry), 0) < keep)
        if earlier:
            raise RewindError(f"--to {to}: the conversation already breaks before it, at line {earlier[0]}; "
                              f"choose a prompt before line {earlier[0]}")
        if keep == 0:
            raise RewindError(f"--to {to}: that is the first prompt; nothing would be left to resume")
        _cut(check, main, keep, plan)
        return
    if faults:
        places = _places_of(main, (f.entry for f in faults))
        keep = min(places[id(f.entry)] for f in faults)
    else:
        prompt = _before_recorded_400(check, main)
        keep = _places_of(main, [prompt])[id(prompt)]
    while keep > 0 and msgs[keep - 1].role == "assistant" and any(
        b.kind == TOOL_USE for e in msgs[keep - 1].entries for b in e.blocks
    ):
        keep -= 1
    while keep > 0 and msgs[keep - 1].role == "user" and any(e.has_tool_result for e in msgs[keep - 1].entries) and (
        keep - 1 == 0 or msgs[keep - 2].role != "assistant"
    ):
        keep -= 1
    if keep == 0:
        raise RewindError("the conversation is broken from its first message: nothing to keep; use --mode patch")
    _cut(check, main, keep, plan)


def _cut(check: TranscriptCheck, main: Conversation, keep: int, plan: Plan) -> None:
    """Drop the live conversation from message `keep` on, and every main-scope line after it."""
    msgs = main.messages
    last_kept_line = max(map(_line_of, chain.from_iterable(map(_entries_of, msgs[:keep]))))  # no Python loop
    # No kept line is after the last kept one, so a line after it is late; and only a late line
    # of the main order is looked up: the sets hold the dropped tail, not the whole conversation.
    dropped = [e for m in msgs[keep:] for e in m.entries]
    for e in dropped:
        if e.line <= last_kept_line:  # a dropped line written before the last kept one
            plan.drop.add(e.line)
    dropped_ids = {id(e) for e in dropped}
    late_in_main_order = {id(e) for e in main.order if e.line > last_kept_line}
    entries = check.transcript.entries  # in file order: the late ones are a tail of them
    for e in entries[bisect_right(entries, last_kept_line, key=_line_of):]:
        # A late message, or a line of the main chain, or (progress and system lines after the
        # cut hang off dropped lines: kept, they would point at nothing, and one of them could
        # become the leaf Claude Code resumes from) any late line with a uuid.
        if (not e.sidechain and (e.type in ("user", "assistant") or e.uuid is not None)) \
                or id(e) in late_in_main_order or id(e) in dropped_ids:
            plan.drop.add(e.line)
    plan.kept_messages = keep
    plan.total_messages = len(msgs)
    plan.last_prompt = next((e for m in reversed(msgs[:keep]) for e in reversed(m.entries) if _is_prompt(e)), None)
    plan.fixed.append(
        f"kept {keep} of {len(msgs)} messages; cut before line {min(e.line for m in msgs[keep:] for e in m.entries)}"
    )




def _is_prompt(e: Entry) -> bool:
    """A user message the user typed (not a tool_result line)."""
    return e.type == "user" and e.is_message and not e.has_tool_result


def _before_recorded_400(check: TranscriptCheck, main: Conversation) -> Entry:
    """The prompt whose request Claude Code recorded the 400 for, when every call pairs: a cut
    there is what `/rewind` to that prompt does."""
    recorded = [f.start.line for f in check.findings
                if f.rule == CONCURRENCY_400 and f.facts.get("conversation") == main.label
                and f.facts.get("recorded_400") == "paired" and f.severity <= Severity.WARNING]
    if not recorded:
        raise RewindError("the main conversation already pairs; nothing to rewind (try --mode patch for sidechains)")
    first = min(recorded)
    prompt = None
    for e in main.order:
        if e.line >= first:
            break
        if _is_prompt(e):  # in a message: see rewind_points
            prompt = e
    if prompt is None:
        raise RewindError(f"the tool-use 400 recorded at line {first} has no prompt before it to rewind to; "
                          "use --mode patch")
    return prompt
