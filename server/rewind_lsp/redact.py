"""Remove secrets from text before it is shown, logged or put in a bug report."""

from __future__ import annotations

import re

_PATTERNS = [
    # Anthropic keys and OAuth tokens.
    (re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"), "sk-ant-…[redacted]"),
    # Other common API key shapes (OpenAI-style, GitHub, AWS access keys, Slack).
    # Not `\b`: an underscore before a key (`toolu_ghp_…`, a planted id) must not hide it.
    (re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{16,}"), "sk-…[redacted]"),
    (re.compile(r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{20,}"), "gh…[redacted]"),
    (re.compile(r"(?<![A-Za-z0-9])AKIA[0-9A-Z]{16}(?![A-Z0-9])"), "AKIA…[redacted]"),
    (re.compile(r"(?<![A-Za-z0-9])xox[baprs]-[A-Za-z0-9-]{10,}"), "xox…[redacted]"),
    # Bearer tokens and Authorization headers.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 [redacted]"),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{8,}"), r"\1[redacted]"),
    # KEY=value lines of env dumps whose name says secret.
    (re.compile(r"(?im)\b([A-Z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)[A-Z0-9_]*)\s*([=:])\s*[\"']?[^\s\"']{4,}"),
     r"\1\2[redacted]"),
    # E-mail addresses.
    (re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b"), "[email redacted]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
