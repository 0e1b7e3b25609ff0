"""The API's pairing rules, applied to rebuilt conversations.

- each tool_use id of an assistant message has a tool_result in the immediately following
  user message (`orphan-tool-use`);
- each tool_result answers a tool_use of the immediately preceding assistant message, once
  (`orphan-tool-result`);
- tool_use ids are unique in a conversation (`duplicate-tool-use-id`, at the second one);
- in a user message the tool_results come before any other content (`tool-result-not-first`).

The result is a list of faults: which rule, which entry and block, and why. Where they are
in the file, and how severe, is decided by the caller (`check`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import msgspec

from .conversation import Conversation, Message, api_positions, first_sent, is_splitter, reply_splitters
from .transcript import OTHER, SERVER_TOOL_USES, TOOL_RESULT, TOOL_USE, Block, Entry


class Fault(msgspec.Struct):
    rule: str
    entry: Entry
    block: int | None
    message: str
    tool_use_id: str | None = None
    related: list[tuple[Entry, int | None, str]] = msgspec.field(default_factory=list)
    facts: dict[str, str] = msgspec.field(default_factory=dict)
    pending: bool = False  # a tool_use at the very end: its tool may still be running


_NO_BLOCKS: list[tuple[Entry, Block]] = []  # shared by every message without tool blocks; never changed


def _blocks(message: Message) -> list[tuple[Entry, Block]]:
    """The tool blocks of a message: every use of these lists tests the kind, and `other` is none.
    (Most messages have none: one shared empty list, not a million.)"""
    entries = message.entries
    if len(entries) == 1:  # the usual message: one line, most often of text only (no comprehension)
        e = entries[0]
        bl = e.blocks
        if not bl or (len(bl) == 1 and bl[0].kind == OTHER):
            return _NO_BLOCKS
        found = [(e, b) for b in bl if b.kind != OTHER]
    else:
        found = [(e, b) for e in entries for b in e.blocks if b.kind != OTHER]
    return found if found else _NO_BLOCKS


def _text_first(message: Message) -> list[tuple[Entry, int | None]]:
    """Content of a user message in order; a plain-string content is one text block (None)."""
    out: list[tuple[Entry, int | None]] = []
    for e in message.entries:
        if e.text_content:
            out.append((e, None))
        else:
            out.extend((e, b.index) for b in e.blocks)
    return out


class _Splitters:
    """The splitters of a conversation, asked for the first one (in conversation order) written
    between two lines: a bisection of their lines, not a scan of all of them per question."""

    def __init__(self, splitters: list[Entry]) -> None:
        self.splitters = splitters
        ranked = sorted(range(len(splitters)), key=lambda k: splitters[k].line)
        self.lines = [splitters[k].line for k in ranked]
        # Conversation order is file order but for a crafted file: then the first in order among
        # those in a range is a range minimum, answered by a sparse table of ranks.
        self.table: list[list[int]] | None = None
        if any(ranked[k] > ranked[k + 1] for k in range(len(ranked) - 1)):
            table = [ranked]
            width = 1
            while 2 * width <= len(ranked):
                prev = table[-1]
                table.append([min(prev[i], prev[i + width]) for i in range(len(ranked) - 2 * width + 1)])
                width *= 2
            self.table = table

    def between(self, first: Entry, last: Entry) -> Entry | None:
        lo = bisect_right(self.lines, first.line)
        hi = bisect_left(self.lines, last.line)
        if lo >= hi:
            return None
        if self.table is None:
            return self.splitters[lo]
        level = (hi - lo).bit_length() - 1
        row = self.table[level]
        return self.splitters[min(row[lo], row[hi - (1 << level)])]


def _next_replies(entries: list[Entry]) -> dict[int, Entry | None]:
    """For each entry (by identity, its first place): the first later entry of another reply, that
    is whose message.id is missing or differs from its own. One backward pass: when the next entry
    has the same message.id, its answer is this one's too."""
    after: list[Entry | None] = [None] * len(entries)
    for k in range(len(entries) - 2, -1, -1):
        mid, nxt = entries[k].message_id, entries[k + 1]
        nxt_mid = nxt.message_id
        after[k] = nxt if mid is None or nxt_mid is None or nxt_mid != mid else after[k + 1]
    out: dict[int, Entry | None] = {}
    for k, e in enumerate(entries):
        out.setdefault(id(e), after[k])
    return out


def validate(conv: Conversation, start: int = 0) -> list[Fault]:
    """The faults of `conv`'s messages from `start` on; the messages before it are only what they
    are to those (the message before, the tool ids already used). A rewound branch is its whole
    chain from the root, most of it the live conversation's, whose faults are judged there."""
    if conv.api == "responses":
        return validate_responses(conv)
    faults: list[Fault] = []
    splitters: _Splitters | None = None  # found and indexed on first use: few conversations need them
    missing_parent = {id(e) for e in conv.missing_parent}
    seen_use: dict[str, tuple[Entry, Block]] = {}
    msgs = conv.messages
    start = max(0, min(start, len(msgs)))
    for m in msgs[:start]:
        if m.role == "assistant":
            for e, b in _blocks(m):
                if (b.kind == TOOL_USE or b.kind in SERVER_TOOL_USES) and b.tool_id and b.tool_id not in seen_use:
                    seen_use[b.tool_id] = (e, b)
    # Each message's blocks are looked at up to three times (as the next and the previous one too).
    blocks: list[list[tuple[Entry, Block]]] = [[] for _ in range(start - 1)]
    blocks += [_blocks(m) for m in msgs[max(start - 1, 0) :]]
    # Index of the last assistant message: "a reply comes later" in O(1) instead of a scan per message.
    last_assistant = next((k for k in range(len(msgs) - 1, -1, -1) if msgs[k].role == "assistant"), -1)
    for i in range(start, len(msgs)):
        if not blocks[i]:
            continue  # no tool block (most messages): nothing to pair, nothing out of order
        msg = msgs[i]
        if msg.role == "assistant":
            # One pass for the uses and the server-side results (it was a comprehension and a loop).
            uses: list[tuple[Entry, Block]] = []
            server_ids: dict[str, Entry] = {}
            split_answers: set[str] = set()
            for e, b in blocks[i]:
                kind = b.kind
                if kind == TOOL_USE:
                    uses.append((e, b))
                elif kind in SERVER_TOOL_USES:
                    uses.append((e, b))
                    if b.tool_id:
                        server_ids[b.tool_id] = e
                elif kind.endswith("_tool_result") and kind != TOOL_RESULT and b.tool_id in server_ids and (
                    splitter := (splitters := splitters or _Splitters([x for x in conv.order if is_splitter(x)])
                                 ).between(server_ids[b.tool_id], e)
                ) is not None:
                    # Claude Code merges the lines of one reply only while nothing else was written
                    # between them: the two halves reach the API in different assistant messages.
                    split_answers.add(b.tool_id or "")
                    faults.append(Fault(
                        "orphan-tool-result", e, b.index,
                        f"unexpected tool_use_id found in {b.kind} blocks: {b.tool_id}. Each {b.kind} block must "
                        f"have a corresponding server_tool_use block before it: line {splitter.line} "
                        f"({splitter.type}) was written between them, so they reach the API in different messages",
                        b.tool_id, related=[(server_ids[b.tool_id], None, "its server_tool_use, in the message before"),
                                            (splitter, None, "the line written between the two halves")],
                        facts={"messages_index": str(i + 2), "server_tool": "true"},
                    ))
                elif kind.endswith("_tool_result") and kind != TOOL_RESULT and b.tool_id not in server_ids:
                    faults.append(Fault(
                        "orphan-tool-result", e, b.index,
                        f"unexpected tool_use_id found in {b.kind} blocks: {b.tool_id}. Each {b.kind} block must "
                        "have a corresponding server_tool_use block before it (in the same assistant message)",
                        b.tool_id, facts={"messages_index": str(i), "server_tool": "true"},
                    ))
            answered_server = {
                b.tool_id for _, b in blocks[i] if b.kind.endswith("_tool_result") and b.kind != TOOL_RESULT
            } - split_answers
            later_reply = i < last_assistant
            for e, b in uses:
                if b.kind in SERVER_TOOL_USES and b.tool_id and b.tool_id not in answered_server and later_reply:
                    # Its result went to another API message (something was written between the two
                    # halves) or was lost: the API wants it in the same message.
                    faults.append(Fault(
                        "orphan-tool-use", e, b.index,
                        f"`{b.kind}` {b.tool_id} has no `*_tool_result` after it in the same message; "
                        "each server_tool_use block must have its result in the same assistant message",
                        b.tool_id, facts={"messages_index": str(i), "server_tool": "true"},
                    ))
                if not b.tool_id:
                    continue
                first = seen_use.get(b.tool_id)
                if first is not None:
                    faults.append(Fault(
                        "duplicate-tool-use-id", e, b.index,
                        f"tool_use id {b.tool_id} is used a second time (first at line {first[0].line}); "
                        "tool_use ids must be unique",
                        b.tool_id, related=[(first[0], first[1].index, "first use of this id")],
                        facts={"messages_index": str(i)},
                    ))
                else:
                    seen_use[b.tool_id] = (e, b)
            client_uses = [(e, b) for e, b in uses if b.kind == TOOL_USE and b.tool_id]
            if not client_uses:
                continue
            nxt = msgs[i + 1] if i + 1 < len(msgs) else None
            answered = (
                {b.tool_id for _, b in blocks[i + 1] if b.kind == TOOL_RESULT}
                if nxt is not None and nxt.role == "user" else set()
            )
            next_reply: dict[int, Entry | None] | None = None
            for e, b in client_uses:
                if b.tool_id in answered:
                    continue
                # Another reply (another message.id) after the tool_use, merged into this message:
                # the turn ended without its result, so the tool is not still running.
                if next_reply is None:
                    next_reply = _next_replies(msg.entries)
                reply = next_reply[id(e)]
                replied = reply is not None
                if nxt is None and not replied:
                    faults.append(Fault(
                        "orphan-tool-use", e, b.index,
                        f"tool_use {b.tool_id} has no tool_result yet: the tool may still be running; "
                        "if this session is not running, resuming it fails with the tool-use 400",
                        b.tool_id, facts={"messages_index": str(i)}, pending=True,
                    ))
                    continue
                related: list[tuple[Entry, int | None, str]]
                if nxt is None:
                    where = "a later assistant reply follows it with no tool_result in between"
                    related = [(reply, None, "the reply that followed without its tool_result")] if reply else []
                else:
                    where = "the next message is another assistant message" if nxt.role == "assistant" else \
                        f"the next user message (line {nxt.entries[0].line}) does not answer it"
                    related = [(nxt.entries[0], None, "the message that should begin with its tool_result")]
                faults.append(Fault(
                    "orphan-tool-use", e, b.index,
                    f"tool_use {b.tool_id} has no tool_result immediately after it: {where}",
                    b.tool_id, related=related, facts={"messages_index": str(i)},
                ))
        else:
            results = [(e, b) for e, b in blocks[i] if b.kind == TOOL_RESULT]
            if not results:
                continue  # no tool_result: nothing to pair, nothing out of order
            prev = msgs[i - 1] if i > 0 and msgs[i - 1].role == "assistant" else None
            offered = {b.tool_id: (e, b) for e, b in blocks[i - 1] if b.kind == TOOL_USE} if prev else {}
            answered_here: dict[str, Entry] = {}
            orphaned: set[tuple[int, int]] = set()  # (entry, block) already reported as orphans
            for e, b in results:
                tid = b.tool_id or ""
                if tid in answered_here or tid not in offered:
                    orphaned.add((id(e), b.index))
                if tid in answered_here:
                    faults.append(Fault(
                        "orphan-tool-result", e, b.index,
                        f"a second tool_result for {tid} (the first is at line {answered_here[tid].line}); "
                        "each tool_use must have a single result",
                        tid, related=[(answered_here[tid], None, "first result for this id")],
                        facts={"messages_index": str(i)},
                    ))
                    continue
                answered_here[tid] = e
                if tid not in offered:
                    why = "the previous message is not an assistant message" if prev is None else \
                        f"the previous assistant message (line {prev.entries[0].line}) has no tool_use with this id"
                    if id(e) in missing_parent:
                        why = (f"its parentUuid {e.parent} names no line of the file: the assistant message it "
                               "answered is missing")
                        if conv.forked:
                            why = (f"its parentUuid {e.parent} is in the conversation this session was forked from "
                                   "(a fork-context-ref line: Claude Code reads that part from the parent session)")
                    related = [(prev.entries[0], None, "the assistant message it should answer")] if prev else []
                    forked = conv.forked and id(e) in missing_parent
                    faults.append(Fault(
                        "orphan-tool-result", e, b.index,
                        f"tool_result for {tid or '(no id)'} answers no tool_use: {why}",
                        tid or None, related=related,
                        facts={"messages_index": str(i), **({"fork": "parent"} if forked else {})},
                    ))
            seen_other: tuple[Entry, int | None] | None = None
            for e, idx in _text_first(msg):
                is_result = idx is not None and e.blocks[idx].kind == TOOL_RESULT
                if not is_result:
                    seen_other = seen_other or (e, idx)
                elif seen_other is not None and (id(e), idx) not in orphaned:
                    # An orphan answers nothing, so where it stands does not matter: one finding each.
                    b = e.blocks[idx]  # type: ignore[index]
                    faults.append(Fault(
                        "tool-result-not-first", e, b.index,
                        f"tool_result for {b.tool_id} comes after other content in its user message; "
                        "tool_result blocks must come first",
                        b.tool_id, related=[(seen_other[0], seen_other[1], "content placed before the tool_result")],
                        facts={"messages_index": str(i)},
                    ))
    _count_as_the_api(conv, faults)
    return faults


def _each_in_its_message(msgs: list[Message], indexed: list[tuple[Fault, int]]) -> bool:
    """Is each fault's entry in the message its index names? (Each message's entries are gathered
    once: thousands of faults can name one message of thousands of lines.)"""
    held: dict[int, set[int]] = {}
    for f, i in indexed:
        if not 0 <= i < len(msgs):
            return False
        ids = held.get(i)
        if ids is None:
            ids = held[i] = {id(x) for x in msgs[i].entries}
        if id(f.entry) not in ids:
            return False
    return True


def _count_as_the_api(conv: Conversation, faults: list[Fault]) -> None:
    """Each fault's `messages.N` as the API counts it (`conversation.api_positions`): from where
    Claude Code's loader starts, with a split reply counted as the messages it becomes. A fault in a
    message that is not sent keeps its place in the rebuilt conversation."""
    if not faults:
        return
    start = first_sent(conv)
    splitters = reply_splitters(conv, start)
    indexed = [(f, int(f.facts["messages_index"])) for f in faults if "messages_index" in f.facts]
    if not splitters and _each_in_its_message(conv.messages, indexed):
        # No reply is split: each message is one API message, so a fault's place is its message's
        # from `start`, which it names already (without a walk of every message: 500,000 of them).
        positions = {id(f.entry): i - start for f, i in indexed if i >= start}
    else:
        positions = api_positions(conv, {id(f.entry) for f in faults}, start, splitters)
    # A fork whose chain starts at its pointer's message: Claude Code sends the parent's part first,
    # so the count goes on from there (forks.follow adds it, with the parent file at hand).
    forked = conv.forked and bool(conv.missing_parent)
    for f in faults:
        n = positions.get(id(f.entry))
        if n is not None and "messages_index" in f.facts:
            f.facts["messages_index"] = str(n)
        if forked:
            f.facts["forked"] = "true"


# The Responses API's rules (a Codex rollout), in the wording of its refusals. A call and the output
# kind that answers it, as Codex's own normalizer pairs them (`codex.OUTPUT_OF`, repeated here so
# that the validator imports no reader).
_RESPONSES_OUTPUT_OF = {
    "function_call": "function_call_output",
    "custom_tool_call": "custom_tool_call_output",
    "local_shell_call": "function_call_output",
}
_RESPONSES_OUTPUTS = frozenset(_RESPONSES_OUTPUT_OF.values())
_NO_OUTPUT = {
    "function_call": "No tool output found for function call {id}.",
    "custom_tool_call": "No tool output found for custom tool call {id}.",
    "local_shell_call": "No tool output found for local shell call {id}.",
}
_NO_CALL = {
    "function_call_output": "No tool call found for function call output with call_id {id}.",
    "custom_tool_call_output": "No tool call found for custom tool call output with call_id {id}.",
}


def validate_responses(conv: Conversation) -> list[Fault]:
    """A Responses API history pairs when every call (`function_call`, `custom_tool_call`,
    `local_shell_call`) has one output of its kind with its `call_id` somewhere after it, every output
    answers a call before it, and call ids are unique (`codex-orphan-call`, `codex-orphan-output`,
    `codex-duplicate-call-id`). Unlike the Messages API the output need not be the next item."""
    faults: list[Fault] = []
    items = [(e, b) for m in conv.messages for e in m.entries for b in e.blocks]
    calls: dict[str, tuple[Entry, Block, int]] = {}
    uses: dict[str, int] = {}  # calls made with each id (more than one is itself a finding)
    answered: dict[str, Entry] = {}
    answers: dict[str, int] = {}
    for pos, (e, b) in enumerate(items):
        tid = b.tool_id or ""
        if b.kind in _RESPONSES_OUTPUT_OF:
            uses[tid] = uses.get(tid, 0) + 1
            first = calls.get(tid)
            if first is not None:
                faults.append(Fault(
                    "codex-duplicate-call-id", e, b.index,
                    f"call_id {tid} is used a second time (first at line {first[0].line}); call ids must be unique",
                    tid, related=[(first[0], first[1].index, "first call with this id")], facts={"agent": "codex"},
                ))
            else:
                calls[tid] = (e, b, pos)
        elif b.kind in _RESPONSES_OUTPUTS:
            call = calls.get(tid)
            if call is not None and _RESPONSES_OUTPUT_OF[call[1].kind] == b.kind and answers.get(tid, 0) < uses[tid]:
                answered.setdefault(tid, e)
                answers[tid] = answers.get(tid, 0) + 1
                continue
            refusal = _NO_CALL[b.kind].format(id=tid or "(no id)")
            if call is None:
                why = "no call before it has this call_id"
            elif tid in answered:
                why = f"a second output for the call at line {call[0].line} (the first is at line {answered[tid].line})"
            else:
                why = f"the call with this id (line {call[0].line}) is a {call[1].kind}, answered by a " \
                      f"{_RESPONSES_OUTPUT_OF[call[1].kind]}"
            faults.append(Fault(
                "codex-orphan-output", e, b.index, f"{b.kind} for {tid or '(no id)'} answers no call: {why}. "
                f"The Responses API refuses the history: \"{refusal}\"", tid or None,
                related=[(call[0], call[1].index, "the call with this id")] if call else [], facts={"agent": "codex"},
            ))
    # The last message that is not a call: a call after it, with only calls after it, may still run.
    last_answer = max((k for k, m in enumerate(conv.messages)
                       if not any(b.kind in _RESPONSES_OUTPUT_OF for b in m.entries[0].blocks)), default=-1)
    place = {id(m.entries[0]): k for k, m in enumerate(conv.messages)}
    for tid, (e, b, _pos) in calls.items():
        if tid in answered or not tid:
            continue
        pending = place[id(e)] > last_answer
        refusal = _NO_OUTPUT[b.kind].format(id=tid)
        if pending:
            message = (f"{b.kind} {tid} has no output yet: the tool may still be running; if this session is not "
                       f"running, resuming it fails (\"{refusal}\")")
        else:
            message = (f"{b.kind} {tid} has no {_RESPONSES_OUTPUT_OF[b.kind]} after it. The Responses API refuses "
                       f"the history: \"{refusal}\"")
        faults.append(Fault("codex-orphan-call", e, b.index, message, tid, facts={"agent": "codex"}, pending=pending))
    return faults
