"""Rules as data: one TOML file per rule, with its fix page in markdown beside it.

Shipped rules live in the package's `rules/` folder; users add folders of their own.
Every log pattern is compiled with RE2, a linear-time engine: patterns from users run on
untrusted log lines and must never backtrack catastrophically.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import re2

from .findings import Severity

RULE_ID_PATTERN = r"[a-z0-9][a-z0-9-]*"  # the whole id (re.fullmatch)

# Rule folders are hostile input (a cloned project's workspace settings can name one): these
# bound what one can make the loader and the log scanner do. Documented in docs/CONTRACT.md.
MAX_RULE_FILE_BYTES = 1_000_000  # a rule file or its fix page
MAX_PATTERN_BYTES = 4096  # one pattern or not_pattern, in UTF-8
MAX_USER_PATTERNS = 200  # patterns + not_patterns over all user rule folders
# RE2 program size (instructions): the cost per character scanned once RE2's DFA gives up (the
# largest shipped pattern is ~220; `(.*){1,1000}z` is ~11000 and costs ~11 s on a 100 KB line).
MAX_PROGRAM_SIZE = 500
RE2_MAX_MEM = 8 << 20  # RE2's own default, stated so that it cannot drift


class RuleError(Exception):
    """A rule file that cannot be used; the message names the file and the field."""


# The schema is checked with msgspec, not pydantic: importing pydantic and building these models
# cost 80-120 ms on the server's way to its first diagnostics (rules load on the first check).
class Link(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    title: str
    url: str


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The schema of a rule file."""

    id: str
    title: Annotated[str, msgspec.Meta(min_length=1)]
    severity: str = "error"
    applies_to: list[str] = msgspec.field(default_factory=lambda: ["log"])  # "log", "transcript"
    patterns: list[str] = msgspec.field(default_factory=list)
    # A line matching any of these is not a finding of this rule (near misses).
    not_patterns: list[str] = msgspec.field(default_factory=list)
    # Also match a message the terminal soft-wrapped onto indented continuation lines, even
    # mid-word (what every rule did before the field existed); false: only what one line shows.
    wrap: bool = True
    hover: Annotated[str, msgspec.Meta(min_length=1)]
    fix_page: str | None = None  # markdown file beside the rule; default "<id>.md"
    links: list[Link] = msgspec.field(default_factory=list)


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED = re.compile(r"(?:unknown|missing required) field `(?P<name>[^`]*)`")


def _schema_problem(exc: msgspec.ValidationError) -> str:
    """msgspec's message ("Expected `str`, got `int` - at `$.links[0].url`") as "field 'links.0.url': …"."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any text
    message, path = match["msg"], match["path"] or ""
    where = [part for part in re.split(r"[.\[\]]+", path) if part]
    named = _NAMED.search(message)
    if named:
        where.append(named["name"])
    return f"field '{'.'.join(where) or '(top)'}': {message}"


def _check_spec(spec: RuleSpec) -> str | None:
    """What msgspec's types do not say: the id's shape, the severity's and the targets' words."""
    if not re.fullmatch(RULE_ID_PATTERN, spec.id):
        return (f"field 'id': {spec.id!r} is not a rule id (lowercase letters, digits and '-', "
                "starting with a letter or a digit)")
    try:
        Severity.parse(spec.severity)
    except ValueError as exc:
        return f"field 'severity': {exc}"
    bad = [x for x in spec.applies_to if x not in ("log", "transcript")]
    if bad:
        return f"field 'applies_to': unknown target(s) {bad}: use 'log' or 'transcript'"
    return None


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
    size = len(pattern.encode("utf-8", "surrogatepass"))
    if size > MAX_PATTERN_BYTES:
        raise RuleError(f"{where}: a pattern of {size} bytes is over the limit of {MAX_PATTERN_BYTES} bytes")
    options = re2.Options()
    options.max_mem = RE2_MAX_MEM
    try:
        compiled = re2.compile(pattern, options)
    except Exception as exc:  # re2.error has no stable public base across versions
        raise RuleError(f"{where}: not a valid RE2 pattern {pattern!r}: {exc}") from None
    program = max(compiled.programsize, compiled.reverseprogramsize)
    if program > MAX_PROGRAM_SIZE:
        raise RuleError(f"{where}: pattern {pattern!r} compiles to an RE2 program of {program} instructions, "
                        f"over the limit of {MAX_PROGRAM_SIZE} (it would be slow on long lines)")
    return compiled


def read_rule_text(path: Path) -> str:
    """A rule file's (or fix page's) text, read only from a regular file of at most
    MAX_RULE_FILE_BYTES: never block on a FIFO, never read a device such as /dev/zero."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise RuleError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:  # a NUL in the name
        raise RuleError(f"{path}: cannot read: bad file name") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RuleError(f"{path}: not a regular file")
        if info.st_size > MAX_RULE_FILE_BYTES:
            raise RuleError(f"{path}: {info.st_size} bytes, over the limit of {MAX_RULE_FILE_BYTES} bytes "
                            "for a rule file")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_RULE_FILE_BYTES:  # it grew after fstat
                raise RuleError(f"{path}: over the limit of {MAX_RULE_FILE_BYTES} bytes for a rule file")
    except OSError as exc:
        raise RuleError(f"{path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise RuleError(f"{path}: not UTF-8 text") from None


def too_many_patterns(path: Path) -> str:
    return (f"{path}: more than {MAX_USER_PATTERNS} patterns in all user rule folders "
            "(patterns and not_patterns together)")


def load_rule(path: Path) -> Rule:
    try:
        raw = tomllib.loads(read_rule_text(path))
    except OSError as exc:
        raise RuleError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise RuleError(f"{path}: not valid TOML: nested too deeply") from None
    try:
        spec = msgspec.convert(raw, RuleSpec)
    except msgspec.ValidationError as exc:
        raise RuleError(f"{path}: {_schema_problem(exc)}") from None
    problem = _check_spec(spec)
    if problem:
        raise RuleError(f"{path}: {problem}")
    if len(spec.patterns) + len(spec.not_patterns) > MAX_USER_PATTERNS:  # before compiling them all
        raise RuleError(too_many_patterns(path))
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
        fix_markdown = read_rule_text(fix_path)
    except RuleError as exc:
        reason = str(exc).removeprefix(f"{fix_path}: ")
        raise RuleError(f"{path}: field 'fix_page': no readable UTF-8 fix page at {fix_path!s} ({reason})") from None
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
            self.by_id[r.id] = r  # a later user rule replaces an earlier one with its id

    def get(self, rule_id: str) -> Rule | None:
        return self.by_id.get(rule_id)

    def for_logs(self) -> list[Rule]:
        return [r for r in self.by_id.values() if "log" in r.applies_to and r.patterns]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.by_id.values())

    def __len__(self) -> int:
        return len(self.by_id)


def _rule_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise RuleError(f"{folder}: rule folder not found")
    return sorted(folder.glob("*.toml"))


def load_rules(extra_dirs: Iterable[str | Path] = ()) -> RuleSet:
    """Shipped rules, then each user folder in order (a later user rule replaces an earlier
    user rule by id; a shipped id cannot be redefined: that would hide real breakage)."""
    rules = [load_rule(path) for path in _rule_files(builtin_rules_dir())]
    shipped = {r.id for r in rules}
    user_patterns = 0
    for folder in map(Path, extra_dirs):
        for path in _rule_files(folder):
            rule = load_rule(path)
            if rule.id in shipped:
                raise RuleError(f"{path}: rule id '{rule.id}' is a shipped rule and cannot be redefined "
                                "(change its severity with the 'severity' setting instead)")
            user_patterns += len(rule.patterns) + len(rule.not_patterns)
            if user_patterns > MAX_USER_PATTERNS:
                raise RuleError(too_many_patterns(path))
            rules.append(rule)
    return RuleSet(rules)


_default: RuleSet | None = None


def default_rules() -> RuleSet:
    global _default
    if _default is None:
        _default = load_rules()
    return _default
