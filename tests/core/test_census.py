"""A repair's copy is counted as it is read back, and must hold what the plan keeps.

`census.Counter` counts lines as the reader gives them; `planned_census` says what a plan's copy
must hold; `rewind` refuses a copy whose census differs, with the difference in words. The
refusals are driven by a writer made faulty on purpose (a line lost, two lines fused, two lines
swapped, no final newline): the copy's own check finds no error in any of them.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from core_support import BROKEN, SID, Builder, broken, sha, text, tr, tu

from rewind_lsp import placement
from rewind_lsp.census import Census, Counter, planned_census
from rewind_lsp.incremental import check_counted
from rewind_lsp.repair_plan import RewindError
from rewind_lsp.rewind import rewind
from rewind_lsp.transcript import read_transcript


def census_of(path: Path) -> Census:
    _found, census = check_counted(str(path))
    assert census is not None
    return census


def test_the_counts_of_each_kind_of_line(b: Builder, tmp_path: Path) -> None:
    b.user("a prompt")
    a = b.assistant(text("thinking aloud"), tu("toolu_1"), tu("toolu_2"))
    b.user([tr("toolu_1"), tr("toolu_2")], parent=a["uuid"])
    b.assistant({"type": "server_tool_use", "id": "srvtoolu_1", "name": "advisor", "input": {}},
                {"type": "advisor_tool_result", "tool_use_id": "srvtoolu_1", "content": {}})
    b.user([text("a typed note"), {"type": "image", "source": {}}])
    b.assistant(text("API Error: 400"), isApiErrorMessage=True)
    b.progress()
    b.raw("{not json")
    b.compact()
    census = census_of(b.write(tmp_path / "t.jsonl"))
    assert (census.entries, census.malformed, census.prompts, census.replies, census.tool_uses,
            census.tool_results, census.unterminated) == (9, 1, 3, 2, 3, 3, False)


def test_the_uuids_are_counted_in_order(b: Builder, tmp_path: Path) -> None:
    b.user("one")
    b.assistant(text("two"))
    b.user("three")
    path = b.write(tmp_path / "t.jsonl")
    lines = path.read_text().splitlines()
    swapped = tmp_path / "swapped.jsonl"
    swapped.write_text("\n".join([lines[0], lines[2], lines[1]]) + "\n")
    same, other = census_of(path), census_of(swapped)
    assert (same.entries, same.prompts, same.replies) == (other.entries, other.prompts, other.replies)
    assert other.differences(same) == ["other lines, or the same lines in another order"]
    assert same.differences(census_of(path)) == []


def test_a_file_without_a_final_newline_is_unterminated(b: Builder, tmp_path: Path) -> None:
    b.user("one")
    b.assistant(text("two"))
    ended, open_ = b.write(tmp_path / "a.jsonl"), b.write(tmp_path / "b.jsonl", trailing_newline=False)
    assert census_of(open_).differences(census_of(ended)) == ["a last line without a newline"]
    assert census_of(ended).unterminated is False


def test_the_differences_in_words() -> None:
    want = Census(entries=1001, malformed=0, prompts=500, replies=501, tool_uses=3, tool_results=3, uuids=b"a")
    got = Census(entries=1000, malformed=1, prompts=499, replies=501, tool_uses=3, tool_results=2, uuids=b"b",
                 unterminated=True)
    assert got.differences(want) == [
        "1,000 lines instead of 1,001", "1 malformed line instead of 0", "499 user prompts instead of 500",
        "2 tool results instead of 3", "a last line without a newline",
    ]
    assert Census(entries=1, tool_uses=2).differences(Census(entries=2, tool_uses=1)) == [
        "1 line instead of 2", "2 tool calls instead of 1",
    ]


def test_counted_in_batches_as_the_reader_gives_them(tmp_path: Path) -> None:
    """A file of many chunks, read by the incremental reader, counts as its entries counted at once."""
    b = Builder()
    for k in range(3000):
        b.user(f"prompt {k} " + "x" * 400)
        b.assistant(tu(f"toolu_{k}"))
        b.user([tr(f"toolu_{k}", "y" * 300)])
    path = b.write(tmp_path / "t.jsonl")
    assert path.stat().st_size > 3 << 20
    at_once = Counter()
    t = read_transcript(str(path))
    at_once.add(t.entries)
    assert census_of(path) == at_once.census()
    assert census_of(path).prompts == 3000


def test_the_plan_census_counts_drops_replacements_and_inserts(b: Builder, tmp_path: Path) -> None:
    """Each kind of change the plan makes, and the copy written by hand that makes it."""
    b.user("one")
    a = b.assistant(tu("toolu_1"))
    b.raw("{not json")
    b.user("two")
    b.assistant(text("reply"))
    b.user("three")
    source = b.write(tmp_path / "source.jsonl")
    t = read_transcript(str(source))
    lines = source.read_text().splitlines()
    result = {"type": "user", "uuid": "synthetic", "parentUuid": a["uuid"],
              "message": {"role": "user", "content": [tr("toolu_1", "no result")]}}
    replaced = {**json.loads(lines[4]), "message": {"role": "assistant", "content": [tu("toolu_9")]}}
    copy = tmp_path / "copy.jsonl"
    copy.write_text("\n".join([lines[0], lines[1], json.dumps(result), lines[2], json.dumps(replaced)]) + "\n")
    planned = planned_census(t.entries, t.bad_lines, drop={4, 6}, replace={5: replaced}, insert_after={2: [result]})
    assert census_of(copy) == planned
    assert (planned.entries, planned.malformed, planned.prompts, planned.tool_uses,
            planned.tool_results) == (4, 1, 1, 2, 1)


def test_a_malformed_last_line_without_newline_is_not_planned(b: Builder, tmp_path: Path) -> None:
    b.user("one")
    b.raw("not json at all")
    source = b.write(tmp_path / "source.jsonl", trailing_newline=False)
    t = read_transcript(str(source))
    assert planned_census(t.entries, t.bad_lines, set(), {}, {}, left_out=2).malformed == 0
    assert planned_census(t.entries, t.bad_lines, set(), {}, {}).malformed == 1


# --- rewind refuses a copy that does not hold what it planned ---------------------------------------


def faulty_writer(monkeypatch: pytest.MonkeyPatch, scratch: Path, damage: Callable[[list[bytes]], list[bytes]]) -> None:
    """`placement.write_copy` writes what the real one would (into `scratch`), with `damage` done to
    its lines, and tells the copy's check how far it wrote, as the real one does."""
    real = placement.write_copy

    def write_copy(src_fd: int, tmp_fd: int, plan: placement.Plan, session_id: str | None,
                   like: os.stat_result, written: Callable[[int], None] | None = None) -> list[str]:
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        left_out = real(src_fd, fd, plan, session_id, like)  # closes fd
        lines = scratch.read_bytes().split(b"\n")
        assert lines[-1] == b""
        damaged = b"\n".join(damage(lines[:-1]))
        with os.fdopen(tmp_fd, "wb") as f:
            f.write(damaged)
            f.flush()
            if written is not None:
                written(len(damaged))
        return left_out

    monkeypatch.setattr(placement, "write_copy", write_copy)


def ended(lines: list[bytes]) -> list[bytes]:
    return [*lines, b""]


# What the writer does wrong, and what rewind then says, from the census of the copy the real
# writer makes. Line 4 of `broken()` is its first prompt; a copy ends with a prompt and its reply.
DAMAGE: dict[str, tuple[Callable[[list[bytes]], list[bytes]], Callable[[Census], list[str]]]] = {
    "a line lost": (lambda ls: ended(ls[:3] + ls[4:]), lambda c: [
        f"{c.entries - 1} lines instead of {c.entries}", f"{c.prompts - 1} user prompts instead of {c.prompts}"]),
    "two lines fused": (lambda ls: ended([*ls[:-2], ls[-2] + ls[-1]]), lambda c: [
        f"{c.entries - 2} lines instead of {c.entries}", "1 malformed line instead of 0",
        f"{c.prompts - 1} user prompts instead of {c.prompts}",
        f"{c.replies - 1} assistant replies instead of {c.replies}"]),
    "two lines swapped": (lambda ls: ended([ls[0], ls[2], ls[1], *ls[3:]]),
                          lambda c: ["other lines, or the same lines in another order"]),
    "no final newline": (lambda ls: ls, lambda c: ["a last line without a newline"]),
}
REFUSED = "the repaired copy does not hold what the repair keeps ({}); nothing was written. " \
          "Please report this with `rewind-lsp doctor`."


@pytest.mark.parametrize("mode", ["truncate", "patch"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("helpers", [True, False], ids=["forked helpers", "in process"])
def test_rewind_refuses_a_copy_that_lost_or_moved_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        mode: str, damage: str, helpers: bool) -> None:
    folder = tmp_path / "project"
    src = broken("orphan-tool-use").write(folder / f"{SID}.jsonl")
    honest = rewind(src, mode=mode)  # what the real writer gives
    census = census_of(honest.path)
    os.unlink(honest.path)
    before, names = sha(src), sorted(p.name for p in folder.iterdir())
    fault, said = DAMAGE[damage]
    faulty_writer(monkeypatch, tmp_path / "scratch", fault)
    stop = threading.Event()
    busy = None if helpers else threading.Thread(target=stop.wait)  # a thread running: no fork
    if busy is not None:
        busy.start()
    try:
        with pytest.raises(RewindError) as refused:
            rewind(src, mode=mode)
    finally:
        stop.set()
        if busy is not None:
            busy.join()
    assert str(refused.value) == REFUSED.format("; ".join(said(census)))
    assert sha(src) == before
    assert sorted(p.name for p in folder.iterdir()) == names  # no copy, no temporary file


@pytest.mark.parametrize("name", BROKEN)
@pytest.mark.parametrize("mode", ["truncate", "patch"])
def test_an_honest_copy_holds_what_was_planned(tmp_path: Path, name: str, mode: str) -> None:
    """Each broken shape in both modes: the copy rewind writes is counted as planned (rewind
    would refuse it otherwise), and a census of the placed copy says the same."""
    src = broken(name).write(tmp_path / f"{SID}.jsonl")
    try:
        result = rewind(src, mode=mode)
    except RewindError as exc:
        assert "does not hold what the repair keeps" not in str(exc)
        return
    census = census_of(result.path)
    assert census.unterminated is False
    assert census.entries == len(result.path.read_text().splitlines())


# --- a Codex rollout's copy is counted too, by its own reader -----------------------------------


def test_the_census_knows_codex_s_call_and_output_kinds() -> None:
    from rewind_lsp.census import RESPONSES_CALLS, RESPONSES_OUTPUTS
    from rewind_lsp.codex import OUTPUT_KINDS, OUTPUT_OF

    assert frozenset(OUTPUT_OF) == RESPONSES_CALLS and OUTPUT_KINDS == RESPONSES_OUTPUTS


@pytest.mark.parametrize("bare", [False, True], ids=["wrapped", "bare"])
def test_rewind_refuses_a_rollout_copy_that_lost_its_added_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  bare: bool) -> None:
    """Patch adds an `aborted` output after the call Codex never answered; a writer that loses that
    line leaves a copy whose check finds no error (the last call is pending again), but whose count
    is one output short. Rewind refuses it and says so; the honest copy counts as planned."""
    from codex_support import unanswered_second_turn

    r = unanswered_second_turn(bare)  # the last call never answered
    folder = tmp_path / "sessions"
    folder.mkdir()
    src = r.write(folder)
    honest = rewind(src, mode="patch")
    census = census_of(honest.path)
    assert census.tool_uses == 2 and census.tool_results == 2  # the calls, their output and the one added
    os.unlink(honest.path)
    before, names = sha(src), sorted(p.name for p in folder.iterdir())
    faulty_writer(monkeypatch, tmp_path / "scratch", lambda ls: ended([x for x in ls if b'"aborted"' not in x]))
    with pytest.raises(RewindError) as refused:
        rewind(src, mode="patch")
    assert str(refused.value) == REFUSED.format(
        f"{census.entries - 1} lines instead of {census.entries}; 1 tool result instead of 2")
    assert sha(src) == before
    assert sorted(p.name for p in folder.iterdir()) == names
