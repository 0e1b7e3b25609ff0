"""Rule folders are hostile input (a cloned project's workspace settings can set `ruleDirs`):
only regular files of at most 1 MB are read (never a FIFO, never /dev/zero), a shipped rule id
cannot be redefined, and patterns are bounded in size, count and RE2 program size."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rewind_lsp.rules import (
    MAX_PATTERN_BYTES,
    MAX_RULE_FILE_BYTES,
    MAX_USER_PATTERNS,
    RuleError,
    load_rules,
)

GOOD = '''id = "{id}"
title = "My own rule"
severity = "warning"
patterns = [{patterns}]
hover = "The frobnicator exploded."
'''


def _rule(folder: Path, rule_id: str = "my-rule", patterns: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    quoted = ", ".join(f"'{p}'" for p in (patterns if patterns is not None else ["frobnicator"]))
    path = folder / f"{rule_id}.toml"
    path.write_text(GOOD.format(id=rule_id, patterns=quoted), encoding="utf-8")
    (folder / f"{rule_id}.md").write_text("# Fix\n", encoding="utf-8")
    return path


def _refused(folder: Path) -> str:
    with pytest.raises(RuleError) as exc:
        load_rules([folder])
    return str(exc.value)


def test_a_symlink_to_dev_zero_is_refused_without_reading_it(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "zero.toml").symlink_to("/dev/zero")
    assert _refused(folder) == f"{folder / 'zero.toml'}: not a regular file"


@pytest.mark.timeout(5)
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    os.mkfifo(folder / "pipe.toml")
    started = time.monotonic()
    assert _refused(folder) == f"{folder / 'pipe.toml'}: not a regular file"
    assert time.monotonic() - started < 5


@pytest.mark.timeout(5)
def test_a_fifo_as_fix_page_is_refused_without_blocking(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    path = _rule(folder)
    (folder / "my-rule.md").unlink()
    os.mkfifo(folder / "my-rule.md")
    assert _refused(folder) == (f"{path}: field 'fix_page': no readable UTF-8 fix page at {folder / 'my-rule.md'} "
                                "(not a regular file)")


def test_a_missing_fix_page_says_so(tmp_path: Path) -> None:
    path = _rule(tmp_path / "rules")
    (tmp_path / "rules" / "my-rule.md").unlink()
    assert _refused(tmp_path / "rules") == (f"{path}: field 'fix_page': no readable UTF-8 fix page at "
                                            f"{tmp_path / 'rules' / 'my-rule.md'} (cannot read: No such file or "
                                            "directory)")


def test_an_oversize_rule_file_is_refused(tmp_path: Path) -> None:
    path = _rule(tmp_path / "rules")
    with path.open("a", encoding="utf-8") as f:
        f.write("#" * MAX_RULE_FILE_BYTES + "\n")
    size = path.stat().st_size
    assert _refused(tmp_path / "rules") == (f"{path}: {size} bytes, over the limit of 1000000 bytes "
                                            "for a rule file")


def test_a_rule_file_of_exactly_the_cap_loads(tmp_path: Path) -> None:
    path = _rule(tmp_path / "rules")
    pad = MAX_RULE_FILE_BYTES - path.stat().st_size - 1
    with path.open("a", encoding="utf-8") as f:
        f.write("#" * pad + "\n")
    assert path.stat().st_size == MAX_RULE_FILE_BYTES
    assert load_rules([tmp_path / "rules"]).get("my-rule") is not None


@pytest.mark.parametrize("shipped", ["orphan-tool-use", "tool-use-concurrency-400"])
def test_redefining_a_shipped_rule_id_is_refused(tmp_path: Path, shipped: str) -> None:
    path = _rule(tmp_path / "rules", rule_id=shipped)
    path.write_text(path.read_text().replace('severity = "warning"', 'severity = "hint"'))
    assert _refused(tmp_path / "rules") == (
        f"{path}: rule id '{shipped}' is a shipped rule and cannot be redefined "
        "(change its severity with the 'severity' setting instead)")


def test_a_too_large_pattern_is_refused(tmp_path: Path) -> None:
    big = "a" * (MAX_PATTERN_BYTES + 1)
    path = _rule(tmp_path / "rules", patterns=[big])
    assert _refused(tmp_path / "rules") == (f"{path}: field 'patterns': a pattern of 4097 bytes is over the "
                                            "limit of 4096 bytes")


def test_a_pattern_of_exactly_the_limit_loads(tmp_path: Path) -> None:
    # One character class: 4096 bytes that compile to a small RE2 program.
    _rule(tmp_path / "rules", patterns=["[" + "a" * (MAX_PATTERN_BYTES - 2) + "]"])
    assert load_rules([tmp_path / "rules"]).get("my-rule") is not None


def test_too_many_patterns_in_one_file_are_refused(tmp_path: Path) -> None:
    path = _rule(tmp_path / "rules", patterns=[f"word{i}" for i in range(MAX_USER_PATTERNS + 1)])
    assert _refused(tmp_path / "rules") == (f"{path}: more than 200 patterns in all user rule folders "
                                            "(patterns and not_patterns together)")


def test_too_many_patterns_over_several_folders_are_refused(tmp_path: Path) -> None:
    _rule(tmp_path / "a", rule_id="first", patterns=[f"word{i}" for i in range(150)])
    last = _rule(tmp_path / "b", rule_id="second", patterns=[f"other{i}" for i in range(51)])
    with pytest.raises(RuleError) as exc:
        load_rules([tmp_path / "a", tmp_path / "b"])
    assert str(exc.value) == (f"{last}: more than 200 patterns in all user rule folders "
                              "(patterns and not_patterns together)")
    _rule(tmp_path / "b", rule_id="second", patterns=[f"other{i}" for i in range(50)])
    assert len(load_rules([tmp_path / "a", tmp_path / "b"])) > 2


def test_a_pattern_with_a_huge_re2_program_is_refused(tmp_path: Path) -> None:
    # ~11000 RE2 instructions: ~11 s on one 100 KB line once RE2's DFA gives up.
    path = _rule(tmp_path / "rules", patterns=["(.*){1,1000}z"])
    assert _refused(tmp_path / "rules") == (
        f"{path}: field 'patterns': pattern '(.*){{1,1000}}z' compiles to an RE2 program of 11004 "
        "instructions, over the limit of 500 (it would be slow on long lines)")


@pytest.mark.timeout(5)
def test_the_cli_refuses_a_fifo_rule_folder_quickly_and_clearly(tmp_path: Path) -> None:
    folder = tmp_path / "cloned project rules"
    folder.mkdir()
    os.mkfifo(folder / "pipe.toml")
    log = tmp_path / "t.log"
    log.write_text("fine\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "rewind_lsp", "check", "--rule-dir", str(folder), str(log)],
                          capture_output=True, text=True, timeout=5)
    assert proc.stderr == f"rewind-lsp: bad rule: {folder / 'pipe.toml'}: not a regular file\n"
    assert proc.returncode == 2 and proc.stdout == ""
