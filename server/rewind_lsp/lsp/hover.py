"""Hover text for findings: short, the essential line first, in the client's format.

The diagnostic's sentence is already shown above the hover (VS Code) or beside it, and a small float
(Neovim) cuts off a long hover: so the first line says what is wrong in a few words, with the API
message index and the tool_use id; a few lines of facts follow; the long explanation stays behind
the fix page link. Markdown only for a client that asks for it first; others get plain text with no
markdown syntax at all (Emacs's eglot without markdown-mode).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..findings import Finding, Severity
from ..redact import redact

if TYPE_CHECKING:
    from ..rules import RuleSet

FIX_ACTIONS = "Repair (patch) or Rewind (truncate) writes a fixed copy of the session; the original stays"
MAX_RELATED = 3  # related lines shown per finding; the rest are in the diagnostic's related information


def wants_markdown(content_format: list[str] | None) -> bool:
    """Markdown when the client lists it first (or only); plain text otherwise, and when it says nothing
    (LSP: the client's preferred format comes first)."""
    return content_format is not None and content_format[:1] == ["markdown"]


def _code(text: str, markdown: bool) -> str:
    return f"`{text}`" if markdown else text


def _finding_lines(f: Finding, rules: RuleSet, markdown: bool) -> list[str]:
    rule = rules.get(f.rule)
    title = rule.title if rule else f.rule
    where = []
    if "messages_index" in f.facts:
        where.append(_code(f"messages.{f.facts['messages_index']}", markdown))
    ids = f.tool_use_id or f.facts.get("tool_use_ids")
    if ids:
        where.append(_code(str(ids), markdown))
    first = f"**{title}**" if markdown else title
    if where:
        first += ": " + ", ".join(where)
    place = f"{_code(f.rule, markdown)} ({f.severity.label}) at line {f.start.line}"
    if f.facts.get("conversation"):
        place += f", in the {f.facts['conversation']}"
    facts = [place]
    facts += [f"line {p.line}: {note}" for p, note in f.related[:MAX_RELATED]]
    if f.severity == Severity.ERROR:  # what the code actions on it do
        facts.append(FIX_ACTIONS)
    if rule:
        links = [("Fix steps", rule.fix_uri), *((link.title, link.url) for link in rule.links)]
        if markdown:
            facts.append(" · ".join(f"[{name}]({url})" for name, url in links))
        else:
            facts += [f"{name}: {url}" for name, url in links]
    if markdown:
        return [first, "", *(f"- {line}" for line in facts)]
    return [first, *facts]


def hover_text(findings: list[Finding], rules: RuleSet, markdown: bool) -> str:
    sections = ["\n".join(_finding_lines(f, rules, markdown)) for f in findings]
    return redact(("\n\n---\n\n" if markdown else "\n\n").join(sections))
