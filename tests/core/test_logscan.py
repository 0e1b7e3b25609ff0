"""The terminal-log scanner: every message variant of the tool-use 400, what a terminal does to
it (colours, OSC, CR redraws, wrapping), near misses, and incremental scanning of growing files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rewind_lsp.check import check_log_file, check_log_text, check_path
from rewind_lsp.findings import Severity
from rewind_lsp.logscan import LogState, display_line, scan_file
from rewind_lsp.rules import default_rules

R400 = "tool-use-concurrency-400"

CLI_MESSAGES = [
    "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation.",
    "API Error: 400 due to tool use concurrency issues.",
    "API Error: 400 orphaned tool_result in conversation history",
    "API Error: 400 duplicate tool_use ID in conversation history.",
    "API Error: 400 duplicate tool_use ID in conversation history. Run /rewind to recover the conversation.",
]
RAW_MESSAGES = [
    "messages.12: `tool_use` ids were found without `tool_result` blocks immediately after: "
    "toolu_01AbCdEfGhIjKlMnOpQrStUv. Each `tool_use` block must have a corresponding `tool_result` block in the "
    "next message.",
    "messages.4.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_01ZyXwVuTsRqPoNmLkJiHgFe. "
    "Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
    "messages.9.content.2: tool_use ids must be unique",
    "messages.6: Did not find 1 `tool_result` block(s) at the beginning of this message. Messages following "
    "`tool_use` blocks must begin with a matching number of `tool_result` blocks.",
    "messages.3: each tool_use must have a single result",
    "messages.8: `server_tool_use` ids were found without `advisor_tool_result` blocks immediately after: "
    "srvtoolu_01QwErTyUiOp. Each `server_tool_use` block must have a corresponding `advisor_tool_result` block in "
    "the same message.",
]


def _one(text: str):
    fs = [f for f in check_log_text(text) if f.rule == R400]
    assert len(fs) == 1, [(f.rule, f.start.line, f.start.column) for f in fs]
    return fs[0]


def _ids(msg: str) -> list[str]:
    return [w.strip(".,") for w in msg.split() if w.startswith(("toolu_", "srvtoolu_"))]


def _index(msg: str) -> str | None:
    return msg.split(".")[1].split(":")[0] if msg.startswith("messages.") else None


# --- every message, every prefix ---------------------------------------------------------------

PREFIXES = ["", "  ⎿  ", "  ⎿ \u00a0", "● ", "⏺ ", "Error: "]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("msg", CLI_MESSAGES)
def test_cli_messages(msg: str, prefix: str) -> None:
    text = f"some output\n\n{prefix}{msg}\nmore output\n"
    f = _one(text)
    assert (f.start.line, f.start.column) == (3, len(prefix) + 1)
    assert f.severity == Severity.ERROR
    assert f.tool_use_id is None


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("msg", RAW_MESSAGES)
def test_raw_api_messages(msg: str, prefix: str) -> None:
    f = _one(f"{prefix}{msg}\n")
    assert f.start.line == 1
    assert f.start.column > len(prefix)
    ids = _ids(msg)
    assert f.tool_use_id == (ids[0] if ids else None)
    assert f.facts.get("messages_index") == _index(msg)
    if ids:
        assert ids[0] in f.message


@pytest.mark.parametrize("msg", RAW_MESSAGES)
def test_raw_messages_inside_api_error_400_json(msg: str) -> None:
    line = ('  ⎿  API Error: 400 {"type":"error","error":{"type":"invalid_request_error","message":"' + msg +
            '"},"request_id":"req_011CX"}')
    f = _one(f"before\n{line}\nafter\n")
    # Reported where the error starts: at `API Error`, not somewhere inside the JSON.
    assert (f.start.line, f.start.column) == (2, line.index("API Error") + 1)
    ids = _ids(msg)
    assert f.tool_use_id == (ids[0] if ids else None)
    assert f.facts.get("messages_index") == _index(msg)


def test_several_tool_ids_and_messages_index_are_extracted() -> None:
    f = _one("API Error: 400 messages.27: `tool_use` ids were found without `tool_result` blocks immediately after: "
             "toolu_01AAA, toolu_01BBB, toolu_01CCC. Each `tool_use` block must have a corresponding `tool_result` "
             "block in the next message.\n")
    assert f.facts["tool_use_ids"] == "toolu_01AAA, toolu_01BBB, toolu_01CCC"
    assert f.facts["messages_index"] == "27"
    assert f.tool_use_id == "toolu_01AAA"


# --- what terminals do to it ----------------------------------------------------------------


def test_colour_codes_splitting_words_map_back_to_the_original_column() -> None:
    raw = "\x1b[2m  ⎿  \x1b[0m\x1b[31mAPI Er\x1b[1mror: 4\x1b[0m00 due to tool use concur\x1b[39mrency issues\x1b[0m"
    f = _one(f"x\n{raw}\n")
    assert f.start.line == 2
    assert f.start.column == raw.index("API Er") + 1
    assert f.start.utf16 == f.start.column - 1
    # The end is just past the last matched character in the raw line.
    assert raw[f.end.column - 2] == "s"


def test_osc_escapes_terminated_and_unterminated() -> None:
    f = _one("\x1b]0;✳ Claude Code\x07\x1b]8;;https://x.y\x1b\\API Error: 400 due to tool use concurrency issues\n")
    assert f.start.line == 1
    # An OSC cut off by a newline (a torn write) must not swallow the next line.
    f = _one("\x1b]0;title without terminator\nAPI Error: 400 due to tool use concurrency issues\n")
    assert (f.start.line, f.start.column) == (2, 1)


def test_carriage_return_redraws() -> None:
    raw = "⠋ Thinking…\r⠙ Thinking…\r\x1b[2K  ⎿  API Error: 400 due to tool use concurrency issues"
    f = _one(raw + "\r\n")
    assert f.start.line == 1
    assert f.start.column == raw.index("API Error") + 1
    # A redraw that overwrites the error leaves nothing to report.
    assert check_log_text("API Error: 400 due to tool use concurrency issues\r\x1b[2KAll good now\n") == []


def test_crlf_line_endings() -> None:
    f = _one("one\r\ntwo\r\nAPI Error: 400 due to tool use concurrency issues\r\nfour\r\n")
    assert (f.start.line, f.start.column) == (3, 1)


@pytest.mark.parametrize("cut", [12, 25, 31, 38, 44])  # between words and mid-word
def test_wrapped_cli_message(cut: int) -> None:
    msg = CLI_MESSAGES[0]
    text = f"● Bash(ls)\n  ⎿  {msg[:cut]}\n     {msg[cut:]}\n\n❯ \n"
    f = _one(text)
    assert (f.start.line, f.start.column) == (2, 6)
    assert f.end.line in (2, 3)


def test_mid_word_wrap_of_a_tool_id_and_of_the_json() -> None:
    line1 = '  ⎿  API Error: 400 {"type":"error","error":{"type":"invalid_request_error","message":"messages.12: '
    line2 = "     `tool_use` ids were found without `tool_re"
    line3 = "     sult` blocks immediately after: toolu_01AbCdEfGh"
    line4 = '     IjKlMn. Each `tool_use` block must have a corresponding `tool_result` block in the next message."}}'
    f = _one("\n".join(["start", line1, line2, line3, line4, "end"]) + "\n")
    assert (f.start.line, f.start.column) == (2, line1.index("API Error") + 1)
    assert f.tool_use_id == "toolu_01AbCdEfGhIjKlMn"
    assert f.facts["messages_index"] == "12"


def test_message_alone_wrapped_mid_word_reports_its_first_line() -> None:
    text = "header\n  ⎿  messages.5: `tool_use` ids were found with\n     out `tool_result` blocks immediately after\n"
    f = _one(text)
    assert f.start.line == 2
    assert f.start.column == text.splitlines()[1].index("messages") + 1 + len("messages.5: ")


def test_two_errors_on_following_lines_are_two_findings() -> None:
    text = ("  ⎿  API Error: 400 due to tool use concurrency issues.\n"
            "  ⎿  API Error: 400 orphaned tool_result in conversation history\n")
    fs = [f for f in check_log_text(text) if f.rule == R400]
    assert [f.start.line for f in fs] == [1, 2]


def test_display_line_maps_columns() -> None:
    shown, origin = display_line("\x1b[31mab\x1b[0mc\rX")
    assert shown == "Xbc"
    assert [origin[i] for i in range(3)] == [13, 6, 11]


# --- near misses ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "tool use concurrency issues",
    "Investigating the tool use concurrency issues people report",
    "API Error: 429 {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\"}}",
    "> API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation.",
    "❯ why do I get API Error: 400 due to tool use concurrency issues?",
    "❯\u00a0API Error: 400 due to tool use concurrency issues",
    "  > API Error: 400 orphaned tool_result in conversation history",
    "API Error: 400 {\"type\":\"error\",\"error\":{\"message\":\"max_tokens: 99999 > 64000\"}}",
    "SyntaxError: Unexpected token 'A', \"API Error\" is not valid JSON",
    "API Error: 500 internal server error",
    "Error: 400 Bad Request",
])
def test_near_misses_give_no_400(text: str) -> None:
    assert [f for f in check_log_text(text + "\n") if f.rule == R400] == []


def test_prompt_quoting_a_wrapped_error_is_not_the_error() -> None:
    text = "❯ I keep seeing API Error: 400 due to tool use\n  concurrency issues, what now?\n"
    assert [f for f in check_log_text(text) if f.rule == R400] == []


def test_syntax_error_has_its_own_rule() -> None:
    fs = check_log_text("  ⎿  SyntaxError: Unexpected token '<', \"<!DOCTYPE \"... is not valid JSON\n")
    assert [(f.rule, f.start.line, f.start.column) for f in fs] == [("syntax-error-unexpected-token", 1, 6)]
    assert fs[0].severity > Severity.ERROR
    rule = default_rules().get("syntax-error-unexpected-token")
    assert rule is not None and "not" in rule.hover and "400" in rule.hover


@pytest.mark.parametrize(("text", "rule"), [
    ("API Error: 429 {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\"}}", "rate-limit-429"),
    ("API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}",
     "overloaded-529"),
    ("API Error: 401 {\"type\":\"error\",\"error\":{\"type\":\"authentication_error\"}}", "auth-401-403"),
    ("API Error: 400 {\"type\":\"error\",\"error\":{\"message\":"
     "\"prompt is too long: 210000 tokens > 200000 maximum\"}}",
     "prompt-too-long"),
    ("API Error: 500 {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error\"}}",
     "api-error-500"),
])
def test_neighbour_rules_tell_other_errors_apart(text: str, rule: str) -> None:
    fs = check_log_text(text + "\n")
    assert [f.rule for f in fs] == [rule]


# --- files -----------------------------------------------------------------------------------


def test_check_path_treats_non_jsonl_as_a_log(tmp_path: Path) -> None:
    p = tmp_path / "session.log"
    p.write_text("x\n  ⎿  " + CLI_MESSAGES[0] + "\n")
    fs = check_path(str(p))
    assert [(f.rule, f.start.line, f.start.column) for f in fs] == [(R400, 2, 6)]


def test_invalid_utf8_and_binary_garbage_in_a_log(tmp_path: Path) -> None:
    p = tmp_path / "t.log"
    p.write_bytes(b"\xff\xfe\x00garbage\n\x1b[31mAPI Error: 400 due to tool use concurrency issues\x1b[0m\n\xc3\n")
    fs = check_log_file(str(p))
    assert [(f.rule, f.start.line, f.start.column) for f in fs] == [(R400, 2, 6)]


def _append(p: Path, data: str) -> None:
    with open(p, "a", encoding="utf-8") as f:
        f.write(data)


ERR = "  ⎿  API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation.\n"


def test_incremental_scan_reads_only_appended_bytes(tmp_path: Path) -> None:
    p = tmp_path / "t.log"
    p.write_text("x" * 1000 + "\nline two\n" + ERR)
    state = LogState()
    rules = default_rules()
    new = scan_file(str(p), state, rules)
    assert [(f.rule, f.start.line) for f in new] == [(R400, 3)]
    first_offset = state.offset
    assert first_offset > 0
    # Rewrite the already-scanned start in place (same size, far before the offset): an incremental
    # scan does not read it again.
    planted = b"API Error: 400 due to tool use concurrency issues"
    data = p.read_bytes()
    p.write_bytes(planted + data[len(planted):])
    assert p.stat().st_size == len(data)
    assert scan_file(str(p), state, rules) == []
    _append(p, "more\n" * 3 + ERR + "tail\n")
    new = scan_file(str(p), state, rules)
    assert [(f.rule, f.start.line) for f in new] == [(R400, 7)]
    assert state.offset > first_offset
    assert scan_file(str(p), state, rules) == []  # nothing new, nothing reported twice
    assert [f.start.line for f in state.all()] == [3, 7]


@pytest.mark.parametrize("longer", [False, True])
def test_truncated_and_rewritten_in_place_past_the_offset(tmp_path: Path, longer: bool) -> None:
    """`logrotate copytruncate`, or `script -f` run again: same inode, new content, possibly longer
    than what was scanned. The change is noticed and the file scanned from its start."""
    p = tmp_path / "t.log"
    p.write_text("a harmless line\n" * 10 + ERR)
    state, rules = LogState(), default_rules()
    assert [f.start.line for f in scan_file(str(p), state, rules)] == [11]
    with open(p, "r+", encoding="utf-8") as f:
        f.truncate(0)
        f.write(ERR + ("more output\n" * 40 if longer else ""))
    new = scan_file(str(p), state, rules)
    assert [f.start.line for f in new] == [1]
    assert [f.start.line for f in state.all()] == [1]


def test_a_held_back_line_rewritten_is_judged_afresh(tmp_path: Path) -> None:
    p = tmp_path / "t.log"
    p.write_text(ERR)  # one logical line: held back, read again on the next scan
    state, rules = LogState(), default_rules()
    assert len(scan_file(str(p), state, rules)) == 1
    with open(p, "r+", encoding="utf-8") as f:
        f.truncate(0)
        f.write("all good now, nothing to see here at all, just a long harmless line of output text\n")
    scan_file(str(p), state, rules)
    assert state.all() == []


def test_line_appended_in_two_writes_is_found_once_at_the_right_line(tmp_path: Path) -> None:
    p = tmp_path / "t.log"
    p.write_text("a\nb\n")
    state, rules = LogState(), default_rules()
    assert scan_file(str(p), state, rules) == []
    _append(p, "  ⎿  API Error: 400 due to tool use conc")
    assert scan_file(str(p), state, rules) == []
    _append(p, "urrency issues.\nnext\n")
    new = scan_file(str(p), state, rules)
    assert [(f.rule, f.start.line, f.start.column) for f in new] == [(R400, 3, 6)]
    _append(p, "later\n")
    assert scan_file(str(p), state, rules) == []
    assert len(state.all()) == 1


def test_wrapped_message_completed_by_a_later_append(tmp_path: Path) -> None:
    """The continuation line of a wrapped error arrives in a later write."""
    p = tmp_path / "t.log"
    p.write_text("x\n  ⎿  API Error: 400 due to tool use concur\n")
    state, rules = LogState(), default_rules()
    assert scan_file(str(p), state, rules) == []
    _append(p, "     rency issues. Run /rewind to recover the conversation.\n")
    new = scan_file(str(p), state, rules)
    assert [(f.rule, f.start.line, f.start.column) for f in new] == [(R400, 2, 6)]


def test_wrapped_message_on_the_first_line_completed_later(tmp_path: Path) -> None:
    p = tmp_path / "t.log"
    p.write_text("API Error: 400 due to tool use concur\n")
    state, rules = LogState(), default_rules()
    assert scan_file(str(p), state, rules) == []
    _append(p, "  rency issues.\n")
    new = scan_file(str(p), state, rules)
    assert [(f.rule, f.start.line, f.start.column) for f in new] == [(R400, 1, 1)]


def test_truncation_restarts_the_scan(tmp_path: Path) -> None:
    p = tmp_path / "t.log"
    p.write_text("noise\n" * 50 + ERR)
    state, rules = LogState(), default_rules()
    assert [f.start.line for f in scan_file(str(p), state, rules)] == [51]
    p.write_text(ERR)  # truncated and rewritten, shorter
    new = scan_file(str(p), state, rules)
    assert [f.start.line for f in new] == [1]
    assert [f.start.line for f in state.all()] == [1]


def test_rotation_restarts_the_scan(tmp_path: Path) -> None:
    p = tmp_path / "t.log"
    p.write_text("noise\n" * 5 + ERR)
    state, rules = LogState(), default_rules()
    assert [f.start.line for f in scan_file(str(p), state, rules)] == [6]
    os.rename(p, tmp_path / "t.log.1")
    p.write_text("fresh\n" * 30 + ERR + "x\n" * 20)  # a new, longer file at the same path
    new = scan_file(str(p), state, rules)
    assert [f.start.line for f in new] == [31]
    assert [f.start.line for f in state.all()] == [31]


def test_big_log_in_several_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rewind_lsp.logscan as logscan

    monkeypatch.setattr(logscan, "CHUNK_BYTES", 4096)
    p = tmp_path / "big.log"
    lines = [f"output line {i} " + "x" * 40 for i in range(2000)]
    for k in (100, 777, 1999):
        lines[k] = ERR.rstrip("\n")
    p.write_text("\n".join(lines) + "\n")
    state = LogState()
    fs = scan_file(str(p), state, default_rules())
    assert [f.start.line for f in fs] == [101, 778, 2000]
    data = p.read_bytes()
    assert 0 < state.offset <= len(data)
    assert data[: state.offset].count(b"\n") + 1 == state.line  # the line number at the offset is right
    assert scan_file(str(p), state, default_rules()) == []


def test_prompt_continuation_quoting_the_error_is_not_the_error_but_a_response_line_is() -> None:
    quoted = "❯ look at this:\n  " + CLI_MESSAGES[0] + "\n"
    assert [f for f in check_log_text(quoted) if f.rule == R400] == []
    answered = "❯ do it\n  ⎿  " + CLI_MESSAGES[0] + "\n"
    assert [(f.start.line, f.start.column) for f in check_log_text(answered) if f.rule == R400] == [(2, 6)]


# --- wrap can be turned off per rule; the scan reads only what it must ------------------------------


def _user_rule(tmp_path: Path, wrap: bool):
    folder = tmp_path / ("wrap" if wrap else "nowrap")
    folder.mkdir()
    (folder / "frob.toml").write_text(
        'id = "frob"\ntitle = "frob"\nhover = "h"\npatterns = [\'frobnicator\\s*exploded\']\n'
        + ("" if wrap else "wrap = false\n"), encoding="utf-8")
    (folder / "frob.md").write_text("fix", encoding="utf-8")
    from rewind_lsp.rules import load_rules

    return load_rules([folder]).get("frob")


@pytest.mark.parametrize("wrap", [False, True])
def test_wrap_can_be_turned_off_per_rule(tmp_path: Path, wrap: bool) -> None:
    from rewind_lsp.logscan import scan_text

    rule = _user_rule(tmp_path, wrap)
    assert rule is not None and rule.wrap is wrap
    one_line = "x\n  ⎿  the frobni\x1b[1mcator exploded\n"
    assert [(f.start.line, f.start.column) for f in scan_text(one_line, [rule])] == [(2, 10)]
    wrapped = "x\n  ⎿  the frobni\r\n\x1b[2m     cator exploded\r\n"
    assert [(f.start.line, f.start.column) for f in scan_text(wrapped, [rule])] == ([(2, 10)] if wrap else [])


def test_only_lines_near_a_hit_are_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rewind_lsp.logscan as logscan

    shown: list[str] = []
    real = logscan.display_line
    monkeypatch.setattr(logscan, "display_line", lambda raw: shown.append(raw) or real(raw))
    p = tmp_path / "big.log"
    noise = "\x1b[2K\r⠋ Thinking… \x1b[31mAPI tool_use Error\x1b[0m ❯ 😀\r\n"
    p.write_text(noise * 20_000 + ERR + noise * 20_000, encoding="utf-8")
    state = LogState()
    assert [(f.rule, f.start.line) for f in scan_file(str(p), state, default_rules())] == [(R400, 20_001)]
    assert state.line == 40_001  # the last line is held back: it may still grow
    # The hit's line, the lines around it that could belong to it, and the last line (held back).
    assert 0 < len(shown) < 4 * 16, len(shown)


def test_scanning_a_log_does_not_copy_it_in_memory(tmp_path: Path) -> None:
    """Reading a 10 MB log of emoji-laden output costs about one read buffer, not a str of 4 bytes per
    character and its cleaned copies (the server's RSS grew by ~50 MB per 10 MB log before)."""
    import tracemalloc

    from rewind_lsp.logscan import CHUNK_BYTES

    p = tmp_path / "ten.log"
    line = "  ⎿  \x1b[31m😀 ✳ résumé ⏺ output\x1b[0m " + "x" * 40 + "\r\n"
    with open(p, "w", encoding="utf-8") as f:
        for _ in range((10 << 20) // len(line.encode())):
            f.write(line)
        f.write(ERR)
    rules = default_rules()
    scan_file(str(p), LogState(), rules)  # the prefilter is built once per rule set: not counted
    tracemalloc.start()
    try:
        fs = scan_file(str(p), LogState(), rules)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [f.rule for f in fs] == [R400]
    assert peak < 1.5 * CHUNK_BYTES, peak


@pytest.mark.parametrize(("message", "cut", "rule"), [
    ("  ⎿  API Error: 429 Too Many Requests", 13, "rate-limit-429"),
    ("  ⎿  API Error: 529 Overloaded", 17, "overloaded-529"),
    ("  ⎿  Prompt is too long", 19, "prompt-too-long"),
    ("  ⎿  OAuth token has expired", 11, "auth-401-403"),
])
def test_neighbour_messages_wrapped_mid_word_are_found_too(message: str, cut: int, rule: str) -> None:
    wrapped = f"x\n{message[:cut]}\r\n\x1b[2m     {message[cut:]}\x1b[0m\r\n"
    assert [(f.rule, f.start.line, f.start.column) for f in check_log_text(wrapped)] == [(rule, 2, 6)]
    # Not on one line: found only because the rule joins soft wraps (`wrap`, on by default).
    assert [f for f in check_log_text(f"x\n{message[:cut]}\r\n") if f.rule == rule] == []


def test_utf16_columns_count_characters_above_u_ffff_twice() -> None:
    # 😀 is one character (column) but two UTF-16 units (what LSP counts); é is one of each.
    prefix = "😀é😀 ⎿  "
    f = _one(f"{prefix}API Error: 400 due to tool use concurrency issues 😀\n")
    assert (f.start.column, f.start.utf16) == (len(prefix) + 1, len(prefix) + 2)
    end = len(prefix) + len("API Error: 400 due to tool use concurrency issues")
    assert (f.end.column, f.end.utf16) == (end + 1, end + 2)
