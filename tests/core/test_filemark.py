"""The one "was the file rewritten?" test (filemark), on real files: appends pass, everything else
that changes what was read counts, for transcripts (whole) and logs (edges only)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from rewind_lsp.filemark import EDGE, FileMark, rewritten, take_mark

BODY = b"".join(b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * 40) for i in range(40))  # ~2.4 KB, > 2 * EDGE


def _marked(path: Path, data: bytes) -> tuple[FileMark, int]:
    path.write_bytes(data)
    with path.open("rb") as f:
        return take_mark(f, os.fstat(f.fileno()), len(data)), len(data)


def _rewritten(path: Path, mark: FileMark, offset: int, whole: bool = True) -> bool:
    with path.open("rb") as f:
        return rewritten(f, os.fstat(f.fileno()), mark, offset, whole)


def test_a_mark_not_taken_compares_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(BODY)
    assert not FileMark().taken
    assert not _rewritten(path, FileMark(), 0)


def test_appends_are_not_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    mark, offset = _marked(path, BODY)
    assert mark.taken and len(mark.head) == len(mark.tail) == 16  # digests, not the file's bytes
    assert BODY[:EDGE] not in (mark.head, mark.tail)
    with path.open("ab") as f:
        f.write(b'{"n":"appended"}\n')
    assert not _rewritten(path, mark, offset)
    assert not _rewritten(path, mark, offset, whole=False)


def test_a_short_first_read_then_appends_is_not_a_rewrite(tmp_path: Path) -> None:
    """The head digest covers only what was read: growing past EDGE changes nothing of it."""
    path = tmp_path / "t.jsonl"
    mark, offset = _marked(path, b'{"n":1}\n')
    with path.open("ab") as f:
        f.write(BODY)
    assert not _rewritten(path, mark, offset)


def _truncate(path: Path) -> None:
    path.write_bytes(BODY[: len(BODY) // 2])


def _rotate(path: Path) -> None:
    other = path.with_name("other")
    other.write_bytes(BODY + b"\n")
    os.replace(other, path)


def _before_offset(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(BODY) - 10] ^= 1
    path.write_bytes(bytes(data) + b"more\n")


def _head(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[5] ^= 1
    path.write_bytes(bytes(data) + b"more\n")  # grown, so the size test alone would not see it


def _same_size(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(BODY) // 2] ^= 1  # the middle: neither edge
    with path.open("r+b") as f:
        f.write(bytes(data))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


# change, seen by the whole test, seen by the log test
CHANGES: list[tuple[str, Callable[[Path], None], bool, bool]] = [
    ("truncated", _truncate, True, True),
    ("rotated", _rotate, True, True),
    ("bytes before the offset", _before_offset, True, True),
    ("first bytes", _head, True, False),
    ("written without growing", _same_size, True, False),
]


@pytest.mark.parametrize(("name", "change", "whole", "log"), CHANGES, ids=[c[0] for c in CHANGES])
def test_what_counts_as_a_rewrite(
    tmp_path: Path, name: str, change: Callable[[Path], None], whole: bool, log: bool
) -> None:
    path = tmp_path / "t.jsonl"
    mark, offset = _marked(path, BODY)
    change(path)
    assert _rewritten(path, mark, offset) is whole, name
    assert _rewritten(path, mark, offset, whole=False) is log, name


def test_unchanged_is_the_same_stat(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    mark, _ = _marked(path, BODY)
    assert mark.unchanged(path.stat())
    with path.open("ab") as f:
        f.write(b"\n")
    assert not mark.unchanged(path.stat())
