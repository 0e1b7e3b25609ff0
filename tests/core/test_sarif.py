"""`rewind-lsp check --format sarif` output, from the real CLI, is valid against the official
OASIS SARIF 2.1.0 schema (vendored in tests/core/data with its license and provenance), carries
the fields GitHub code scanning requires (its "SARIF support for code scanning" page), gives
`file://` URIs percent-encoded, and states the column unit we emit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator

DATA = Path(__file__).parent / "data"
SCHEMA = json.loads((DATA / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))


def _sarif(cwd: Path, *paths: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "rewind_lsp", "check", "--format", "sarif", *paths],
                          capture_output=True, text=True, cwd=cwd, timeout=120, env=dict(os.environ))
    assert proc.returncode in (0, 1), proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    errors = sorted(Draft4Validator(SCHEMA).iter_errors(doc), key=lambda e: list(e.path))
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []
    return doc


def _github_required(doc: dict[str, Any]) -> None:
    """The properties GitHub code scanning requires of an uploaded SARIF file."""
    assert doc["version"] == "2.1.0" and doc["$schema"]
    for run in doc["runs"]:
        driver = run["tool"]["driver"]
        assert driver["name"] == "rewind-lsp" and driver["version"]
        rule_ids = [r["id"] for r in driver["rules"]]
        assert all(r["shortDescription"]["text"] and r["help"]["text"] for r in driver["rules"])
        for result in run["results"]:
            assert result["ruleId"] in rule_ids
            assert result["message"]["text"]
            for loc in result["locations"]:
                phys = loc["physicalLocation"]
                assert phys["artifactLocation"]["uri"].startswith("file:///")
                assert phys["region"]["startLine"] >= 1


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    # Spaces and non-ASCII in the path: the URIs must percent-encode them.
    where = tmp_path / "my projects" / "café 日本"
    where.mkdir(parents=True)
    shutil.copy(DATA / "contract-broken.jsonl", where / "contract broken.jsonl")
    shutil.copy(DATA / "terminal-400.log", where / "terminal 400.log")
    return where


def _uri(path: Path) -> str:
    return "file://" + urllib.parse.quote(str(path))


def test_broken_transcript_and_terminal_log(folder: Path) -> None:
    doc = _sarif(folder, "contract broken.jsonl", str(folder / "terminal 400.log"))
    _github_required(doc)
    run = doc["runs"][0]
    assert run["columnKind"] == "unicodeCodePoints"
    results = run["results"]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
    assert uris == {_uri(folder / "contract broken.jsonl"), _uri(folder / "terminal 400.log")}
    assert "%20" in _uri(folder / "terminal 400.log") and "caf%C3%A9" in _uri(folder / "terminal 400.log")
    by_rule = {r["ruleId"] for r in results}
    assert {"orphan-tool-use", "tool-use-concurrency-400"} <= by_rule
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    assert set(rules) == by_rule
    assert rules["orphan-tool-use"]["help"]["text"].startswith("**This `tool_use` has no `tool_result`")
    assert rules["orphan-tool-use"]["help"]["markdown"] == rules["orphan-tool-use"]["help"]["text"]


def test_columns_are_code_points(folder: Path) -> None:
    # A non-BMP character before the error: one code point, two UTF-16 units.
    log = folder / "wide.log"
    prefix = "😀 ⎿  "
    log.write_text(f"{prefix}API Error: 400 due to tool use concurrency issues\n", encoding="utf-8")
    doc = _sarif(folder, str(log))
    region = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (1, len(prefix) + 1)


def test_healthy_input_is_a_valid_empty_run(folder: Path) -> None:
    log = folder / "fine.log"
    log.write_text("all good\n", encoding="utf-8")
    doc = _sarif(folder, str(log))
    _github_required(doc)
    assert doc["runs"][0]["results"] == [] and doc["runs"][0]["tool"]["driver"]["rules"] == []
