"""Findings as text, JSON (the public CLI contract) and SARIF."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .findings import Finding, Severity
from .redact import redact

if TYPE_CHECKING:
    from .rules import RuleSet

JSON_KEYS = ("path", "line", "column", "end_line", "end_column", "rule", "severity", "message", "tool_use_id")


def as_json_object(path: str, f: Finding) -> dict[str, Any]:
    return {
        "path": path,
        "line": f.start.line,
        "column": f.start.column,
        "end_line": f.end.line,
        "end_column": f.end.column,
        "rule": f.rule,
        "severity": f.severity.label,
        "message": redact(f.message),
        "tool_use_id": f.tool_use_id,
    }


def to_json(results: Sequence[tuple[str, Finding]]) -> str:
    return json.dumps([as_json_object(p, f) for p, f in results], indent=2, ensure_ascii=False)


def to_text(results: Sequence[tuple[str, Finding]]) -> str:
    lines = []
    for path, f in results:
        tid = f" [{f.tool_use_id}]" if f.tool_use_id else ""
        lines.append(f"{path}:{f.start.line}:{f.start.column}: {f.severity.label} {f.rule}: {redact(f.message + tid)}")
    return "\n".join(lines)


_SARIF_LEVEL = {
    Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFORMATION: "note", Severity.HINT: "note",
}


def sarif_uri(path: str) -> str:
    """A `file://` URI, percent-encoded (spaces, non-ASCII): SARIF's artifactLocation.uri is a URI,
    and GitHub code scanning reads it as one. Relative paths are taken from the current folder."""
    return Path(os.path.abspath(path)).as_uri()


def _help(rule_id: str, rules: RuleSet) -> dict[str, str]:
    rule = rules.get(rule_id)
    text = rule.hover.strip() if rule else rule_id
    return {"text": text, "markdown": text}  # SARIF requires `text`; `markdown` is the rich form


def to_sarif(results: Sequence[tuple[str, Finding]], rules: RuleSet) -> str:
    used = sorted({f.rule for _, f in results})
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "rewind-lsp",
                "version": __version__,
                "rules": [
                    {
                        "id": rid,
                        "shortDescription": {"text": r.title if (r := rules.get(rid)) else rid},
                        "help": _help(rid, rules),
                    }
                    for rid in used
                ],
            }},
            # Our columns are 1-based and count characters (code points), not UTF-16 units.
            "columnKind": "unicodeCodePoints",
            "results": [
                {
                    "ruleId": f.rule,
                    "level": _SARIF_LEVEL[f.severity],
                    "message": {"text": redact(f.message)},
                    "locations": [{"physicalLocation": {
                        "artifactLocation": {"uri": sarif_uri(path)},
                        "region": {
                            "startLine": f.start.line, "startColumn": f.start.column,
                            "endLine": f.end.line, "endColumn": f.end.column,
                        },
                    }}],
                    **({"properties": {"tool_use_id": f.tool_use_id}} if f.tool_use_id else {}),
                }
                for path, f in results
            ],
        }],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)
