"""Rules as data: the shipped rules load, bad user rules are clear errors, user rules add to the
set and match, and every pattern runs in linear time (RE2)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from core_support import run_cli

from rewind_lsp.check import check_log_text
from rewind_lsp.findings import Severity
from rewind_lsp.rules import RuleError, builtin_rules_dir, default_rules, load_rule, load_rules

PUBLIC_IDS = {
    "orphan-tool-use", "orphan-tool-result", "duplicate-tool-use-id", "tool-result-not-first", "malformed-line",
    "tool-use-concurrency-400", "rate-limit-429", "overloaded-529", "auth-401-403", "prompt-too-long",
    "api-error-500", "syntax-error-unexpected-token",
    # Codex CLI sessions (issue 15)
    "codex-orphan-call", "codex-orphan-output", "codex-duplicate-call-id", "codex-tool-pairing-400",
}

GOOD = '''id = "my-rule"
title = "My own rule"
severity = "warning"
patterns = ['frobnicator\\s+exploded']
hover = "The frobnicator exploded."
'''


def test_shipped_rules_load_with_every_public_id() -> None:
    rules = load_rules()
    assert {r.id for r in rules} == PUBLIC_IDS
    for r in rules:
        assert r.title and r.hover.strip() and r.fix_markdown.strip()
        assert r.fix_path.is_file() and r.fix_uri.startswith("file://")
        assert r.source.parent == builtin_rules_dir()
    assert rules.get("orphan-tool-use").severity == Severity.ERROR  # type: ignore[union-attr]
    assert rules.get("malformed-line").severity == Severity.WARNING  # type: ignore[union-attr]
    log_ids = {r.id for r in rules.for_logs()}
    assert "tool-use-concurrency-400" in log_ids and "orphan-tool-use" not in log_ids


def test_fix_pages_cover_the_steps() -> None:
    page = default_rules().get("tool-use-concurrency-400").fix_markdown.lower()  # type: ignore[union-attr]
    for word in ("rewind", "resume", "version"):
        assert word in page


def _write_rule(folder: Path, body: str, name: str = "my-rule", page: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{name}.toml"
    p.write_text(body, encoding="utf-8")
    if page:
        (folder / f"{name}.md").write_text("# Fix\n1. do this\n", encoding="utf-8")
    return p


@pytest.mark.parametrize(("body", "field", "page"), [
    ('id = "my-rule"\ntitle = "x\nhover = "y"\n', "TOML", True),
    (GOOD + 'colour = "red"\n', "colour", True),
    (GOOD.replace('"warning"', '"fatal"'), "severity", True),
    (GOOD.replace("frobnicator\\s+exploded", "(unclosed"), "patterns", True),
    (GOOD + "not_patterns = ['[z-a]']\n", "not_patterns", True),
    (GOOD, "fix_page", False),
    (GOOD.replace('id = "my-rule"', 'id = "My Rule!"'), "id", True),
    (GOOD.replace('hover = "The frobnicator exploded."', ""), "hover", True),
    (GOOD + 'applies_to = ["screen"]\n', "applies_to", True),
    (GOOD + "links = [{ title = \"t\" }]\n", "links", True),
])
def test_bad_user_rule_names_the_file_and_the_field(tmp_path: Path, body: str, field: str, page: bool) -> None:
    p = _write_rule(tmp_path / "rules", body, page=page)
    with pytest.raises(RuleError) as exc:
        load_rules([tmp_path / "rules"])
    message = str(exc.value)
    assert str(p) in message
    assert field in message


@pytest.mark.parametrize("case", ["nul in fix_page", "fix page not utf-8", "deeply nested toml"])
def test_hostile_rule_files_are_rule_errors_not_crashes(tmp_path: Path, case: str) -> None:
    folder = tmp_path / "rules"
    if case == "nul in fix_page":
        p = _write_rule(folder, GOOD + 'fix_page = "a\\u0000b.md"\n', page=False)
        field = "fix_page"
    elif case == "fix page not utf-8":
        p = _write_rule(folder, GOOD, page=False)
        (folder / "my-rule.md").write_bytes(b"\xff\xfe fix \xc3")
        field = "fix_page"
    else:
        p = _write_rule(folder, "patterns = " + "[" * 100_000 + "]" * 100_000 + "\n")
        field = "TOML"
    with pytest.raises(RuleError) as exc:
        load_rules([folder])
    assert str(p) in str(exc.value) and field in str(exc.value)


def test_bad_rule_via_cli_is_a_usage_error(tmp_path: Path) -> None:
    p = _write_rule(tmp_path / "rules", GOOD.replace('"warning"', '"fatal"'))
    log = tmp_path / "a.log"
    log.write_text("hello\n")
    proc = run_cli("check", "--rule-dir", str(tmp_path / "rules"), str(log))
    assert proc.returncode == 2
    assert str(p) in proc.stderr and "severity" in proc.stderr


def test_missing_rule_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="not found"):
        load_rules([tmp_path / "nope"])


def test_user_rule_folder_adds_a_rule_that_matches(tmp_path: Path) -> None:
    _write_rule(tmp_path / "rules", GOOD)
    rules = load_rules([tmp_path / "rules"])
    assert len(rules) == len(PUBLIC_IDS) + 1
    fs = check_log_text("ok\n  ⎿  the frobnicator   exploded again\n", rules)
    assert [(f.rule, f.severity, f.start.line, f.start.column) for f in fs] == [("my-rule", Severity.WARNING, 2, 10)]
    # And through the CLI.
    log = tmp_path / "a.log"
    log.write_text("the frobnicator exploded\n")
    proc = run_cli("check", "--format", "json", "--rule-dir", str(tmp_path / "rules"), str(log))
    assert proc.returncode == 0  # a warning is not an error
    assert '"rule": "my-rule"' in proc.stdout


def test_user_rule_with_a_shipped_id_is_refused(tmp_path: Path) -> None:
    # Redefining a shipped rule (say as a hint matching nothing) would hide real breakage.
    body = GOOD.replace('id = "my-rule"', 'id = "rate-limit-429"').replace("frobnicator\\s+exploded", "slow down")
    p = _write_rule(tmp_path / "rules", body, name="rate-limit-429")
    with pytest.raises(RuleError) as exc:
        load_rules([tmp_path / "rules"])
    assert str(exc.value) == (f"{p}: rule id 'rate-limit-429' is a shipped rule and cannot be redefined "
                              "(change its severity with the 'severity' setting instead)")


def test_a_later_user_rule_replaces_an_earlier_one_with_its_id(tmp_path: Path) -> None:
    _write_rule(tmp_path / "a", GOOD)
    _write_rule(tmp_path / "b", GOOD.replace("frobnicator\\s+exploded", "widget\\s+melted"))
    rules = load_rules([tmp_path / "a", tmp_path / "b"])
    assert len(rules) == len(PUBLIC_IDS) + 1
    assert [f.rule for f in check_log_text("the widget melted\n", rules)] == ["my-rule"]
    assert check_log_text("the frobnicator exploded\n", rules) == []


def test_explicit_fix_page_and_links(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "elsewhere.md").write_text("steps")
    p = folder / "r.toml"
    p.write_text(GOOD + 'fix_page = "elsewhere.md"\nlinks = [{ title = "Docs", url = "https://example.com" }]\n')
    rule = load_rule(p)
    assert rule.fix_markdown == "steps" and rule.links[0].url == "https://example.com"


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|a)*b", "(x+x+)+y", "(.*a){12}"])
def test_catastrophic_patterns_run_in_linear_time(tmp_path: Path, pattern: str) -> None:
    _write_rule(tmp_path / "rules", GOOD.replace("frobnicator\\s+exploded", pattern.replace("\\", "\\\\")))
    rules = load_rules([tmp_path / "rules"])
    line = "a" * 100_000 + "!"
    started = time.perf_counter()
    fs = check_log_text(line + "\n" + "x" * 50_000 + "\n", rules)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, elapsed
    assert all(f.rule == "my-rule" for f in fs)


def test_backreferences_are_refused_as_not_re2(tmp_path: Path) -> None:
    p = _write_rule(tmp_path / "rules", GOOD.replace("frobnicator\\s+exploded", "(a)\\1"))
    with pytest.raises(RuleError) as exc:
        load_rules([tmp_path / "rules"])
    assert str(p) in str(exc.value) and "patterns" in str(exc.value)


def test_wrap_field_defaults_to_on(tmp_path: Path) -> None:
    assert load_rule(_write_rule(tmp_path / "a", GOOD)).wrap is True
    assert load_rule(_write_rule(tmp_path / "b", GOOD + "wrap = false\n")).wrap is False
    assert all(r.wrap for r in default_rules().for_logs())
    p = _write_rule(tmp_path / "c", GOOD + 'wrap = "often"\n')
    with pytest.raises(RuleError) as exc:
        load_rule(p)
    assert str(p) in str(exc.value) and "wrap" in str(exc.value)
