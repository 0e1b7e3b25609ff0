"""The documented install routes: `pip install .` (from a copy of the repository in a folder whose path
has a space and a quote, into a fresh virtualenv whose bin is not on PATH), `pipx install <clone>` and
`uv tool install <clone>`; and the commands each installation prints (invocation.py) run from a shell
that does not have it on PATH."""

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


def uv_executable(scratch: Path) -> Path:
    """uv: the one beside this interpreter (when the dev extras carry it), else installed from PyPI into a
    scratch venv; the test is skipped only when neither is possible."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    venv = scratch / "uv venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    got = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "uv"], capture_output=True, text=True, timeout=180)
    if got.returncode != 0:
        pytest.skip(f"uv is not installable here (pip install uv failed): {got.stderr.strip()[-200:]}")
    return venv / "bin" / "uv"


def test_uv_tool_install_from_a_clone_runs_version_and_the_main_job_off_path(tmp_path: Path) -> None:
    """The README's `uv tool install .`: into scratch tool and bin folders whose paths have a space, with this
    interpreter (no Python download; only PyPI is reached, for the dependencies). Then `--version` and the main
    job by the entry point's quoted absolute path from a shell that does not have it on PATH, and the fix
    command the main job prints runs as printed."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the repository's files")
    source = tmp_path / "my clone" / "rewind-lsp"
    copy_repository(source)
    uv = uv_executable(tmp_path)
    bin_dir = tmp_path / "user bin"
    shell_path = path_without(Path(sys.executable).parent, uv.parent, bin_dir)
    env = {**os.environ, "UV_TOOL_DIR": str(tmp_path / "uv tools"), "UV_TOOL_BIN_DIR": str(bin_dir),
           "UV_CACHE_DIR": str(tmp_path / "uv cache"), "UV_PYTHON": sys.executable, "UV_PYTHON_DOWNLOADS": "never",
           "UV_NO_CONFIG": "1", "PATH": shell_path}
    done = subprocess.run([str(uv), "tool", "install", str(source)], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    exe = bin_dir / "rewind-lsp"
    assert exe.is_file(), done.stderr
    on_path = shutil.which("rewind-lsp", path=shell_path)
    assert on_path is None or not os.path.samefile(on_path, exe), "the shell must not find this installation"

    claude = tmp_path / "claude config"
    session = claude / "projects" / "-home-me-proj" / "33333333-3333-4333-8333-333333333333.jsonl"
    session.parent.mkdir(parents=True)
    session.write_text(BROKEN)
    run_env = {**env, "CLAUDE_CONFIG_DIR": str(claude), "REWIND_LSP_CACHE_DIR": str(tmp_path / "cache"),
               "REWIND_LSP_LOG_DIR": str(tmp_path / "logs")}

    from rewind_lsp import __version__

    version = subprocess.run(["bash", "-c", f"{shlex.quote(str(exe))} --version"], capture_output=True, text=True,
                             timeout=60, env=run_env)
    assert version.returncode == 0 and version.stdout == f"rewind-lsp {__version__}\n", version.stderr
    main = subprocess.run(["bash", "-c", shlex.quote(str(exe))], capture_output=True, text=True, timeout=60,
                          env=run_env)
    assert main.returncode == 1, main.stdout + main.stderr
    assert str(session) in main.stdout and "orphan-tool-use" in main.stdout, main.stdout
    fixes = [line.split("fix:", 1)[1].strip() for line in main.stdout.splitlines() if line.lstrip().startswith("fix:")]
    assert len(fixes) == 1, main.stdout
    argv = shlex.split(fixes[0])
    assert os.path.samefile(argv[0], exe) and argv[1:] == ["rewind", "--mode", "patch", str(session)], fixes[0]
    before = set(session.parent.iterdir())
    fixed = subprocess.run(["bash", "-c", fixes[0]], capture_output=True, text=True, timeout=60, env=run_env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    written = set(session.parent.iterdir()) - before
    assert len(written) == 1 and session.read_text() == BROKEN, fixed.stdout
    recheck = subprocess.run(["bash", "-c", shlex.join([str(exe), "check", str(written.pop())])],
                             capture_output=True, text=True, timeout=60, env=run_env)
    assert recheck.returncode == 0, recheck.stdout + recheck.stderr
