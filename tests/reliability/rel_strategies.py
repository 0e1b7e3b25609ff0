"""Hypothesis strategies and settings shared by the fuzz tests."""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rel_support import SID

SCALE = float(os.environ.get("REWIND_FUZZ_SCALE", "1"))
FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=os.environ.get("REWIND_FUZZ_RANDOM") != "1",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def examples(n: int) -> int:
    return max(1, int(n * SCALE))


# --- generators -----------------------------------------------------------------------------

# Any Unicode scalar value (NUL, controls, astral planes included; no lone surrogates, which
# cannot be written as UTF-8).
any_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=True, allow_infinity=True) | any_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=10,
)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A healthy Claude Code conversation: prompts, parallel tool calls in both file layouts, replies."""
    out: list[dict[str, Any]] = []
    n = 0

    def add(kind: str, parent: str | None, content: Any, msg_id: str | None = None, **extra: Any) -> str:
        nonlocal n
        n += 1
        uid = f"e{n:04d}"
        message: dict[str, Any] = {"role": kind, "content": content}
        if msg_id:
            message["id"] = msg_id
            message["model"] = draw(st.sampled_from(["claude-opus-4-1", "claude-sonnet-4-5", "<weird>"]))
        entry = {"parentUuid": parent, "isSidechain": False, "type": kind, "message": message, "uuid": uid,
                 "sessionId": SID, "cwd": "/tmp/proj", "version": "2.1.30", **extra}
        out.append(entry)
        return uid

    parent: str | None = None
    for turn in range(draw(st.integers(min_value=1, max_value=4))):
        parent = add("user", parent, draw(any_text) or "hi")
        tools = draw(st.integers(min_value=0, max_value=3))
        if tools:
            ids = [f"toolu_{turn:02d}{k}{draw(st.text('abcXYZ019_', min_size=1, max_size=6))}" for k in range(tools)]
            blocks = [{"type": "tool_use", "id": t, "name": "Bash", "input": {"command": draw(any_text)}} for t in ids]
            results = [{"type": "tool_result", "tool_use_id": t, "content": draw(any_text),
                        **({"is_error": True} if draw(st.booleans()) else {})} for t in ids]
            if draw(st.booleans()):
                # One line per block sharing message.id, each result hanging off its own tool_use line.
                lines = []
                for b in blocks:
                    parent = add("assistant", parent, [b], f"msg_t{turn}")
                    lines.append(parent)
                for line, r in zip(lines, results, strict=True):
                    parent = add("user", line, [r], sourceToolAssistantUUID=line)
            else:
                parent = add("assistant", parent, [{"type": "text", "text": draw(any_text)}, *blocks], f"msg_t{turn}")
                parent = add("user", parent, results)
        if draw(st.booleans()):
            out.append({"type": "progress", "uuid": f"p{turn}", "parentUuid": parent, "data": draw(json_values)})
        parent = add("assistant", parent, [{"type": "text", "text": draw(any_text) or "ok"}], f"msg_r{turn}")
    if draw(st.booleans()):
        out.insert(0, {"type": "summary", "summary": draw(any_text), "leafUuid": parent})
    return out


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a JSON value (the value itself is the empty path)."""
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths(v, (*prefix, i))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = replaced(copy[head], rest, new)
    return copy


def dumps(entry: Any, compact: bool = True, ascii_only: bool = False) -> str:
    return json.dumps(entry, separators=(",", ":") if compact else (", ", ": "), ensure_ascii=ascii_only)


def serialize(entries: list[Any], **kw: Any) -> bytes:
    return "".join(dumps(e, **kw) + "\n" for e in entries).encode("utf-8")
