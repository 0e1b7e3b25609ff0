"""The one "no link across stretches" rule (links.Links.meets), each way two stretches can link,
for the in-memory sets and for the sorted arrays a saved state loads."""

from __future__ import annotations

from array import array

import pytest

from rewind_lsp.links import Links, entry_links, stable_hash, stable_key_hash
from rewind_lsp.transcript import Entry, parse_line

A = Links(uuids={1, 2}, unresolved={9}, siblings={100})


def _loaded(links: Links) -> Links:
    return Links.from_sorted(*links.sorted_arrays())


# The other stretch's (uuids, unresolved names, reply keys), and whether it links to A.
CASES = [
    ("nothing shared", ({3}, {4}, {101}), False),
    ("a uuid written on both sides", ({2}, set(), set()), True),
    ("a name of A that found nothing there is a uuid here", ({9}, set(), set()), True),
    ("a name here is a uuid of A", ({3}, {1}, set()), True),
    ("one reply split across", ({3}, set(), {100}), True),
    ("both name the same missing line", ({3}, {9}, set()), False),
]


@pytest.mark.parametrize(("name", "other", "linked"), CASES, ids=[c[0] for c in CASES])
def test_meets(name: str, other: tuple[set[int], set[int], set[int]], linked: bool) -> None:
    assert A.meets(*other) is linked, name
    assert _loaded(A).meets(*(array("q", sorted(x)) for x in other)) is linked, name
    assert A.meets(*(iter(x) for x in other)) is linked, name  # iterators are read once


def test_add_and_truth() -> None:
    seen = _loaded(Links())
    assert not seen
    seen.add(A)
    assert seen and seen.meets({2}, (), ())
    assert seen.sorted_arrays() == A.sorted_arrays()


def _entry(line: bytes) -> Entry:
    e = parse_line(1, 0, line)
    assert isinstance(e, Entry)
    return e


def test_an_entry_is_a_stretch_of_one_line() -> None:
    h, hk = stable_hash, stable_key_hash
    reply = _entry(b'{"type":"assistant","uuid":"a1","parentUuid":"u1","message":{"id":"msg_1"}}')
    uuids, names, keys = entry_links(reply, h, hk)
    assert (uuids, names, keys) == ([h("a1")], [h("u1")], [hk((False, None, "msg_1"))])
    closed = Links({h("u1")})
    assert closed.meets_entry(reply, h, hk)
    assert not Links({h("zz")}, {h("u1")}).meets_entry(reply, h, hk)  # both name u1: no link
    assert Links(siblings={hk((False, None, "msg_1"))}).meets_entry(reply, h, hk)
    error = _entry(b'{"type":"assistant","uuid":"e1","isApiErrorMessage":true,"message":{"id":"msg_1"}}')
    assert entry_links(error, h, hk)[2] == []  # a recorded API error is not part of a reply
