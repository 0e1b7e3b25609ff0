"""Remove secrets from text before it is shown, logged or put in a bug report."""

from __future__ import annotations

import re

_PATTERNS = [
    # Anthropic keys and OAuth tokens.
    (re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"), "sk-ant-…[redacted]"),
    # Other common API key shapes (OpenAI-style, GitHub, AWS access keys, Slack). Not `\b`, and
    # nothing required before a key whose own shape is distinctive: a planted id glues one to
    # whatever precedes it (`toolu_01ghp_…`, `toolu_9AKIA…`).
    (re.compile(r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{16,}"), "sk-…[redacted]"),
    (re.compile(r"sk-[A-Za-z0-9]{32,}"), "sk-…[redacted]"),
    # A short `sk-…` only on its own: `task-…`, `disk-…` are words, not keys, and `/sk-tools-for-x/`
    # is a folder (a printed command with it redacted would not run).
    (re.compile(r"(?<![A-Za-z0-9/\\])sk-[A-Za-z0-9_\-]{16,}"), "sk-…[redacted]"),
    (re.compile(r"github_pat_[A-Za-z0-9_]{22,}"), "github_pat_…[redacted]"),
    (re.compile(r"gh[pousr]_[A-Za-z0-9]{20,}"), "gh…[redacted]"),
    (re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16,}"), "AKIA…[redacted]"),
    (re.compile(r"xox[baprs]-[A-Za-z0-9-]{10,}"), "xox…[redacted]"),
    # Bearer tokens and Authorization headers.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 [redacted]"),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{8,}"), r"\1[redacted]"),
    # KEY=value lines of env dumps whose name says secret.
    (re.compile(r"(?im)\b([A-Z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)[A-Z0-9_]*)\s*([=:])\s*[\"']?[^\s\"']{4,}"),
     r"\1\2[redacted]"),
    # E-mail addresses, but not a folder of a path: a home folder can be named like one (SSSD's
    # default is `/home/user@domain`), and a printed command with it redacted would not run.
    (re.compile(r"(?<![/\\\w.%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b(?![/\\\w\-]|\.\w)"),
     "[email redacted]"),
]


# Something every pattern above needs: one scan of a text that holds none (most) instead of ten.
# (On the lowered text: far faster than `(?i)` over an alternation.)
_ANY = re.compile(r"sk-|gh[pousr]_|github_pat_|akia|asia|xox|bearer|authorization|key|token|secret|passw"
                  r"|credential|@")


def redact(text: str) -> str:
    if not _ANY.search(text.lower()):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
