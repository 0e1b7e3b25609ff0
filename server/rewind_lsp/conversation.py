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

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from .transcript import TOOL_RESULT, Entry

# Entry types a conversation is made of (as opposed to bookkeeping lines such as progress).
_CHAIN_TYPES = frozenset({"user", "assistant"})

# How many off-chain branches to rebuild at most; beyond this, history is not examined.
MAX_HISTORY_BRANCHES = 256


@dataclass(slots=True)
class Message:
    """One API message: consecutive entries of one role, merged as the API merges them."""

    role: str  # "user" | "assistant"
    entries: list[Entry]


@dataclass(slots=True)
class Conversation:
    kind: str  # "main" | "sidechain" | "history"
    messages: list[Message]
    # Every entry of the chain in API order, non-message entries (progress, system) in place.
    order: list[Entry]
    leaf: Entry | None
    label: str = ""

    @property
    def entry_ids(self) -> set[int]:
        return {id(e) for e in self.order}


@dataclass(slots=True)
class _Index:
    by_uuid: dict[str, Entry] = field(default_factory=dict)
    siblings: dict[tuple[bool, str | None, str], list[Entry]] = field(default_factory=lambda: defaultdict(list))
    attached_results: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))
    has_children: set[str] = field(default_factory=set)
    has_message_children: set[str] = field(default_factory=set)  # a user/assistant line continues from it
    # Entries of each scope (main, or one agent's sidechain) in file order, for bridging.
    scopes: dict[tuple[bool, str | None], list[Entry]] = field(default_factory=lambda: defaultdict(list))
    position: dict[int, int] = field(default_factory=dict)

    def parent_of(self, e: Entry) -> Entry | None:
        if e.parent is None or e.is_compact_boundary:
            return None
        found = self.by_uuid.get(e.parent)
        if found is not None:
            return found
        # The parent is not in the file (a line lost or cut out). Stopping here would hide the
        # rest of the conversation, so bridge to the nearest earlier message line of the same scope
        # that no other message continues from: the end of the chain as it stood when this line
        # was written. Bookkeeping lines (progress, system) are neither targets nor continuations:
        # real files hold hundreds of dead-end hook progress lines hanging off tool_use lines.
        if e.type == "assistant" and e.message_id and not e.api_error:
            # A later block of a reply whose parent line is lost (2.1.39 streaming hangs it off a
            # tool_result line): its earlier blocks are the same message, so continue from them.
            earlier = [s for s in self.siblings.get((e.sidechain, e.agent_id, e.message_id), ()) if s.line < e.line]
            if earlier:
                return earlier[-1]
        scope = self.scopes[(e.sidechain, e.agent_id)]
        i = self.position[id(e)] - 1
        stop = max(i - 10_000, -1)
        while i > stop:
            cand = scope[i]
            if cand.uuid is not None and cand.type in _CHAIN_TYPES and cand.uuid not in self.has_message_children:
                return cand
            i -= 1
        return None


def _index(entries: Sequence[Entry]) -> _Index:
    ix = _Index()
    for e in entries:
        scope = ix.scopes[(e.sidechain, e.agent_id)]
        ix.position[id(e)] = len(scope)
        scope.append(e)
        if e.uuid is not None:
            ix.by_uuid.setdefault(e.uuid, e)
        if e.parent is not None:
            ix.has_children.add(e.parent)
            if e.type in _CHAIN_TYPES:
                ix.has_message_children.add(e.parent)
        if e.type == "assistant" and e.message_id and not e.api_error:
            ix.siblings[(e.sidechain, e.agent_id, e.message_id)].append(e)
        if e.type == "user" and e.has_tool_result:
            anchors = {a for a in (e.parent, e.source_tool_assistant) if a is not None}
            for a in anchors:
                ix.attached_results[a].append(e)
    return ix


def _walk_up(leaf: Entry, ix: _Index) -> list[Entry]:
    """The chain from `leaf` up to its root or compaction boundary, returned root first."""
    chain: list[Entry] = []
    seen: set[int] = set()
    e: Entry | None = leaf
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = ix.parent_of(e)
    chain.reverse()
    return chain


def _assemble(chain: list[Entry], ix: _Index, kind: str, label: str) -> Conversation:
    messages: list[Message] = []
    order: list[Entry] = []
    emitted: set[int] = set()

    def push(role: str, group: list[Entry]) -> None:
        fresh = [g for g in group if id(g) not in emitted]
        if not fresh:
            return
        for g in fresh:
            emitted.add(id(g))
        order.extend(fresh)
        if messages and messages[-1].role == role:
            messages[-1].entries.extend(fresh)
        else:
            messages.append(Message(role, fresh))

    for e in chain:
        if id(e) in emitted:
            continue
        if not e.is_message:
            emitted.add(id(e))
            order.append(e)
            continue
        if e.type == "assistant":
            group = ix.siblings.get((e.sidechain, e.agent_id, e.message_id), [e]) if e.message_id else [e]
            if not any(g is e for g in group):
                group = [e]
            push("assistant", group)
            results: dict[int, Entry] = {}
            for a in group:
                if a.uuid is not None:
                    for r in ix.attached_results.get(a.uuid, ()):
                        if r.sidechain == e.sidechain:
                            results[id(r)] = r
            push("user", sorted(results.values(), key=lambda r: r.line))
        else:
            push("user", [e])
    return Conversation(kind, messages, order, chain[-1] if chain else None, label)


def _last_message(entries: Sequence[Entry]) -> Entry | None:
    for e in reversed(entries):
        if e.type in ("user", "assistant"):
            return e
    return None


def _roots(entries: Sequence[Entry], ix: _Index) -> dict[int, list[Entry]]:
    """Group sidechain entries by the root they hang from (one subagent run per root)."""
    root_of: dict[int, int] = {}
    groups: dict[int, list[Entry]] = defaultdict(list)
    for e in entries:
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


def rebuild(entries: Sequence[Entry]) -> list[Conversation]:
    """The main conversation, each sidechain, then rebuilt history branches."""
    ix = _index(entries)
    main_entries = [e for e in entries if not e.sidechain]
    side_entries = [e for e in entries if e.sidechain]
    conversations: list[Conversation] = []

    leaf = _last_message(main_entries)
    if leaf is not None:
        conversations.append(_assemble(_walk_up(leaf, ix), ix, "main", "main conversation"))

    for group in _roots(side_entries, ix).values():
        side_leaf = _last_message(group)
        if side_leaf is not None:
            label = f"subagent {side_leaf.agent_id}" if side_leaf.agent_id else "sidechain"
            conversations.append(_assemble(_walk_up(side_leaf, ix), ix, "sidechain", label))

    covered: set[int] = set()
    for c in conversations:
        covered |= c.entry_ids
    branches = 0
    for e in reversed(entries):
        if branches >= MAX_HISTORY_BRANCHES:
            break
        if id(e) in covered or (e.uuid and e.uuid in ix.has_children):
            continue
        # A branch may end in bookkeeping (progress, system): start from its last message.
        leaf_msg: Entry | None = e
        steps = 0
        while leaf_msg is not None and leaf_msg.type not in ("user", "assistant") and steps < 64:
            covered.add(id(leaf_msg))
            leaf_msg = ix.parent_of(leaf_msg)
            steps += 1
        if leaf_msg is None or id(leaf_msg) in covered or leaf_msg.type not in ("user", "assistant"):
            continue
        history = _assemble(_walk_up(leaf_msg, ix), ix, "history", "rewound or compacted history")
        covered |= history.entry_ids
        conversations.append(history)
        branches += 1
    return conversations


def is_tool_result_entry(e: Entry) -> bool:
    return e.type == "user" and any(b.kind == TOOL_RESULT for b in e.blocks)
