"""Every API wording of the tool-use 400, with and without backticks around `tool_use` /
`tool_result` / `tool_use_id` (the raw API text has them, Claude Code's summaries do not),
alone on a terminal line, inside `API Error: 400 {json}`, and soft-wrapped onto a continuation
line: always the tool-use 400, with its tool_use id, its messages.N and its exact columns."""

from __future__ import annotations

import pytest

from rewind_lsp.check import check_log_text
from rewind_lsp.findings import Finding

R400 = "tool-use-concurrency-400"

# `{b}` is a backtick or nothing; « » is the span the finding covers on a line of its own; ¦ is
# where it ends inside `API Error: 400 {json}` (that finding starts at `API Error`).
SERVER_RESULTS = ["advisor_tool_result", "web_search_tool_result", "web_fetch_tool_result",
                  "code_execution_tool_result", "bash_code_execution_tool_result"]
WORDINGS: list[tuple[str, str | None, str | None]] = [
    ("messages.1.content.1: «{b}tool_use{b} ids must be unique¦»", None, "1"),
    ("messages.14: «{b}tool_use{b} ids were found without¦ {b}tool_result{b} blocks» immediately after: "
     "toolu_01AbCdEf. Each {b}tool_use{b} block must have a corresponding {b}tool_result{b} block in the next "
     "message.", "toolu_01AbCdEf", "14"),
    ("messages.4.content.0: «unexpected {b}tool_use_id¦{b} found in {b}tool_result{b} blocks»: toolu_01ZyXw. "
     "Each {b}tool_result{b} block must have a corresponding {b}tool_use{b} block in the previous message.",
     "toolu_01ZyXw", "4"),
    ("messages.6: «Did not find 1 {b}tool_result¦{b} block»(s) at the beginning of this message. Messages "
     "following {b}tool_use{b} blocks must begin with a matching number of {b}tool_result{b} blocks.", None, "6"),
    ("messages.3.content.2: «each {b}tool_use{b} must have a single result¦». Found multiple {b}tool_result{b} "
     "blocks with id: toolu_01MuLt", "toolu_01MuLt", "3"),
    *[(f"messages.5.content.0: «unexpected {{b}}tool_use_id¦{{b}} found in {{b}}{kind}{{b}} blocks»: "
       f"srvtoolu_01SrV{i}. Each {{b}}{kind}{{b}} block must have a corresponding {{b}}server_tool_use{{b}} "
       "block before it.", f"srvtoolu_01SrV{i}", "5") for i, kind in enumerate(SERVER_RESULTS)],
    *[(f"messages.8: «{{b}}server_tool_use{{b}} ids were found without¦ {{b}}{kind}{{b}} blocks» immediately "
       f"after: srvtoolu_01QwE{i}. Each {{b}}server_tool_use{{b}} block must have a corresponding "
       f"{{b}}{kind}{{b}} block in the same message.", f"srvtoolu_01QwE{i}", "8")
      for i, kind in enumerate(SERVER_RESULTS)],
]
PREFIX = "  ⎿  "


def _render(template: str, b: str) -> tuple[str, int, int, int]:
    """The wording, and where «, » and ¦ fall in it (0-based offsets into the wording)."""
    text = template.replace("{b}", b)
    start = text.index("«")
    end = text.replace("¦", "").index("»") - 1
    json_end = text.replace("«", "").index("¦")
    return text.replace("«", "").replace("»", "").replace("¦", ""), start, end, json_end


def _one(text: str) -> Finding:
    fs = [f for f in check_log_text(text) if f.rule == R400]
    assert len(fs) == 1, [(f.rule, f.start.line, f.start.column) for f in fs]
    return fs[0]


def _spans(f: Finding) -> tuple[int, int, int, int]:
    return (f.start.line, f.start.column, f.end.line, f.end.column)


@pytest.mark.parametrize("b", ["`", ""], ids=["backticks", "plain"])
@pytest.mark.parametrize(("template", "tool_id", "index"), WORDINGS)
def test_wording_alone_on_a_terminal_line(template: str, tool_id: str | None, index: str, b: str) -> None:
    msg, start, end, _ = _render(template, b)
    f = _one(f"● Bash(npm test)\n{PREFIX}{msg}\n")
    # Columns are 1-based characters; the end column is the first one after the match.
    assert _spans(f) == (2, len(PREFIX) + start + 1, 2, len(PREFIX) + end + 1)
    assert f.tool_use_id == tool_id
    assert f.facts["messages_index"] == index


@pytest.mark.parametrize("b", ["`", ""], ids=["backticks", "plain"])
@pytest.mark.parametrize(("template", "tool_id", "index"), WORDINGS)
def test_wording_inside_api_error_400_json(template: str, tool_id: str | None, index: str, b: str) -> None:
    msg, _, _, json_end = _render(template, b)
    head = PREFIX + 'API Error: 400 {"type":"error","error":{"type":"invalid_request_error","message":"'
    line = head + msg + '"},"request_id":"req_011CX"}'
    f = _one(f"before\n{line}\nafter\n")
    assert _spans(f) == (2, len(PREFIX) + 1, 2, len(head) + json_end + 1)
    assert f.tool_use_id == tool_id
    assert f.facts["messages_index"] == index


@pytest.mark.parametrize("b", ["`", ""], ids=["backticks", "plain"])
@pytest.mark.parametrize(("template", "tool_id", "index"), WORDINGS)
def test_wording_soft_wrapped_onto_a_continuation_line(template: str, tool_id: str | None, index: str,
                                                       b: str) -> None:
    msg, start, end, _ = _render(template, b)
    cut = (start + end) // 2  # mid-word, inside the matched span
    indent = "     "
    f = _one(f"{PREFIX}{msg[:cut]}\n{indent}{msg[cut:]}\n\n❯ \n")
    assert _spans(f) == (1, len(PREFIX) + start + 1, 2, len(indent) + end - cut + 1)
    assert f.tool_use_id == tool_id
    assert f.facts["messages_index"] == index
