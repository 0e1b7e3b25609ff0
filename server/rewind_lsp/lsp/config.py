"""Typed settings, from initializationOptions and the `rewind-lsp` configuration section."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace
from typing import Any

from ..check import claude_projects_dir, codex_sessions_dir
from ..findings import Severity
from ..paths import user_log_dir
from .fileio import real_inside

# Checked by hand, not with pydantic: importing pydantic and building a model cost ~0.2 s between
# `initialized` and the first diagnostics of every editor start.

SECTION = "rewind-lsp"
_LISTS = ("watch_roots", "log_globs", "rule_dirs", "disabled_rules")


def default_watch_roots() -> list[str]:
    """Claude Code's projects, the terminal logs, and Codex's sessions when Codex is installed."""
    codex = codex_sessions_dir()
    return [str(claude_projects_dir()), str(user_log_dir()), *([str(codex)] if codex.is_dir() else [])]


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class Settings:
    """The public setting names are camelCase: watchRoots, logGlobs, ruleDirs, disabledRules, severity,
    notifications, inlayHints (snake_case is accepted too)."""

    watch_roots: list[str] = field(default_factory=default_watch_roots)
    log_globs: list[str] = field(default_factory=lambda: ["*.log"])
    rule_dirs: list[str] = field(default_factory=list)
    disabled_rules: list[str] = field(default_factory=list)
    severity: dict[str, str] = field(default_factory=dict)
    notifications: bool = True
    inlay_hints: bool = True  # `messages.N` at the start of each line of the live conversation

    def severity_for(self, rule: str) -> Severity | None:
        level = self.severity.get(rule)
        return Severity.parse(level) if level else None

    def model_copy(self, update: dict[str, Any]) -> Settings:
        return replace(self, **update)


def _problem(name: str, value: Any) -> str | None:
    """What is wrong with one setting's value, or None."""
    if name in _LISTS:
        if not isinstance(value, list):
            return "Input should be a valid list"
        if not all(isinstance(x, str) for x in value):
            return "Input should be a valid string (every item)"
        return None
    if name == "severity":
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return "Input should be an object of rule ids to severities"
        for rule, level in value.items():
            try:
                Severity.parse(level)
            except ValueError:
                return f"Value error, severity of {rule!r}: {level!r} is not error, warning, information or hint"
        return None
    if not isinstance(value, bool):
        return "Input should be a valid boolean"
    return None


def parse_settings(raw: Any) -> tuple[Settings, str | None]:
    """Settings from a client's payload; on bad input, the defaults and a message saying what was wrong."""
    if raw is None:
        return Settings(), None
    if isinstance(raw, dict) and SECTION in raw and isinstance(raw[SECTION], dict):
        raw = raw[SECTION]  # {"rewind-lsp": {...}} as sent by didChangeConfiguration
    if not isinstance(raw, dict):
        return Settings(), f"rewind-lsp settings must be an object, got {type(raw).__name__}; using the defaults"
    names = {_camel(n): n for n in (*_LISTS, "severity", "notifications", "inlay_hints")}
    names.update({n: n for n in names.values()})
    good: dict[str, Any] = {}
    problems: list[str] = []
    bad: set[str] = set()
    for key, value in raw.items():
        name = names.get(key) if isinstance(key, str) else None
        if name is None or value is None:
            continue  # unknown settings are ignored, as a null is
        why = _problem(name, value)
        if why is None:
            good[name] = list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
        else:
            problems.append(f"{key}: {why}")
            bad.add(str(key))
    settings = Settings(**good)
    if not problems:
        return settings, None
    shown = ", ".join(sorted(bad))
    return settings, f"rewind-lsp: bad settings ({'; '.join(problems)}); using the defaults for {shown}"


OUTSIDE_ROOTS = "outside the workspace folders and your home folder"


def rule_dir_problem(folder: str, roots: list[str]) -> str | None:
    """Why a `ruleDirs` entry cannot be used, or None: it must be an absolute path to a real folder whose
    `*.toml` files are regular files (a FIFO would block the rules loader in open(), a device never end),
    and lie, links resolved, in one of `roots` (the workspace folders and the home folder: a cloned
    project's settings can name any path)."""
    if not os.path.isabs(folder):
        return "not an absolute path"
    try:
        if not stat.S_ISDIR(os.stat(folder).st_mode):
            return "not a folder"
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".toml") and not stat.S_ISREG(os.stat(entry.path).st_mode):
                    return f"{entry.name} in it is not a regular file"
    except OSError as exc:
        return exc.strerror or str(exc)
    if real_inside(folder, roots) is None:
        return OUTSIDE_ROOTS
    return None
