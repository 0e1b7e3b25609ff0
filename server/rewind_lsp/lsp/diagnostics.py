"""Findings as LSP diagnostics."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lsprotocol import types

from ..findings import Finding, Position, Severity
from ..redact import redact

if TYPE_CHECKING:
    from ..rules import RuleSet

_SEVERITY = {
    Severity.ERROR: types.DiagnosticSeverity.Error,
    Severity.WARNING: types.DiagnosticSeverity.Warning,
    Severity.INFORMATION: types.DiagnosticSeverity.Information,
    Severity.HINT: types.DiagnosticSeverity.Hint,
}


def _character(p: Position, encoding: str, line_text: Callable[[int], str]) -> int:
    if encoding == types.PositionEncodingKind.Utf32:
        return p.column - 1
    if encoding == types.PositionEncodingKind.Utf8:
        return len(line_text(p.line)[: p.column - 1].encode("utf-8"))
    return p.utf16


def to_position(p: Position, encoding: str, line_text: Callable[[int], str]) -> types.Position:
    return types.Position(line=max(p.line - 1, 0), character=max(_character(p, encoding, line_text), 0))


def _place(f: Finding) -> dict[str, str]:
    """`messages.N[.content.M]` a finding names (a log's 400 quotes the API's), for the actions."""
    n = f.facts.get("messages_index")
    if n is None:
        return {}
    content = f.facts.get("content_index")
    return {"messagesRef": f"messages.{n}" + (f".content.{content}" if content is not None else "")}


def to_diagnostic(
    uri: str, f: Finding, rules: RuleSet, encoding: str, line_text: Callable[[int], str]
) -> types.Diagnostic:
    rule = rules.get(f.rule)
    rng = types.Range(start=to_position(f.start, encoding, line_text), end=to_position(f.end, encoding, line_text))
    related = [
        types.DiagnosticRelatedInformation(
            location=types.Location(
                uri=uri,
                range=types.Range(start=to_position(p, encoding, line_text), end=to_position(p, encoding, line_text)),
            ),
            message=note,
        )
        for p, note in f.related
    ]
    return types.Diagnostic(
        range=rng,
        severity=_SEVERITY[f.severity],
        code=f.rule,
        code_description=types.CodeDescription(href=rule.fix_uri) if rule else None,
        source="rewind-lsp",
        message=redact(f.message),
        related_information=related or None,
        data={"rule": f.rule, "toolUseId": f.tool_use_id, **_place(f)},
    )
