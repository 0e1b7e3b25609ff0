"""What the lines of one stretch of a transcript link to, and the one rule that says two stretches
do not link: the proof behind every shortcut (a closed segment, a parallel stretch).

A stretch is summed up by three sets of hashes: the uuids its lines write, the names its lines
give (`parentUuid`, `sourceToolAssistantUUID`) that resolve to nothing inside it, and the keys of
its assistant replies (sidechain, agent, `message.id`). Two stretches A and B do not link when no
uuid is written in both, no name of one is a uuid of the other, and no reply is split across them.
Then a whole read of A and B together rebuilds each one's chains exactly as it does alone.

Hashes, not text: a collision can only make the rule answer "linked", which costs a needless
whole read, never a wrong finding.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from zlib import adler32, crc32

from .transcript import Entry

ReplyKey = tuple[bool, str | None, str]  # (sidechain, agentId, message.id)
Hash = Callable[[str], int]
KeyHash = Callable[[ReplyKey], int]


def stable_hash(text: str) -> int:
    """The same in every process (Python's str hash is salted per process): for saved states.

    Two C checksums of the UTF-8 bytes side by side, 64 bits (signed, as the saved arrays hold them):
    ~2.5x cheaper than a blake2b digest, which was 6-8 % of a first check. Not a cryptographic hash,
    and it need not be: a collision, even a crafted one, only makes the rule answer "linked"."""
    data = text.encode("utf-8", "surrogatepass")
    return (crc32(data) << 32 | adler32(data)) - _HALF


_HALF = 1 << 63


def key_text(key: ReplyKey) -> str:
    sidechain, agent, message_id = key
    return f"{int(sidechain)}\x00{'' if agent is None else agent + chr(1)}\x00{message_id}"


def stable_key_hash(key: ReplyKey) -> int:
    return stable_hash(key_text(key))


def entry_links(e: Entry, h: Hash, hk: KeyHash) -> tuple[list[int], list[int], list[int]]:
    """One line's own (uuids, names, reply keys), hashed: a stretch of one line.

    Its names are given whether or not they resolve: one that resolves to its own uuid is in the
    uuids too, so the rule answers the same."""
    return lines_links((e,), h, hk)


def lines_links(entries: Sequence[Entry], h: Hash, hk: KeyHash) -> tuple[list[int], list[int], list[int]]:
    """The (uuids, names, reply keys) of a run of lines, joined: each line's own, as `entry_links`."""
    uuids = [h(e.uuid) for e in entries if e.uuid is not None]
    names = [h(e.parent) for e in entries if e.parent is not None]
    names += [h(e.source_tool_assistant) for e in entries if e.source_tool_assistant is not None]
    keys = [hk((e.sidechain, e.agent_id, e.message_id)) for e in entries
            if e.type == "assistant" and e.message_id and not e.api_error]
    return uuids, names, keys


class Links:
    """The hashed links of a stretch (or of everything closed so far).

    Sets in memory. A state loaded from disk keeps the saved sorted arrays instead and searches
    them (a few look-ups per appended line), turning them into sets only when more is added.
    """

    __slots__ = ("_arrays", "siblings", "unresolved", "uuids")

    def __init__(
        self, uuids: Iterable[int] = (), unresolved: Iterable[int] = (), siblings: Iterable[int] = ()
    ) -> None:
        self.uuids: set[int] = set(uuids)
        self.unresolved: set[int] = set(unresolved)  # names given here that named nothing here
        self.siblings: set[int] = set(siblings)  # reply keys
        self._arrays: tuple[array[int], array[int], array[int]] | None = None

    @classmethod
    def from_sorted(cls, uuids: array[int], unresolved: array[int], siblings: array[int]) -> Links:
        links = cls()
        links._arrays = (uuids, unresolved, siblings)
        return links

    def __bool__(self) -> bool:
        if self._arrays is not None:
            return any(len(a) for a in self._arrays)
        return bool(self.uuids or self.unresolved or self.siblings)

    @staticmethod
    def _in(a: array[int], x: int) -> bool:
        i = bisect_left(a, x)
        return i < len(a) and a[i] == x

    def has_uuid(self, x: int) -> bool:
        return self._in(self._arrays[0], x) if self._arrays is not None else x in self.uuids

    def has_unresolved(self, x: int) -> bool:
        return self._in(self._arrays[1], x) if self._arrays is not None else x in self.unresolved

    def has_sibling(self, x: int) -> bool:
        return self._in(self._arrays[2], x) if self._arrays is not None else x in self.siblings

    def meets(self, uuids: Iterable[int], names: Iterable[int], siblings: Iterable[int]) -> bool:
        """THE rule: does a stretch with these uuids, unresolved names and reply keys link to this one?

        Linked when a uuid is written on both sides or named by a line of this side that found
        nothing here, when a name of the other side is a uuid here, or when a reply is split across.
        """
        uuids = _reusable(uuids)
        if self._arrays is None:
            return not (
                self.uuids.isdisjoint(uuids)
                and self.unresolved.isdisjoint(uuids)
                and self.uuids.isdisjoint(names)
                and self.siblings.isdisjoint(siblings)
            )
        return (
            any(self.has_uuid(x) or self.has_unresolved(x) for x in uuids)
            or any(self.has_uuid(x) for x in names)
            or any(self.has_sibling(x) for x in siblings)
        )

    def meets_entry(self, e: Entry, h: Hash, hk: KeyHash) -> bool:
        """`meets` for one line: does it name, or is it named by, something here?"""
        return self.meets_entries((e,), h, hk)

    def meets_entries(self, entries: Sequence[Entry], h: Hash, hk: KeyHash) -> bool:
        """Does any of these lines meet this stretch? (`meets` is a disjointness test, so any line
        meeting it is the lines' joined links meeting it: one test, not one per line.)"""
        return self.meets(*lines_links(entries, h, hk))

    def add(self, other: Links) -> None:
        """Take in another stretch's links (this one turns into sets first)."""
        self.as_sets()
        self.uuids |= other.uuids
        self.unresolved |= other.unresolved
        self.siblings |= other.siblings

    def as_sets(self) -> Links:
        if self._arrays is not None:
            self.uuids, self.unresolved, self.siblings = (set(a) for a in self._arrays)
            self._arrays = None
        return self

    def sorted_arrays(self) -> tuple[array[int], array[int], array[int]]:
        if self._arrays is not None:
            return self._arrays
        return array("q", sorted(self.uuids)), array("q", sorted(self.unresolved)), array("q", sorted(self.siblings))


def _reusable(xs: Iterable[int]) -> Iterable[int]:
    """`xs` as something that can be iterated twice (an iterator is read once)."""
    return xs if isinstance(xs, (set, frozenset, list, tuple, array)) else list(xs)
