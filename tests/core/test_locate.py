"""Exact positions of blocks inside a JSON line, and findings that point at them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from core_support import findings, summary

from rewind_lsp.findings import Position, line_position
from rewind_lsp.locate import Columns, element_spans, span

TRICKY = (
    '{"toolUseResult":{"content":[{"x":"}]\\"{"}]},"message" : {"content" :"a","role":"user",'
    '"content": [ {"type":"text","text":"[{\\u007b"} , {"type":"tool_result","tool_use_id":"t"} ]}}'
)


def test_span_skips_strings_with_brackets_escapes_and_duplicate_keys() -> None:
    assert json.loads(TRICKY)["message"]["content"][1]["type"] == "tool_result"
    s = span(TRICKY, ["message", "content", 1])
    assert s is not None
    assert json.loads(TRICKY[s[0] : s[1]]) == {"type": "tool_result", "tool_use_id": "t"}
    s0 = span(TRICKY, ["message", "content", 0])
    assert s0 is not None and TRICKY[s0[0]] == "{" and s0[0] < s[0]


@pytest.mark.parametrize(("text", "path"), [
    (TRICKY, ["message", "content", 5]),
    ('{"message":null}', ["message", "content", 0]),
    ("[1]", ["message"]),
    ('{"a":1', ["message"]),
    ('{"message":{"content":[1,2]}, "message":{"x":1}}', ["message", "content", 1]),  # the later one wins
    ("", ["message"]),
])
def test_span_of_what_is_not_there_is_none(text: str, path: list[str | int]) -> None:
    assert span(text, path) is None


def test_span_of_scalars_and_whitespace() -> None:
    text = '{ "message" : { "content" : [ {"a": -1.5e+3, "b": true, "c": null} ,\t{"type": "tool_use"} ] } }'
    s = span(text, ["message", "content", 1])
    assert s is not None and text[s[0] : s[1]] == '{"type": "tool_use"}'


def test_findings_point_at_the_block_in_pretty_spaced_lines(tmp_path: Path) -> None:
    """Lines written with spaces after separators (other tools re-serialize transcripts)."""
    lines = [
        {"type": "user", "uuid": "u1", "parentUuid": None, "message": {"role": "user", "content": "go"}},
        {"type": "assistant", "uuid": "a1", "parentUuid": "u1", "toolUseResult": {"content": "x"},
         "message": {"id": "m1", "role": "assistant", "content": [
             {"type": "text", "text": "{not a block} [\"tool_use\"]"},
             {"type": "tool_use", "id": "toolu_01SP", "name": "Bash", "input": {"command": "echo '}'"}}]}},
        {"type": "user", "uuid": "u2", "parentUuid": "a1", "message": {"role": "user", "content": "hello?"}},
        {"type": "assistant", "uuid": "a2", "parentUuid": "u2",
         "message": {"id": "m2", "role": "assistant", "content": [{"type": "text", "text": "hi"}]}},
    ]
    p = tmp_path / "s.jsonl"
    p.write_text("".join(json.dumps(x, indent=None, ensure_ascii=False) + "\n" for x in lines))
    fs = findings(p)
    assert summary(fs) == [("orphan-tool-use", "error", 2, "toolu_01SP")]
    line = p.read_text().splitlines()[1]
    block = json.dumps(lines[1]["message"]["content"][1])
    assert fs[0].start.column == line.index(block) + 1
    assert fs[0].end.column == line.index(block) + len(block) + 1


@pytest.mark.parametrize("text", [
    TRICKY,
    '{ "message" : { "content" : [ {"a": -1.5e+3, "b": true, "c": null} ,\t{"type": "tool_use"} , "x" ] } }',
    '{"message":{"content":[{"a":1},{"b":[2,{"c":"]"}]},{"d":"é😀"}]},"message":{"content":[7, 8]}}',
    '{"message":{"content":[{"a":1},{"b":"unterminated]}',  # stops where span stops
    '{"message":{"content":"text, not blocks"}}',
    '{"message":{"content":[]}}',
    '{"message":{"content":[1 2]}}',  # no comma: span reads on, so must element_spans
])
def test_element_spans_are_the_spans_of_each_element(text: str) -> None:
    spans = element_spans(text, ["message", "content"])
    for k in range(len(spans) + 3):
        expected = span(text, ["message", "content", k])
        assert (spans[k] if k < len(spans) else None) == expected, k


COLUMN_TEXTS = [
    "plain ascii line", "héllo wörld", "a😀b😀😀c", "😀", "", "日本語 and 𝄞 clef",
    "\x7f\x80\u07ff\u0800\uffff\U00010000",  # each side of every UTF-8 length
]


@pytest.mark.parametrize("text", COLUMN_TEXTS)
def test_columns_count_utf16_units_and_utf8_bytes_as_encoding_the_prefix_does(text: str) -> None:
    columns = Columns(text)
    for i in range(-len(text) - 2, len(text) + 3):
        assert columns.utf16(i) == len(text[:i].encode("utf-16-le")) // 2, i
        assert columns.utf8(i) == len(text[:i].encode("utf-8")), i
    for i in range(len(text) + 1):  # the offsets a finding can have: in the line or just past it
        assert Position(4, i + 1, columns.utf16(i), columns.utf8(i)) == line_position(4, text, i), i
