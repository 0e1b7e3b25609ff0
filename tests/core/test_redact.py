"""What `redact` hides and what it leaves: whole outputs, keys glued to what precedes them, and
words that only look like the start of a key."""

from __future__ import annotations

import pytest

from rewind_lsp.redact import redact

A36 = "Kp3xQ9wLm2Zr8TvB6nYc4HsJ1dFg7AeU5oWi"


@pytest.mark.parametrize(("text", "shown"), [
    ("key sk-ant-api03-Zx9Qw8Er7Ty6Ui5Op4", "key sk-ant-…[redacted]"),
    (f"toolu_ghp_{A36}", "toolu_gh…[redacted]"),
    (f"toolu_01ghp_{A36} failed", "toolu_01gh…[redacted] failed"),
    (f"x github_pat_11AB{A36}", "x github_pat_…[redacted]"),
    ("toolu_9AKIAV3NB8QX2LM7KT4RY", "toolu_9AKIA…[redacted]"),
    ("ASIAV3NB8QX2LM7KT4RYZZ, then", "AKIA…[redacted], then"),
    (f"toolu_01sk-proj-{A36}", "toolu_01sk-…[redacted]"),
    (f"id9sk-{A36}", "id9sk-…[redacted]"),
    ("token xoxb-1234567890-abc", "token xox…[redacted]"),
    ("Authorization: Bearer abcdef123456789", "Authorization: Bearer [redacted]"),
    ("ANTHROPIC_API_KEY=abcd1234efgh", "ANTHROPIC_API_KEY=[redacted]"),
    ("mail jane.doe@example.com", "mail [email redacted]"),
    ("use sk-abcdefghijklmnopqrstu", "use sk-…[redacted]"),
    ("write to <jane.doe@example.com>.", "write to <[email redacted]>."),
    ("DB_PASSWD=hunter22 GH_TOKEN: abcd1234", "DB_PASSWD=[redacted] GH_TOKEN:[redacted]"),
    ("AWS_CREDENTIALS=abcd1234 MY_SECRET=abcd1234", "AWS_CREDENTIALS=[redacted] MY_SECRET=[redacted]"),
])
def test_secrets_are_hidden(text: str, shown: str) -> None:
    assert redact(text) == shown


@pytest.mark.parametrize("text", [
    "disk-usage-monitoring-tool",  # `sk-` inside a word, short and hyphenated: no key
    "task-abcdefghijklmnopqrstu",
    "MAKIAN and AKIA12",  # too short for an access key id
    "ghp_short",
    "toolu_01ABCdefGHIjklMNOpqrSTUv",  # an ordinary tool_use id
    "messages.14: tool_use ids were found without tool_result blocks",
    # A folder named like an e-mail address (SSSD's default home is /home/user@domain): a printed
    # command must still run.
    "cd '/home/jdoe@corp.example.com/app' && claude --resume 1",
    "/home/jdoe@corp.example.com",
    "cd '/home/me/sk-tools-and-scripts-2026/app' && claude --resume 1",
    r"C:\Users\jdoe@corp.example.com\.claude",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text
