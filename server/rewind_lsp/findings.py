"""What every checker reports: a finding at an exact place in a file."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace


class Severity(enum.IntEnum):
    """Ordered like LSP's DiagnosticSeverity: lower is more severe."""

    ERROR = 1
    WARNING = 2
    INFORMATION = 3
    HINT = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r}: use error, warning, information or hint") from None


@dataclass(frozen=True, slots=True)
class Position:
    """1-based line; 1-based column in characters; the 0-based UTF-16 column LSP wants by default, and
    the 0-based UTF-8 column (bytes) for clients that negotiate UTF-8. `utf8` is UNKNOWN_COLUMN when the
    checker that made the position did not compute it: the server then counts it from the line's text."""

    line: int
    column: int
    utf16: int
    utf8: int = -1  # UNKNOWN_COLUMN


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    start: Position
    end: Position
    tool_use_id: str | None = None
    # Other places that explain this one (a tool_use and its missing partner), as (position, note).
    related: tuple[tuple[Position, str], ...] = ()
    # Free-form facts the hover and fix steps can quote (messages index, ids, session id).
    facts: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def with_severity(self, severity: Severity) -> Finding:
        return replace(self, severity=severity)

    @property
    def sort_key(self) -> tuple[int, int, str]:
        return (self.start.line, self.start.column, self.rule)


UNKNOWN_COLUMN = -1


def line_position(line: int, text: str, char_index: int) -> Position:
    """Position of the character at `char_index` (0-based) of a line's decoded text."""
    prefix = text[:char_index]
    if prefix.isascii():
        return Position(line, char_index + 1, char_index, char_index)
    utf16 = len(prefix.encode("utf-16-le", errors="surrogatepass")) // 2
    utf8 = len(prefix.encode("utf-8", errors="surrogatepass"))
    return Position(line, char_index + 1, utf16, utf8)


def utf8_column(text: str, column: int) -> int:
    """The 0-based UTF-8 column of 1-based character column `column` of a line's text."""
    prefix = text[: max(column - 1, 0)]
    return len(prefix) if prefix.isascii() else len(prefix.encode("utf-8", errors="surrogatepass"))
