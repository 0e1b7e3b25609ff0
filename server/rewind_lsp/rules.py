"""Rules as data: one TOML file per rule, with its fix page in markdown beside it.

Shipped rules live in the package's `rules/` folder; users add folders of their own.
Every log pattern is compiled with RE2, a linear-time engine: patterns from users run on
untrusted log lines and must never backtrack catastrophically.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import re2
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .findings import Severity

RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"


class RuleError(Exception):
    """A rule file that cannot be used; the message names the file and the field."""


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    url: str


class RuleSpec(BaseModel):
    """The schema of a rule file."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=RULE_ID_PATTERN)
    title: str = Field(min_length=1)
    severity: str = "error"
    applies_to: list[str] = Field(default_factory=lambda: ["log"])  # "log", "transcript"
    patterns: list[str] = Field(default_factory=list)
    # A line matching any of these is not a finding of this rule (near misses).
    not_patterns: list[str] = Field(default_factory=list)
    # Also match a message the terminal soft-wrapped onto indented continuation lines, even
    # mid-word (what every rule did before the field existed); false: only what one line shows.
    wrap: bool = True
    hover: str = Field(min_length=1)
    fix_page: str | None = None  # markdown file beside the rule; default "<id>.md"
    links: list[Link] = Field(default_factory=list)

    @field_validator("severity")
    @classmethod
    def _severity(cls, v: str) -> str:
        Severity.parse(v)
        return v

    @field_validator("applies_to")
    @classmethod
    def _applies(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in ("log", "transcript")]
        if bad:
            raise ValueError(f"unknown target(s) {bad}: use 'log' or 'transcript'")
        return v


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: Severity
    applies_to: tuple[str, ...]
    patterns: tuple[Any, ...]  # compiled re2 patterns
    not_patterns: tuple[Any, ...]
    hover: str
    fix_markdown: str
    fix_path: Path
    links: tuple[Link, ...]
    source: Path
    wrap: bool = True  # see RuleSpec.wrap

    @property
    def fix_uri(self) -> str:
        return self.fix_path.resolve().as_uri()


def _compile(pattern: str, where: str) -> Any:
    try:
        return re2.compile(pattern)
    except Exception as exc:  # re2.error has no stable public base across versions
        raise RuleError(f"{where}: not a valid RE2 pattern {pattern!r}: {exc}") from None


def load_rule(path: Path) -> Rule:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RuleError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise RuleError(f"{path}: not valid TOML: nested too deeply") from None
    try:
        spec = RuleSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '(top)'}': {err['msg']}" for err in exc.errors()
        )
        raise RuleError(f"{path}: {problems}") from None
    fix_path = path.parent / (spec.fix_page or f"{spec.id}.md")
    # The fix page is opened in the user's editor: a rule (from a cloned project's ruleDirs, say)
    # must not point it at a file outside its own folder.
    try:
        inside = fix_path.resolve().is_relative_to(path.parent.resolve())
    except (OSError, ValueError, RuntimeError):
        inside = False
    if not inside:
        raise RuleError(f"{path}: field 'fix_page': {spec.fix_page!r} is outside the rule's folder")
    try:
        fix_markdown = fix_path.read_text(encoding="utf-8")
    except (OSError, ValueError):  # ValueError: a NUL in the name; UnicodeDecodeError: not UTF-8
        raise RuleError(f"{path}: field 'fix_page': no readable UTF-8 fix page at {fix_path!s}") from None
    return Rule(
        id=spec.id,
        title=spec.title,
        severity=Severity.parse(spec.severity),
        applies_to=tuple(spec.applies_to),
        patterns=tuple(_compile(p, f"{path}: field 'patterns'") for p in spec.patterns),
        not_patterns=tuple(_compile(p, f"{path}: field 'not_patterns'") for p in spec.not_patterns),
        hover=spec.hover,
        fix_markdown=fix_markdown,
        fix_path=fix_path,
        links=tuple(spec.links),
        source=path,
        wrap=spec.wrap,
    )


def builtin_rules_dir() -> Path:
    """The rules shipped in the wheel, or the repository's `rules/` in a development checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "rules"
    if packaged.is_dir():
        return packaged
    return here.parent.parent / "rules"


class RuleSet:
    def __init__(self, rules: Iterable[Rule]) -> None:
        self.by_id: dict[str, Rule] = {}
        for r in rules:
            self.by_id[r.id] = r  # a user rule with a shipped id replaces the shipped one

    def get(self, rule_id: str) -> Rule | None:
        return self.by_id.get(rule_id)

    def for_logs(self) -> list[Rule]:
        return [r for r in self.by_id.values() if "log" in r.applies_to and r.patterns]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.by_id.values())

    def __len__(self) -> int:
        return len(self.by_id)


def load_rules(extra_dirs: Iterable[str | Path] = ()) -> RuleSet:
    """Shipped rules, then each user folder in order (later ones override by id)."""
    rules: list[Rule] = []
    for folder in [builtin_rules_dir(), *map(Path, extra_dirs)]:
        if not folder.is_dir():
            raise RuleError(f"{folder}: rule folder not found")
        for path in sorted(folder.glob("*.toml")):
            rules.append(load_rule(path))
    return RuleSet(rules)


_default: RuleSet | None = None


def default_rules() -> RuleSet:
    global _default
    if _default is None:
        _default = load_rules()
    return _default
