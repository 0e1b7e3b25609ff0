"""Typed settings, from initializationOptions and the `rewind-lsp` configuration section."""

from __future__ import annotations

import os
import stat
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from ..check import claude_projects_dir
from ..findings import Severity
from ..paths import user_log_dir

SECTION = "rewind-lsp"


def default_watch_roots() -> list[str]:
    return [str(claude_projects_dir()), str(user_log_dir())]


class Settings(BaseModel):
    """The public setting names are camelCase: watchRoots, logGlobs, ruleDirs, disabledRules, severity,
    notifications."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    watch_roots: list[str] = Field(default_factory=default_watch_roots)
    log_globs: list[str] = Field(default_factory=lambda: ["*.log"])
    rule_dirs: list[str] = Field(default_factory=list)
    disabled_rules: list[str] = Field(default_factory=list)
    severity: dict[str, str] = Field(default_factory=dict)
    notifications: bool = True
    inlay_hints: bool = True  # `messages.N` at the start of each line of the live conversation

    @field_validator("severity")
    @classmethod
    def _levels(cls, v: dict[str, str]) -> dict[str, str]:
        for rule, level in v.items():
            try:
                Severity.parse(level)
            except ValueError:
                raise ValueError(
                    f"severity of {rule!r}: {level!r} is not error, warning, information or hint"
                ) from None
        return v

    def severity_for(self, rule: str) -> Severity | None:
        level = self.severity.get(rule)
        return Severity.parse(level) if level else None


def parse_settings(raw: Any) -> tuple[Settings, str | None]:
    """Settings from a client's payload; on bad input, the defaults and a message saying what was wrong."""
    if raw is None:
        return Settings(), None
    if isinstance(raw, dict) and SECTION in raw and isinstance(raw[SECTION], dict):
        raw = raw[SECTION]  # {"rewind-lsp": {...}} as sent by didChangeConfiguration
    if not isinstance(raw, dict):
        return Settings(), f"rewind-lsp settings must be an object, got {type(raw).__name__}; using the defaults"
    known = {k: v for k, v in raw.items() if v is not None}
    try:
        return Settings.model_validate(known), None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        good = {k: v for k, v in known.items() if k not in bad}
        try:
            settings = Settings.model_validate(good)
        except ValidationError:
            settings = Settings()
        return settings, f"rewind-lsp: bad settings ({problems}); using the defaults for {', '.join(sorted(bad))}"


def rule_dir_problem(folder: str) -> str | None:
    """Why a `ruleDirs` entry cannot be used, or None: it must be an absolute path to a real folder whose
    `*.toml` files are regular files (a FIFO would block the rules loader in open(), a device never end)."""
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
    return None
