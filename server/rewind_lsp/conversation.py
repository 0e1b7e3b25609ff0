"""Rebuild the conversations of a transcript the way the API is sent them.

A transcript is a tree of entries linked by `parentUuid`. The conversation that is sent is
the *active chain*: from the newest message walk up to the root or a compaction boundary.
Parallel tool calls make it a DAG: Claude Code writes each content block of one response
on its own line (all sharing `message.id`) and hangs each tool_result off the line of its
own tool_use, so a plain walk up from the leaf misses sibling blocks and results. They are
re-attached here by `message.id`, as Claude Code does when it loads a session.

Sidechains (subagent conversations, `isSidechain: true`) are separate conversations, each
rebuilt the same way from its own root. Everything off these chains (rewound branches,
history before a compaction) is rebuilt too, as *history*: it is never sent again.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import count, filterfalse, repeat
from operator import attrgetter

import msgspec

from .transcript import TOOL_RESULT, Entry

_SIDECHAIN = attrgetter("sidechain")

# Entry types a conversation is made of (as opposed to bookkeeping lines such as progress).
_CHAIN_TYPES = frozenset({"user", "assistant"})

# How many off-chain branches to rebuild at most; beyond this, history is not examined.
MAX_HISTORY_BRANCHES = 256
# How many lines the rebuilt branches of one segment may hold together (each branch is its whole chain
# from the root, so a long session without compaction and with many rewinds held branches x depth:
# 1 GB took 77 s). Beyond this, history is not examined either. Only history findings (information)
# can go unreported; a normal segment (a few thousand lines) never comes near it.
MAX_HISTORY_LINES = 1_000_000


def _line_of(e: Entry) -> int:
    return e.line


_COMPACT_BOUNDARY = "compact_boundary"


class Message(msgspec.Struct, gc=False):  # a role and a list of entries: no cycles, a million of them
    """One API message: consecutive entries of one role, merged as the API merges them."""

    role: str  # "user" | "assistant"
    entries: list[Entry]


class Conversation(msgspec.Struct):
    kind: str  # "main" | "sidechain" | "history"
    messages: list[Message]
    # Every entry of the chain in API order, non-message entries (progress, system) in place.
    order: list[Entry]
    leaf: Entry | None
    label: str = ""
    # Lines of the chain whose parentUuid names no line of the file: the rebuild bridges over them,
    # but Claude Code's loader stops its walk up there, so the API's `messages.N` counts from the last.
    missing_parent: list[Entry] = msgspec.field(default_factory=list)
    # A `/fork` made since 2.1.118 holds a `fork-context-ref` line instead of a copy of the parent
    # conversation, which Claude Code hydrates on read: what its first lines answer is in the parent.
    forked: bool = False
    # Whose pairing rules judge it: "messages" (Anthropic's Messages API, Claude Code) or
    # "responses" (OpenAI's Responses API, a Codex rollout: `codex.rebuild_rollout`).
    api: str = "messages"

    @property
    def entry_ids(self) -> set[int]:
        return {id(e) for e in self.order}


class EntryIndex:
    __slots__ = (
        "_position", "_scopes", "attached_results", "by_uuid", "entries", "has_message_children",
        "has_other_children", "siblings", "superseded",
    )

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.entries = entries
        self.by_uuid: dict[str, Entry] = {}
        self.siblings: dict[tuple[bool, str | None, str], list[Entry]] = {}
        self.attached_results: dict[str, list[Entry]] = {}
        # What lines continue from a uuid: a user/assistant line, or another (two sets, not one of
        # every parent beside one of message parents: most parents are both).
        self.has_message_children: set[str] = set()
        self.has_other_children: set[str] = set()
        # Earlier copies of a line written again with the same uuid: Claude Code's loader keys
        # entries by uuid, so the last copy wins and the others are not part of any conversation.
        self.superseded: set[int] = set()
        # Entries of each scope (main, or one agent's sidechain) in file order, for bridging. Built
        # on first use only: a parent is missing in few files, and these cost a third of the index.
        # With each scope, for each of its places the nearest target of bridging at or before it
        # (-1: none): a bridge is then one look-up, not a walk back over up to 10,000 lines.
        self._scopes: dict[tuple[bool, str | None], tuple[list[Entry], list[int]]] | None = None
        self._position: dict[int, int] | None = None

    def _scope_of(self, e: Entry) -> tuple[list[Entry], list[int], int]:
        if self._scopes is None or self._position is None:
            scopes: dict[tuple[bool, str | None], tuple[list[Entry], list[int]]] = {}
            position: dict[int, int] = {}
            continued = self.has_message_children
            for x in self.entries:
                key = (x.sidechain, x.agent_id)
                got = scopes.get(key)
                if got is None:
                    got = scopes[key] = ([], [])
                scope, nearest = got
                k = len(scope)
                position[id(x)] = k
                scope.append(x)
                if x.uuid is not None and x.type in _CHAIN_TYPES and x.uuid not in continued:
                    nearest.append(k)
                else:
                    nearest.append(nearest[-1] if k else -1)
            self._scopes, self._position = scopes, position
        scope, nearest = self._scopes[(e.sidechain, e.agent_id)]
        return scope, nearest, self._position[id(e)]

    def add_entries(self, new: Iterable[Entry]) -> None:
        """Index more entries (the caller appends them to `entries`). One loop with its look-ups
        bound once, not a method call per line: this runs for every line of every segment."""
        by_uuid, siblings, attached = self.by_uuid, self.siblings, self.attached_results
        has_message_children, has_other_children = self.has_message_children, self.has_other_children
        stale: dict[int, list[Entry]] = {}
        for e in new:
            uuid = e.uuid
            if uuid is not None:
                earlier = by_uuid.get(uuid)
                if earlier is not None:
                    self._supersede(earlier, stale)
                by_uuid[uuid] = e
            parent = e.parent
            kind = e.type
            if parent is not None:
                if kind == "user" or kind == "assistant":
                    has_message_children.add(parent)
                else:
                    has_other_children.add(parent)
            if kind == "assistant":
                if not e.api_error:
                    m = e.message
                    if m is not None and m.id:
                        key = (e.sidechain, e.agent_id, m.id)
                        group = siblings.get(key)
                        if group is None:
                            siblings[key] = [e]
                        else:
                            group.append(e)
            elif kind == "user":
                m = e.message
                if m is not None and isinstance(m.content, list) and e.has_tool_result:
                    src = e.source_tool_assistant
                    for a in (parent, src if src != parent else None):
                        if a is not None:
                            got = attached.get(a)
                            if got is None:
                                attached[a] = [e]
                            else:
                                got.append(e)
        if stale:
            gone = self.superseded
            for group in stale.values():
                group[:] = [x for x in group if id(x) not in gone]
        if self._scopes is not None:  # bridging's per-scope lists are rebuilt on next use
            self._scopes = self._position = None

    def _supersede(self, earlier: Entry, stale: dict[int, list[Entry]]) -> None:
        """Mark an earlier copy of a uuid (rare: a line written twice); the groups it joined are
        collected in `stale`, to be filtered once at the end (a removal each was quadratic)."""
        self.superseded.add(id(earlier))
        m = earlier.message
        if earlier.type == "assistant" and m is not None and m.id:
            group = self.siblings.get((earlier.sidechain, earlier.agent_id, m.id))
            if group is not None:
                stale[id(group)] = group
        for key in (earlier.parent, earlier.source_tool_assistant):
            got = self.attached_results.get(key) if key is not None else None
            if got is not None:
                stale[id(got)] = got

    def parent_of(self, e: Entry) -> Entry | None:
        p = e.parent
        if p is None or (e.type == "system" and e.subtype == "compact_boundary"):
            return None
        found = self.by_uuid.get(p)
        if found is not None:
            return found
        return self.bridge(e)

    def bridge(self, e: Entry) -> Entry | None:
        """Where a line whose parent is not in the file continues from (None: nowhere)."""
        # The parent is not in the file (a line lost or cut out). Stopping here would hide the
        # rest of the conversation, so bridge to the nearest earlier message line of the same scope
        # that no other message continues from: the end of the chain as it stood when this line
        # was written. Bookkeeping lines (progress, system) are neither targets nor continuations:
        # real files hold hundreds of dead-end hook progress lines hanging off tool_use lines.
        if e.type == "assistant" and e.message_id and not e.api_error:
            # A later block of a reply whose parent line is lost (2.1.39 streaming hangs it off a
            # tool_result line): its earlier blocks are the same message, so continue from them.
            # The group is in file order (indexed line by line): the last block before this line
            # by bisection, not a scan of the group for each of its lines.
            group = self.siblings.get((e.sidechain, e.agent_id, e.message_id), ())
            k = bisect_left(group, e.line, key=_line_of)
            if k:
                return group[k - 1]
        scope, nearest, i = self._scope_of(e)
        i -= 1
        if i < 0:
            return None
        found = nearest[i]
        return scope[found] if found > i - 10_000 and found >= 0 else None


def index_entries(entries: Sequence[Entry]) -> EntryIndex:
    ix = EntryIndex(entries)
    ix.add_entries(entries)
    return ix


class _Trace:
    """How `_assemble` built a conversation from a chain that ends at a root: the chain's lines
    (`lines`, from place `base` on; the places before are another trace's) and, after each line,
    how long the order was. A history branch whose walk up meets this chain is the same chain from
    there up, so its assembly picks up where this one stood (`state_at`) instead of redoing it: a
    session with many rewinds and no compaction walked and assembled each branch from its root
    (5 branches of 200,000 lines: a third of the check of 1 GB)."""

    __slots__ = ("base", "conv", "lines", "marks", "missing_at", "starts")

    def __init__(self) -> None:
        self.conv: Conversation | None = None
        self.lines: list[Entry] = []
        self.base = 0
        self.marks = array("q")  # len(order) after each line of the chain was taken in
        self.starts = array("q")  # len(order) before each message's first line
        self.missing_at: list[int] = []  # chain places of conv.missing_parent

    def state_at(self, j: int) -> tuple[list[Message], list[Entry]]:
        """The messages and order after line j of the chain, as `_assemble` had them then (the last
        message a copy, for the caller to extend; the others shared, as no assembly changes them)."""
        conv = self.conv
        assert conv is not None
        n = self.marks[j]
        order = conv.order[:n]
        m = bisect_left(self.starts, n)
        messages = conv.messages[:m]
        if m:
            last = messages[-1]
            taken = set(map(id, order[self.starts[m - 1] :]))
            messages[-1] = Message(last.role, [x for x in last.entries if id(x) in taken])
        return messages, order

    def index_into(self, known: dict[int, tuple[_Trace, int]]) -> None:
        """Record where each of its own lines is, for `_walk` to stop at."""
        known.update(zip(map(id, self.lines), zip(repeat(self), count(self.base)), strict=False))


Joined = tuple[_Trace, int]  # a traced chain and a place in it


def _walk_plain(leaf: Entry, ix: EntryIndex) -> tuple[list[Entry], list[int]] | None:
    """`_walk` without a limit or traced chains, for the live conversations: the chain, root first,
    and the places in it of the lines whose parent is not in the file (what `_assemble` reports as
    `missing_parent`). None on a cycle, which `_walk` cuts where it closes. Without `_walk`'s set of
    the lines seen: a walk with no cycle takes at most one step per line, so a longer one has one."""
    chain: list[Entry] = []
    append = chain.append
    find = ix.by_uuid.get
    parent_of = ix.parent_of
    missing: list[int] = []
    steps = len(ix.entries) + 1
    e: Entry | None = leaf
    while e is not None:
        steps -= 1
        if not steps:
            return None
        append(e)
        p = e.parent
        if p is None or (e.type == "system" and e.subtype == _COMPACT_BOUNDARY):
            break  # a root, or where a chain starts after a compaction (as parent_of)
        up = find(p)
        if up is None:
            missing.append(len(chain) - 1)
            up = parent_of(e)  # bridged, or None
        e = up
    chain.reverse()
    last = len(chain) - 1
    return chain, [last - k for k in reversed(missing)]


def _walk(
    leaf: Entry, ix: EntryIndex, limit: int = -1, known: dict[int, Joined] | None = None
) -> tuple[list[Entry] | None, Joined | None, bool]:
    """The chain from `leaf` up to its root or compaction boundary, root first; whether it ends at a
    root (no cycle cut it short); and with `known`, where it met a traced chain: then it stops there
    and only the lines below are returned, the traced chain's lines up to that place coming first.
    The chain is None when it holds more than `limit` lines (if given: the walk stops there)."""
    chain: list[Entry] = []
    seen: set[int] = set()
    parent_of = ix.parent_of
    e: Entry | None = leaf
    joined: Joined | None = None
    while e is not None:
        i = id(e)
        if known is not None:
            joined = known.get(i)
            if joined is not None:
                break  # a traced chain ends at a root: from here up, this one is the same
        if i in seen:
            break
        if len(chain) == limit:
            return None, None, False
        seen.add(i)
        chain.append(e)
        e = parent_of(e)
    chain.reverse()
    if joined is not None and 0 <= limit < len(chain) + joined[1] + 1:
        return None, None, False
    return chain, joined, e is None or joined is not None


def _chain(leaf: Entry, ix: EntryIndex) -> list[Entry]:
    """The chain from `leaf` up to its root or compaction boundary, root first."""
    chain = _walk(leaf, ix)[0]
    assert chain is not None  # no limit
    return chain


def _assemble(
    chain: list[Entry], ix: EntryIndex, kind: str, label: str, trace: _Trace | None = None,
    joined: Joined | None = None, missing_in_chain: list[int] | None = None,
) -> Conversation:
    """The conversation of `chain` (root first). `joined` (a trace and a place in it): the chain
    goes on from that line of the traced one, whose lines up to it come first. `trace`: filled in
    for a later branch to pick up from (the chain must end at a root). `missing_in_chain`: the places
    in `chain` of its lines whose parent is not in the file, when the walk found them already."""
    messages: list[Message] = []
    order: list[Entry] = []
    emitted: set[Entry] = set()  # entries hash by identity (eq=False): no int per line
    base = 0
    if joined is not None:
        on, at = joined
        messages, order = on.state_at(at)
        emitted = set(order)
        base = at + 1
    marks = starts = None
    if trace is not None:
        marks, starts = trace.marks, trace.starts
        if joined is not None:
            marks.extend(on.marks[:base])
            starts.extend(on.starts[: len(messages)])

    def push(role: str, group: list[Entry]) -> None:
        if len(group) == 1:  # the usual group: one line, without the comprehension and loop
            g = group[0]
            if g in emitted:
                return
            emitted.add(g)
            fresh = [g]  # a new list: `group` may be the index's own
        else:
            fresh = [g for g in group if g not in emitted]
            if not fresh:
                return
            for g in fresh:
                emitted.add(g)
        order.extend(fresh)
        if messages and messages[-1].role == role:
            messages[-1].entries.extend(fresh)
        else:
            if starts is not None:
                starts.append(len(order) - len(fresh))
            messages.append(Message(role, fresh))

    siblings, attached = ix.siblings, ix.attached_results
    last = messages[-1] if messages else None
    for e in chain:
        if e in emitted:
            pass
        elif (e.type != "user" and e.type != "assistant") or e.api_error:  # not a message (Entry.is_message)
            emitted.add(e)
            order.append(e)
        else:
            # The usual line: a message of its own, or the next line of the last one (push, inlined).
            role = e.type
            m = e.message
            mid = m.id if m is not None and role == "assistant" else None
            group = siblings.get((e.sidechain, e.agent_id, mid)) if mid else None
            if group is not None and len(group) > 1 and e in group:  # identity: Entry compares by identity
                push(role, group)
                last = messages[-1]
            else:
                group = None
                emitted.add(e)
                order.append(e)
                if last is not None and last.role == role:
                    last.entries.append(e)
                else:
                    if starts is not None:
                        starts.append(len(order) - 1)
                    last = Message(role, [e])
                    messages.append(last)
            if role == "assistant":
                results: dict[int, Entry] = {}
                for a in group if group is not None else (e,):
                    if a.uuid is not None:
                        for r in attached.get(a.uuid, ()):
                            if r.sidechain == e.sidechain:
                                results[id(r)] = r
                if results:
                    push("user", sorted(results.values(), key=_line_of))
                    last = messages[-1]
        if marks is not None:
            marks.append(len(order))
    if missing_in_chain is None:
        by_uuid = ix.by_uuid
        missing_at = [base + k for k, e in enumerate(chain)
                      if e.parent is not None and e.parent not in by_uuid and not e.is_compact_boundary]
    else:
        missing_at = [base + k for k in missing_in_chain]
    missing = [chain[k - base] for k in missing_at]
    if joined is not None:
        before = [(x, k) for x, k in zip(on.conv.missing_parent, on.missing_at, strict=True) if k < base]  # type: ignore[union-attr]
        missing = [x for x, _ in before] + missing
        missing_at = [k for _, k in before] + missing_at
    leaf = chain[-1] if chain else None
    conv = Conversation(kind, messages, order, leaf, label, missing)
    if trace is not None:
        trace.conv, trace.lines, trace.base, trace.missing_at = conv, chain, base, missing_at
    return conv


def _last_message(entries: Sequence[Entry]) -> Entry | None:
    for e in reversed(entries):
        if e.type in ("user", "assistant"):
            return e
    return None


def _is_iso_utc(ts: str) -> bool:
    """`2026-02-12T14:12:32.522Z`, the one shape Claude Code writes (Date.toISOString): then the
    text order is the time order."""
    return len(ts) == 24 and ts[-1] == "Z" and ts[10] == "T"


def _resume_leaf(entries: Sequence[Entry], ix: EntryIndex) -> Entry | None:
    """The line `claude --resume` continues from: of the main scope's user/assistant leaves (no
    user/assistant line continues from them), the one with the newest timestamp, as Claude Code's
    loader picks it (2.1.88, `findLatestMessage`: strict `>`, so the first of equal timestamps in
    file order). When a leaf has no such timestamp (a file another tool wrote), the last message
    line, which is the same line for the append-only files Claude Code writes."""
    best: Entry | None = None
    newest = ""
    continued = ix.has_message_children
    for e in entries:
        if e.type not in _CHAIN_TYPES or (e.uuid is not None and e.uuid in continued):
            continue
        ts = e.timestamp
        if ts is None or not _is_iso_utc(ts):
            return _last_message(entries)
        if ts > newest:
            best, newest = e, ts
    return best if best is not None else _last_message(entries)


def _roots(entries: Sequence[Entry], ix: EntryIndex) -> dict[int, list[Entry]]:
    """Group sidechain entries by the root they hang from (one subagent run per root)."""
    root_of: dict[int, int] = {}
    groups: dict[int, list[Entry]] = defaultdict(list)
    parent_of = ix.parent_of
    for e in entries:
        known = root_of.get(id(e))
        if known is None:
            # The usual case: the parent is a sidechain line whose root is already known (what
            # the walk below finds in one step), without the walk's bookkeeping.
            up = parent_of(e)
            if up is not None and up.sidechain and up is not e:
                known = root_of.get(id(up))
                if known is not None:
                    root_of[id(e)] = known
        if known is not None:
            groups[known].append(e)
            continue
        path: list[Entry] = []
        on_path: set[int] = set()
        cur: Entry | None = e
        root_id: int | None = None
        while cur is not None:
            if id(cur) in root_of:
                root_id = root_of[id(cur)]
                break
            if id(cur) in on_path:  # a cycle: treat the entry itself as the root
                root_id = id(cur)
                break
            path.append(cur)
            on_path.add(id(cur))
            nxt = ix.parent_of(cur)
            if nxt is None or not nxt.sidechain:
                root_id = id(cur)
                break
            cur = nxt
        assert root_id is not None
        for p in path:
            root_of[id(p)] = root_id
        groups[root_id].append(e)
    return groups


def rebuild(entries: Sequence[Entry], main: bool = True, history: bool = True) -> list[Conversation]:
    """The main conversation, each sidechain, then rebuilt history branches.

    With `main=False` the main chain is not singled out: the entries are a closed stretch of a
    longer file (segments before the one the live conversation is in), so their main-scope
    chains are history, as they are when the whole file is rebuilt. With `history=False` history
    is not rebuilt: the main conversation and the sidechains are the same either way.
    """
    return rebuild_indexed(entries, main, history=history)[0]


def rebuild_indexed(
    entries: Sequence[Entry], main: bool = True, ix: EntryIndex | None = None, history: bool = True
) -> tuple[list[Conversation], EntryIndex]:
    """`rebuild`, and the index it used; `ix` may be given when it already indexes `entries`."""
    if ix is None:
        ix = index_entries(entries)
    if ix.superseded:
        gone = ix.superseded
        entries = [e for e in entries if id(e) not in gone]
    side_entries = list(filter(_SIDECHAIN, entries))  # C loops over every line, not comprehensions
    conversations: list[Conversation] = []

    traces: list[_Trace] = []  # of the chains that end at a root, for history branches to pick up from

    def assemble(leaf: Entry, kind: str, label: str) -> Conversation:
        walked = _walk_plain(leaf, ix)
        if walked is not None:
            chain, missing = walked
            traced = _Trace()
            traces.append(traced)
            return _assemble(chain, ix, kind, label, traced, missing_in_chain=missing)
        cut, _, rooted = _walk(leaf, ix)  # a cycle: cut where it closes
        assert cut is not None  # no limit
        trace = _Trace() if rooted else None
        if trace is not None:
            traces.append(trace)
        return _assemble(cut, ix, kind, label, trace)

    leaf = _resume_leaf(list(filterfalse(_SIDECHAIN, entries)), ix) if main else None
    if leaf is not None:
        conv = assemble(leaf, "main", "main conversation")
        conv.forked = any(e.type == "fork-context-ref" for e in entries)
        conversations.append(conv)

    for group in _roots(side_entries, ix).values():
        side_leaf = _last_message(group)
        if side_leaf is not None:
            label = f"subagent {side_leaf.agent_id}" if side_leaf.agent_id else "sidechain"
            conversations.append(assemble(side_leaf, "sidechain", label))

    if not history:
        return conversations, ix
    covered: set[Entry] = set()  # by identity (Entry hashes so): no int per line
    for c in conversations:
        covered.update(c.order)
    has_message_children, has_other_children, by_uuid = ix.has_message_children, ix.has_other_children, ix.by_uuid
    # The limit counts per segment (the stretch from one main compaction boundary to the next):
    # no chain crosses a boundary, so a file is then judged the same whole or a segment at a time.
    branches = held = 0
    after_boundary = False
    known: dict[int, Joined] | None = None  # where each traced line is: built at the first branch
    for e in reversed(entries):
        if after_boundary:  # the boundary starts the segment after it: reset once past it
            branches = held = 0
        after_boundary = e.type == "system" and e.subtype == "compact_boundary" and not e.sidechain
        if branches >= MAX_HISTORY_BRANCHES or held > MAX_HISTORY_LINES:
            continue
        if e in covered or (e.uuid and (e.uuid in has_message_children or e.uuid in has_other_children)):
            continue
        if e.type not in _CHAIN_TYPES and e.parent is not None and e.subtype != "compact_boundary":
            # The common dead end: a progress line hanging off a message already covered (what
            # the loop below concludes after one step), taken without the loop.
            p = by_uuid.get(e.parent)
            if p is not None and p.type in _CHAIN_TYPES and p in covered:
                covered.add(e)
                continue
        # A branch may end in bookkeeping (progress, system): start from its last message.
        leaf_msg: Entry | None = e
        steps = 0
        while leaf_msg is not None and leaf_msg.type not in ("user", "assistant") and steps < 64:
            covered.add(leaf_msg)
            leaf_msg = ix.parent_of(leaf_msg)
            steps += 1
        if leaf_msg is None or leaf_msg in covered or leaf_msg.type not in ("user", "assistant"):
            continue
        if known is None:
            known = {}
            for t in traces:
                t.index_into(known)
        chain, joined, rooted = _walk(leaf_msg, ix, MAX_HISTORY_LINES - held, known)
        if chain is None:
            held = MAX_HISTORY_LINES + 1  # the segment's history budget is spent: no more branches
            continue
        held += len(chain) + (joined[1] + 1 if joined is not None else 0)  # the whole chain, as sent
        trace = _Trace() if rooted else None
        branch = _assemble(chain, ix, "history", "rewound or compacted history", trace, joined)
        if trace is not None:
            trace.index_into(known)
        covered.update(branch.order)
        conversations.append(branch)
        branches += 1
    return conversations, ix


def is_tool_result_entry(e: Entry) -> bool:
    return e.type == "user" and any(b.kind == TOOL_RESULT for b in e.blocks)


class Locality(msgspec.Struct):
    """What links a stretch of entries could have with lines outside it (see `incremental`)."""

    uuids: list[str]
    unresolved: list[str]  # parentUuid / sourceToolAssistantUUID values naming no entry of the stretch
    siblings: list[tuple[bool, str | None, str]]  # assistant message keys (scope, message.id)
    dangling: bool  # a line's parent is missing and bridging found no earlier line in the stretch


def locality(ix: EntryIndex) -> Locality:
    by_uuid = ix.by_uuid
    unresolved: list[str] = []
    dangling = False
    for e in ix.entries:
        p = e.parent
        if p is not None and p not in by_uuid:
            unresolved.append(p)
            if not dangling and not e.is_compact_boundary and ix.bridge(e) is None:
                dangling = True
        s = e.source_tool_assistant
        if s is not None and s not in by_uuid:
            unresolved.append(s)
    return Locality(list(by_uuid), unresolved, list(ix.siblings), dangling)


def dangling(ix: EntryIndex) -> bool:
    """Some line's parent is missing and bridging finds no earlier line of this stretch for it."""
    by_uuid = ix.by_uuid
    return any(
        e.parent is not None and e.parent not in by_uuid and not e.is_compact_boundary and ix.bridge(e) is None
        for e in ix.entries
    )


def chain_to(entries: Sequence[Entry], uuid: str) -> Conversation | None:
    """The conversation that ends at the line `uuid`, rebuilt as the live chain is: what Claude Code
    hydrates from a parent session for a fork whose pointer says `upToMessageId: uuid`."""
    ix = index_entries(entries)
    leaf = ix.by_uuid.get(uuid)
    if leaf is None:
        return None
    return _assemble(_chain(leaf, ix), ix, "main", "the conversation this session was forked from")


def first_sent(conv: Conversation) -> int:
    """The index in `conv.messages` of the first message the API is sent: Claude Code's loader walks
    up from the leaf and stops at a line whose parent is missing, so it starts at the last such line."""
    if not conv.missing_parent:
        return 0
    broken = {id(e) for e in conv.missing_parent}
    return max((i for i, m in enumerate(conv.messages) if any(id(e) in broken for e in m.entries)), default=0)


def is_splitter(e: Entry) -> bool:
    """A line Claude Code sends as (part of) a user message between two lines of one reply: a user
    prompt or notice, an attachment, a local command's output. Claude Code merges the lines of one
    reply only while none of these was written between them."""
    if e.type == "user":
        return not e.has_tool_result
    return e.type == "attachment" or (e.type == "system" and e.subtype == "local_command")


def reply_splitters(conv: Conversation, start: int) -> list[Entry]:
    """The splitters (`is_splitter`) of `conv` that could split a reply of its messages from `start`
    on, in line order: those written between the first and the last line of a reply of several
    lines (only such a reply can be split). None when there is no such reply, without looking."""
    spread = [m.entries for m in conv.messages[start:] if m.role == "assistant" and len(m.entries) > 1]
    if not spread:
        return []
    lo = min(e.line for entries in spread for e in entries)
    hi = max(e.line for entries in spread for e in entries)
    # Lines outside every such reply's span are passed over by their number alone: a session whose
    # last reply has two lines held 500,000 prompts that could split nothing.
    return sorted((e for e in conv.order if lo < e.line < hi and is_splitter(e)), key=_line_of)


def api_positions(conv: Conversation, only: set[int] | None = None, start: int | None = None,
                  splitters: list[Entry] | None = None) -> dict[int, int]:
    """The API's `messages.N` of each entry (by identity) of the messages the API is sent: counted
    from `first_sent`; a reply whose lines have a splitter written between them reaches the API as
    two assistant messages with the splitters' user message between, so from there on each count is
    two more (the splitters themselves are that message). `only`: of these entries alone (by
    identity), without a map of every line (a fault's place in a long conversation). `start` and
    `splitters`: `first_sent` and `reply_splitters`, when the caller has them already."""
    if start is None:
        start = first_sent(conv)
    if splitters is None:
        splitters = reply_splitters(conv, start)
    msgs = conv.messages
    lines = [e.line for e in splitters]
    out: dict[int, int] = {}
    shift = 0
    for k in range(start, len(msgs)):
        m = msgs[k]
        base = k - start + shift
        if m.role != "assistant" or len(m.entries) < 2 or not splitters:
            for e in m.entries:
                if only is None or id(e) in only:
                    out.setdefault(id(e), base)
            continue
        splits = 0
        prev: Entry | None = None
        for e in sorted(m.entries, key=_line_of):
            if prev is not None:
                lo, hi = bisect_left(lines, prev.line + 1), bisect_left(lines, e.line)
                if lo < hi:  # written between two lines of this reply: the reply is cut there
                    splits += 1
                    for x in splitters[lo:hi]:
                        if only is None or id(x) in only:
                            out.setdefault(id(x), base + 2 * splits - 1)
            if only is None or id(e) in only:
                out.setdefault(id(e), base + 2 * splits)
            prev = e
        shift += 2 * splits
    return out
