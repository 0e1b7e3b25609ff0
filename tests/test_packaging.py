"""The documented install route `pip install .`, from a copy of the repository in a folder whose
path has a space and a quote, into a fresh virtualenv whose bin is not on PATH; and the commands
that installation prints (invocation.py) run from a shell that does not have it on PATH."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USE = {"type": "tool_use", "id": "toolu_01PKG", "name": "Bash", "input": {}}


def entry(kind: str, uid: str, parent: str | None, content: object) -> str:
    return json.dumps(
        {"type": kind, "uuid": uid, "parentUuid": parent, "sessionId": "s",
         "message": {"role": kind, "content": content}}
    )


BROKEN = "\n".join([entry("user", "u1", None, "go"), entry("assistant", "a1", "u1", [USE]),
                    entry("user", "u2", "a1", "still there?")]) + "\n"


def path_without(*folders: Path) -> str:
    drop = {str(f) for f in folders}
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p not in drop)


def copy_repository(source: Path) -> None:
    """The files git tracks, copied to `source` (what a clone holds)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh virtualenv with rewind-lsp installed by `pip install <copy>`."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the repository's files")
    home = tmp_path_factory.mktemp("pkg") / "o'neil dir"
    source = home / "rewind lsp src"
    copy_repository(source)
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return venv / "bin"


@pytest.fixture
def env(installed: Path, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": path_without(installed, Path(sys.executable).parent),
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
        "REWIND_LSP_CACHE_DIR": str(tmp_path / "cache"),
        "REWIND_LSP_LOG_DIR": str(tmp_path / "logs"),
    }


def test_pip_install_runs_version_and_check(installed: Path, env: dict[str, str], tmp_path: Path) -> None:
    from rewind_lsp import __version__

    exe = str(installed / "rewind-lsp")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert version.returncode == 0 and version.stdout == f"rewind-lsp {__version__}\n"
    transcript = tmp_path / "session.jsonl"
    transcript.write_text(BROKEN)
    check = subprocess.run([exe, "check", str(transcript)], capture_output=True, text=True, env=env, timeout=60)
    assert check.returncode == 1 and "orphan-tool-use" in check.stdout and "toolu_01PKG" in check.stdout


def written_command(argv: list[str], env: dict[str, str]) -> str:
    """The hook command `install-hook` writes when run as `argv`: invocation.command("hook")."""
    done = subprocess.run([*argv, "install-hook"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    data = json.loads(Path(env["CLAUDE_CONFIG_DIR"], "settings.json").read_text())
    command: str = data["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"]
    assert command.endswith(" hook")
    return command


@pytest.mark.parametrize("route", ["entry point", "python -m"])
def test_printed_command_runs_without_the_install_on_path(installed: Path, env: dict[str, str], route: str) -> None:
    script, python = str(installed / "rewind-lsp"), str(installed / "python")
    argv = [script] if route == "entry point" else [python, "-m", "rewind_lsp"]
    command = written_command(argv, env)
    assert shlex.split(command) == [*argv, "hook"]  # the absolute path, quoted ("o'neil dir")
    version = command.removesuffix(" hook") + " --version"
    ran = subprocess.run(["bash", "-c", version], capture_output=True, text=True, env=env, timeout=60)
    assert ran.returncode == 0 and ran.stdout.startswith("rewind-lsp "), ran.stderr


def test_bare_name_when_path_finds_this_installation(installed: Path, env: dict[str, str]) -> None:
    env["PATH"] = f"{installed}{os.pathsep}{env['PATH']}"
    assert written_command(["rewind-lsp"], env) == "rewind-lsp hook"


def fake_python(folder: Path, version: str) -> Path:
    """An interpreter that says it is `version` and is too old for anything."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "python"
    exe.write_text(f'#!/bin/sh\n[ "$1" = -V ] && echo "Python {version}" && exit 0\nexit 1\n')
    exe.chmod(0o755)
    return exe


def test_setup_refuses_an_old_python_and_replaces_an_old_venv(tmp_path: Path) -> None:
    checkout = tmp_path / "o'neil dir"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "setup", checkout / "scripts" / "setup")
    fake_python(checkout / ".venv" / "bin", "3.8.10")
    old = fake_python(tmp_path / "old", "3.10.12")
    done = subprocess.run([str(checkout / "scripts" / "setup")], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": str(old)}, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        "setup: .venv was made with Python 3.8.10 and rewind-lsp needs Python >= 3.11: "
        "removing it and making it again\n"
        f"setup: rewind-lsp needs Python >= 3.11, and {old} is Python 3.10.12.\n"
        "setup: install one and point PYTHON= at it, e.g. PYTHON=python3.12 ./scripts/setup\n"
    )
    assert not (checkout / ".venv").exists()
    missing = subprocess.run([str(checkout / "scripts" / "setup")], capture_output=True, text=True,
                             env={**os.environ, "PYTHON": "python2.0-absent"}, timeout=60)
    assert missing.returncode == 1
    first = missing.stderr.splitlines()[0]
    assert first == "setup: rewind-lsp needs Python >= 3.11, and python2.0-absent is not found."


def test_pipx_install_from_a_clone_puts_a_working_rewind_lsp_on_path(tmp_path: Path) -> None:
    """The README's route for users: `pipx install <clone>` (pipx itself from PyPI, into a scratch venv)."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the repository's files")
    source = tmp_path / "my clone" / "rewind-lsp"
    copy_repository(source)
    tools = tmp_path / "tools"
    subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True, timeout=60)
    got = subprocess.run([str(tools / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "pipx"], capture_output=True, text=True, timeout=180)
    if got.returncode != 0:
        pytest.skip(f"pipx is not installable here: {got.stderr.strip()[-200:]}")
    bin_dir = tmp_path / "user bin"
    env = {**os.environ, "PIPX_HOME": str(tmp_path / "pipx home"), "PIPX_BIN_DIR": str(bin_dir),
           "PIPX_MAN_DIR": str(tmp_path / "man"), "PATH": path_without(tools / "bin")}
    done = subprocess.run([str(tools / "bin" / "pipx"), "install", str(source)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    version = subprocess.run(["bash", "-c", "rewind-lsp --version"], capture_output=True, text=True, timeout=60,
                             env={**env, "PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("rewind-lsp ")
    transcript = tmp_path / "s.jsonl"
    transcript.write_text(BROKEN)
    check = subprocess.run(["bash", "-c", f"rewind-lsp check {shlex.quote(str(transcript))}"], capture_output=True,
                           text=True, timeout=60, env={**env, "PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert check.returncode == 1 and "orphan-tool-use" in check.stdout, check.stdout + check.stderr
