"""The repair plan for a Codex rollout, in the same `Plan` (lines dropped, replaced, inserted) that
`placement` writes crash-safely for a Claude Code transcript.

- patch: each call without an output gets one right after it, `aborted`, as Codex's own history
  normalizer (`ensure_call_outputs_present`) words it; an output whose call is gone is left out (its
  `remove_orphan_outputs`); a second call with a used `call_id` is renamed, with the output that
  answers it.
- truncate: the session is cut before the user message that started the first broken turn.

Both write a new session: the `session_meta` line gets the new id, the file is named
`rollout-<local time>-<id>.jsonl` beside the original, which is what `codex resume <id>` looks for.
"""

from __future__ import annotations

import bisect
import os
import secrets
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .codex import ABORTED_OUTPUT, OUTPUT_KINDS, OUTPUT_OF, is_injected_context, message_text, session_meta_line
from .conversation import Conversation
from .findings import Severity
from .repair_plan import Plan, RewindError, SourceLines
from .transcript import Entry
from .validate import validate
from .verdict import TranscriptCheck

_ROLLOUT_NAME = "rollout-{stamp}-{id}.jsonl"


def new_session_id() -> str:
    """A UUID version 7 (time-ordered), the kind Codex gives its own sessions."""
    ms = time.time_ns() // 1_000_000
    rand = secrets.randbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def rollout_name(session_id: str) -> str:
    return _ROLLOUT_NAME.format(stamp=time.strftime("%Y-%m-%dT%H-%M-%S"), id=session_id)


def session_id_of_rollout(path: Path) -> str | None:
    """The session id a rollout's file name ends with (the last five dash-separated parts)."""
    if not (path.name.startswith("rollout-") and path.suffix == ".jsonl"):
        return None
    tail = "-".join(path.stem.split("-")[-5:])
    try:
        return str(uuid.UUID(tail)) if str(uuid.UUID(tail)) == tail else None
    except ValueError:
        return None


def choose_rollout_target(source: Path, out: str | Path | None, in_place: bool) -> tuple[Path, str | None]:
    """Where the repaired rollout goes and its new session id (None: in place, ids kept)."""
    if in_place:
        return source, None
    sid = new_session_id()
    if out is None:
        return source.with_name(rollout_name(sid)), sid
    dest = Path(out)
    if dest.is_dir():
        return dest / rollout_name(sid), sid
    if dest.exists() or dest.is_symlink():
        raise RewindError(f"{dest}: already exists; refusing to overwrite it")
    named = session_id_of_rollout(dest)
    if named is None:
        raise RewindError(
            f"--out {dest}: Codex finds a session by the id its file name ends with, so the name must be "
            f"rollout-<time>-<session id>.jsonl (for example {rollout_name(sid)}), or give a folder to write a new "
            "session file in; nothing was written"
        )
    if not dest.parent.is_dir():
        raise RewindError(f"--out {dest}: no such folder {dest.parent}; nothing was written")
    return dest, named


def cwd_of(check: TranscriptCheck, lines: SourceLines) -> str | None:
    meta = session_meta_line(check.transcript.entries)
    if meta is None:
        return None
    d = lines.get(meta)
    payload = d.get("payload") if isinstance(d.get("payload"), dict) else d
    cwd = payload.get("cwd") if isinstance(payload, dict) else None
    return cwd if isinstance(cwd, str) else None


def plan_rollout(check: TranscriptCheck, lines: SourceLines, mode: str, session_id: str | None,
                 to: str | None = None) -> Plan:
    main = check.main
    if main is None:
        raise RewindError("no conversation in this rollout")
    faults = validate(main)
    if to is None and not any(f.severity <= Severity.WARNING and f.rule != "malformed-line" for f in check.findings):
        raise RewindError("the session already pairs; nothing to repair")
    plan = Plan()
    if session_id is not None:
        _set_session_id(check, lines, plan, session_id)
    # Prompts of the whole file: a cut may reach back before a compaction (an output whose call the
    # compaction dropped), and then the copy is the uncompacted session up to there.
    prompts = rollout_prompts(check, lambda e: message_text(lines.get(e)))
    if mode == "truncate":
        cut_at = _point(prompts, to) if to is not None else _first_broken_turn(faults, prompts)
        if to is not None:
            earlier = sorted(f.entry.line for f in faults if f.entry.line < cut_at.line)
            if earlier:
                raise RewindError(f"--to {to}: the conversation already breaks before it, at line {earlier[0]}; "
                                  f"choose a prompt before line {earlier[0]}")
        items = [e for e in check.transcript.entries if e.is_message]
        keep = sum(1 for e in items if e.line < cut_at.line)
        for e in check.transcript.entries:
            if e.line >= cut_at.line:
                plan.drop.add(e.line)
        plan.kept_messages, plan.total_messages = keep, len(items)
        plan.last_prompt = next((p for p in reversed(prompts) if p.line < cut_at.line), None)
        plan.fixed.append(f"kept {keep} of {len(items)} items; cut before line {cut_at.line}")
        return plan
    renamed: dict[int, str] = {}  # line of an output -> the id it answers in the copy
    for f in faults:
        e, tid = f.entry, f.tool_use_id or ""
        kind = e.blocks[0].kind
        if f.rule == "codex-orphan-call":
            _answer_aborted(lines, plan, e, kind, tid)
            plan.fixed.append(f"line {e.line}: added the missing output of {kind} {tid} ({ABORTED_OUTPUT!r})")
        elif f.rule == "codex-orphan-output":
            plan.drop.add(e.line)
            plan.left_out.append(f"line {e.line}: left out {kind} {tid or '(no id)'}, which answers no call "
                                 "(it stays in the original)")
        elif f.rule == "codex-duplicate-call-id":
            first = f.related[0][0] if f.related else None
            if first is not None and lines.get(first) == lines.get(e):
                # The same line written twice (a writer's retry): the second copy is no second call.
                plan.drop.add(e.line)
                plan.left_out.append(f"line {e.line}: left out the second copy of line {first.line} ({kind} {tid} "
                                     "written twice; it stays in the original)")
                _drop_copied_outputs(main, lines, plan, tid)
                continue
            fresh = f"{tid}_{secrets.token_hex(4)}"
            _rename(lines, plan, e, fresh)
            answer = _answer_of(main, first, e, tid, renamed)
            if answer is not None:
                _rename(lines, plan, answer, fresh)
                renamed[answer.line] = fresh
            else:  # its output went to the first call: it gets the one Codex's normalizer would give it
                _answer_aborted(lines, plan, e, kind, fresh)
            plan.fixed.append(f"line {e.line}: renamed the second call_id {tid} to {fresh}"
                              + (f", and its output on line {answer.line}" if answer else
                                 f", with an output {ABORTED_OUTPUT!r} (the one output answers the first)"))
    plan.kept_messages = plan.total_messages = len(main.messages)
    plan.last_prompt = prompts[-1] if prompts else None
    return plan


def _answer_aborted(lines: SourceLines, plan: Plan, call: Entry, kind: str, call_id: str) -> None:
    """Right after `call`, the output Codex's normalizer inserts for a call without one, in the
    line's own layout (wrapped with the call's timestamp, or bare)."""
    d = lines.get(call)
    output = {"type": OUTPUT_OF[kind], "call_id": call_id, "output": ABORTED_OUTPUT}
    plan.insert_after[call.line].append(
        {"timestamp": d.get("timestamp"), "type": "response_item", "payload": output} if _wrapped(d) else output)
    plan.added_results += 1


def _wrapped(d: dict[str, Any]) -> bool:
    return isinstance(d.get("payload"), dict)


def rollout_prompts(check: TranscriptCheck, text_of: Callable[[Entry], str]) -> list[Entry]:
    """The user's prompts of the whole file, in order: `user` messages but Codex's injected context
    (`text_of`: a message entry's text)."""
    return [e for e in check.transcript.entries
            if e.type == "user" and e.is_message and not e.blocks and e.subtype in (None, "user")
            and not is_injected_context(text_of(e))]


def _point(prompts: list[Entry], to: str) -> Entry:
    for e in prompts:
        if to.isdigit() and int(to) == e.line:
            if e is prompts[0]:
                raise RewindError(f"--to {to}: that is the first prompt; nothing would be left to resume")
            return e
    listed = ", ".join(f"line {e.line}" for e in prompts[-10:]) or "none"
    raise RewindError(f"--to {to}: not a user prompt of the live conversation; the prompts it can rewind to are: "
                      f"{listed}")


def rollout_drops(check: TranscriptCheck, text_of: Callable[[Entry], str]) -> dict[int, int]:
    """For each prompt line `rewind --to` accepts: how many items cutting there drops (not the first
    prompt, none after a break: `_point` and `plan_rollout` refuse those)."""
    main = check.main
    if main is None:
        return {}
    prompts = [e.line for e in rollout_prompts(check, text_of)]
    first_fault = min((f.entry.line for f in validate(main)), default=None)
    items = sorted(e.line for e in check.transcript.entries if e.is_message)
    # Items at or after each point, by bisection: a count per prompt over every item is quadratic.
    return {line: len(items) - bisect.bisect_left(items, line) for line in prompts[1:]
            if first_fault is None or first_fault >= line}


def _first_broken_turn(faults: list[Any], prompts: list[Entry]) -> Entry:
    first = min((f.entry.line for f in faults), default=None)
    if first is None:
        raise RewindError("the main conversation already pairs; nothing to rewind")
    turn = next((p for p in reversed(prompts) if p.line < first), None)
    if turn is None or turn is prompts[0]:
        raise RewindError("the conversation is broken from its first turn: nothing to keep; use --mode patch")
    return turn


def _outputs_of(main: Conversation, tid: str) -> list[Entry]:
    return [e for m in main.messages for e in m.entries
            if e.blocks and e.blocks[0].kind in OUTPUT_KINDS and e.blocks[0].tool_id == tid]


def _answer_of(main: Conversation, first: Entry | None, call: Entry, tid: str, taken: dict[int, str]) -> Entry | None:
    """The output that answers the second call of an id: the first output of that id after it that is
    not the first call's own answer (the first output after the first call: outputs answer in order)."""
    outputs = [e for e in _outputs_of(main, tid) if e.line not in taken]
    first_answer = next((o for o in outputs if first is None or o.line > first.line), None)
    return next((o for o in outputs if o.line > call.line and o is not first_answer), None)


def _drop_copied_outputs(main: Conversation, lines: SourceLines, plan: Plan, tid: str) -> None:
    """An output written twice along with its call: the copies go too, so one call keeps one output."""
    seen: list[dict[str, Any]] = []
    for o in _outputs_of(main, tid):
        d = lines.get(o)
        if d in seen and o.line not in plan.drop:
            plan.drop.add(o.line)
            plan.left_out.append(f"line {o.line}: left out the second copy of the output of {tid} (written twice)")
        else:
            seen.append(d)


def _rename(lines: SourceLines, plan: Plan, e: Entry, call_id: str) -> None:
    d = dict(plan.replace.get(e.line) or lines.get(e))
    if _wrapped(d):
        d["payload"] = {**d["payload"], "call_id": call_id}
    else:
        d["call_id"] = call_id
    plan.replace[e.line] = d


def _set_session_id(check: TranscriptCheck, lines: SourceLines, plan: Plan, session_id: str) -> None:
    meta = session_meta_line(check.transcript.entries)
    if meta is None:
        return
    d = dict(lines.get(meta))
    if _wrapped(d):
        d["payload"] = {**d["payload"], "id": session_id}
    else:
        d["id"] = session_id
    plan.replace[meta.line] = d


def is_rollout_target(path: Path) -> bool:
    return os.path.basename(path).startswith("rollout-")
