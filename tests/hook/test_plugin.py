"""The repository as a Claude Code plugin marketplace: the manifests have the documented shape
(plugins reference: marketplace.json, plugin.json, hooks/hooks.json, .lsp.json), their relative
paths exist, and the plugin's hook command, run as Claude Code runs it (a shell, with
CLAUDE_PLUGIN_ROOT set and the payload on stdin), blocks a broken session and passes a healthy one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_hook import BROKEN, HEALTHY, prompt

ROOT = Path(__file__).resolve().parents[2]
MARKETPLACE = ROOT / ".claude-plugin" / "marketplace.json"
# Hook events named in Claude Code's hooks reference.
EVENTS = {
    "PreToolUse", "PostToolUse", "Notification", "UserPromptSubmit", "Stop", "SubagentStop",
    "PreCompact", "SessionStart", "SessionEnd",
}
KEBAB = r"^[a-z0-9]+(-[a-z0-9]+)*$"


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def plugin_root() -> Path:
    (entry,) = load(MARKETPLACE)["plugins"]
    source = entry["source"]
    assert isinstance(source, str) and source.startswith("./")
    return (ROOT / source).resolve()


def inside(base: Path, relative: str) -> Path:
    assert relative.startswith("./"), relative  # the reference requires paths relative to the plugin root
    path = (base / relative).resolve()
    assert path.is_relative_to(base) and path.exists(), relative
    return path


def test_marketplace_shape() -> None:
    import re

    data = load(MARKETPLACE)
    assert re.match(KEBAB, data["name"])
    assert isinstance(data["owner"], dict) and isinstance(data["owner"]["name"], str)
    (entry,) = data["plugins"]
    assert entry["name"] == "rewind-lsp" and isinstance(entry["description"], str)
    assert plugin_root().is_relative_to(ROOT) and plugin_root().is_dir()


def test_plugin_manifest_shape_and_paths() -> None:
    import re

    from rewind_lsp import __version__

    base = plugin_root()
    manifest = load(base / ".claude-plugin" / "plugin.json")
    assert re.match(KEBAB, manifest["name"]) and manifest["name"] == load(MARKETPLACE)["plugins"][0]["name"]
    assert manifest["version"] == __version__ == load(MARKETPLACE)["plugins"][0]["version"]
    hooks = load(inside(base, manifest["hooks"]))["hooks"]
    assert set(hooks) == {"UserPromptSubmit", "SessionStart"} <= EVENTS
    assert [g.get("matcher") for g in hooks["SessionStart"]] == ["resume"]
    for groups in hooks.values():
        for group in groups:
            for hook in group["hooks"]:
                assert hook["type"] == "command" and isinstance(hook["timeout"], int)
                script = hook["command"].strip('"').replace("${CLAUDE_PLUGIN_ROOT}", str(base))
                assert os.access(script, os.X_OK), script
    servers = load(inside(base, manifest["lspServers"]))
    for server in servers.values():
        assert isinstance(server["command"], str) and all(isinstance(a, str) for a in server["args"])
        assert server["extensionToLanguage"] == {".jsonl": "jsonl"}
    assert servers["rewind-lsp"]["args"] == ["serve"]


def run_plugin_hook(payload: object, path: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = plugin_root()
    (command,) = {h["command"] for g in load(base / "hooks" / "hooks.json")["hooks"].values()
                  for grp in g for h in grp["hooks"]}
    env = {
        **os.environ,
        "PATH": path,
        "CLAUDE_PLUGIN_ROOT": str(base),
        "REWIND_LSP_CACHE_DIR": str(tmp_path / "cache"),
        "REWIND_LSP_LOG_DIR": str(tmp_path / "logs"),
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
    }
    env.pop("REWIND_LSP", None)
    return subprocess.run(["bash", "-c", command], input=json.dumps(payload), capture_output=True, text=True,
                          env=env, timeout=60)


BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(not (BIN / "rewind-lsp").exists(), reason="the rewind-lsp entry point is not installed")


def test_plugin_hook_blocks_broken_and_passes_healthy(tmp_path: Path) -> None:
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    broken, healthy = tmp_path / "broken.jsonl", tmp_path / "healthy.jsonl"
    broken.write_text(BROKEN)
    healthy.write_text(HEALTHY)
    blocked = run_plugin_hook(prompt(broken), path, tmp_path)
    assert blocked.returncode == 0 and json.loads(blocked.stdout)["decision"] == "block"
    passed = run_plugin_hook(prompt(healthy), path, tmp_path)
    assert (passed.returncode, passed.stdout, passed.stderr) == (0, "", "")


def test_plugin_hook_fails_open_without_rewind_lsp(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text(BROKEN)
    done = run_plugin_hook(prompt(broken), "/usr/bin:/bin", tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
