"""install-hook / uninstall-hook on real settings files, run as the user runs them: the CLI as a
subprocess, from a virtualenv whose bin is not on PATH."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENTRY = Path(sys.executable).with_name("rewind-lsp")
pytestmark = pytest.mark.skipif(not ENTRY.exists(), reason="the rewind-lsp entry point is not installed")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # PATH without the virtualenv: the installation must still name itself.
    bindir = str(ENTRY.parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bindir)
    return {
        **os.environ,
        "PATH": path,
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
        "REWIND_LSP_CACHE_DIR": str(tmp_path / "cache"),
        "REWIND_LSP_LOG_DIR": str(tmp_path / "logs"),
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(ENTRY), *args], capture_output=True, text=True, env=env, timeout=60)
    assert "Traceback" not in done.stderr
    return done


def settings(tmp_path: Path) -> Path:
    path = tmp_path / "claude" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def commands(path: Path) -> list[str]:
    data = json.loads(path.read_text())
    return [h["command"] for groups in data["hooks"].values() for g in groups for h in g["hooks"]]


def test_installs_the_running_installation_not_a_decoy_on_path(tmp_path: Path, env: dict[str, str]) -> None:
    decoy = tmp_path / "other"
    decoy.mkdir()
    (decoy / "rewind-lsp").write_text("#!/bin/sh\necho decoy\n")
    (decoy / "rewind-lsp").chmod(0o755)
    env["PATH"] = f"{decoy}{os.pathsep}{env['PATH']}"
    path = settings(tmp_path)
    done = cli(env, "install-hook")
    assert done.returncode == 0 and done.stdout == f"{path}: hook installed\n"
    assert commands(path) == [shlex.join([str(ENTRY), "hook"])] * 2
    # The written command runs this installation from a shell whose PATH lacks it.
    ran = subprocess.run(["bash", "-c", commands(path)[0]], input="{}", capture_output=True, text=True, env=env)
    assert ran.returncode == 0 and "decoy" not in ran.stdout


def test_symlinked_settings_written_through_the_link_keeping_mode(tmp_path: Path, env: dict[str, str]) -> None:
    dotfiles = tmp_path / "dotfiles" / "settings.json"
    dotfiles.parent.mkdir()
    dotfiles.write_text('{"model": "opus"}\n')
    dotfiles.chmod(0o644)
    link = settings(tmp_path)
    link.symlink_to(dotfiles)
    installed = cli(env, "install-hook")
    assert installed.returncode == 0
    assert link.is_symlink() and os.readlink(link) == str(dotfiles)
    assert stat.S_IMODE(dotfiles.stat().st_mode) == 0o644
    assert json.loads(dotfiles.read_text())["model"] == "opus" and len(commands(dotfiles)) == 2
    removed = cli(env, "uninstall-hook")
    assert removed.returncode == 0
    assert link.is_symlink() and stat.S_IMODE(dotfiles.stat().st_mode) == 0o644
    assert json.loads(dotfiles.read_text()) == {"model": "opus"}
    assert not list(dotfiles.parent.glob(".*.tmp"))


def test_install_and_uninstall_in_one_second_keep_the_pristine_backup(tmp_path: Path, env: dict[str, str]) -> None:
    path = settings(tmp_path)
    pristine = '{"model": "opus"}\n'
    path.write_text(pristine)
    # Start at the top of a second so both runs land in it.
    time.sleep(1 - time.time() % 1)
    first = cli(env, "install-hook")
    second = cli(env, "uninstall-hook")
    backups = sorted(path.parent.glob("settings.json.*.bak"), key=lambda p: p.stat().st_mtime_ns)
    assert len(backups) == 2 and backups[0].read_text() == pristine
    assert first.stdout == f"{path}: hook installed; backup at {backups[0]}\n"
    assert second.stdout == f"{path}: hook removed; backup at {backups[1]}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"hooks": []}', '{path}: "hooks" is not an object; nothing was changed\n'),
        ('{"x": 1e400}', "{path}: the number 1e400 is out of range (it would be written back as Infinity); "
         "fix it first, nothing was changed\n"),
        ('{"x": NaN}', "{path}: NaN is not JSON (Claude Code cannot read it); fix it first, nothing was changed\n"),
        ('{"hooks": {,}}', "{path}:1:12: not valid JSON (Expecting property name enclosed in double quotes); "
         "fix it first, nothing was changed\n"),
        ('{"hooks": {"UserPromptSubmit": 5}}', '{path}: "hooks.UserPromptSubmit" is not a list; nothing was changed\n'),
        ("[1]", "{path}: the settings are not a JSON object; nothing was changed\n"),
    ],
)
def test_unusable_settings_are_refused_by_name(tmp_path: Path, env: dict[str, str], text: str, message: str) -> None:
    path = settings(tmp_path)
    path.write_text(text)
    done = cli(env, "install-hook")
    assert done.returncode == 2 and done.stderr == "rewind-lsp: " + message.format(path=path)
    assert path.read_text() == text
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json"]  # no backup, no temp file


def test_not_utf8_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    path = settings(tmp_path)
    path.write_bytes(b'{"a": "\xff"}')
    done = cli(env, "install-hook")
    assert done.stderr == f"rewind-lsp: {path}: not UTF-8 text (byte 7); fix it first, nothing was changed\n"


def test_odd_but_valid_settings_merge(tmp_path: Path, env: dict[str, str]) -> None:
    path = settings(tmp_path)
    odd = '{"hooks": null, "name": "\\ud800 caf\u00e9", "big": 1e300}'
    path.write_text(odd)
    assert cli(env, "install-hook").returncode == 0
    text = path.read_text()
    assert '"name": "\\ud800 caf\u00e9"' in text and '"big": 1e+300' in text and len(commands(path)) == 2
    groups = '{"hooks": {"UserPromptSubmit": [5, "s", {"hooks": 7}, {"hooks": [3]}]}}'
    path.write_text(groups)
    assert cli(env, "install-hook").returncode == 0
    ups = json.loads(path.read_text())["hooks"]["UserPromptSubmit"]
    assert ups[:4] == [5, "s", {"hooks": 7}, {"hooks": [3]}] and ups[4]["hooks"][0]["command"].endswith(" hook")
    assert cli(env, "uninstall-hook").returncode == 0
    assert json.loads(path.read_text()) == json.loads(groups)


def test_read_only_settings_are_refused_not_replaced(tmp_path: Path, env: dict[str, str]) -> None:
    path = settings(tmp_path)
    path.write_text("{}")
    path.chmod(0o444)
    inode = path.stat().st_ino
    done = cli(env, "install-hook")
    assert done.returncode == 2
    assert done.stderr == f"rewind-lsp: {path}: the file is read-only; nothing was changed\n"
    assert path.read_text() == "{}" and path.stat().st_ino == inode
